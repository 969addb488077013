"""The value checks every section of the run config shares; each error names the key.

Example:
    >>> positive("continual", "epochs", 0)
    Traceback (most recent call last):
    ...
    ValueError: continual.epochs must be a positive whole number, got 0
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

__all__ = ["finite", "positive", "fraction", "run_level"]


def finite(section: Any, prefix: str) -> None:
    """Refuse NaN and infinity in every number of a section (a run would train to the end
    and then fail writing its report, and every ``--resume`` the same way)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"{prefix}.{f.name} must be a finite number, got {value!r}")


def positive(section: str, name: str, value: Any) -> None:
    """Refuse anything but a whole number >= 1 (``True`` included)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{section}.{name} must be a positive whole number, got {value!r}")


def fraction(section: str, name: str, value: float, *, zero_ok: bool = False) -> None:
    """Refuse a value outside ``(0, 1]`` (``[0, 1]`` with ``zero_ok``)."""
    lo_ok = value >= 0 if zero_ok else value > 0
    if not (lo_ok and value <= 1):
        bound = "[0, 1]" if zero_ok else "(0, 1]"
        raise ValueError(f"{section}.{name} must lie in {bound}, got {value!r}")


def run_level(config: Any, *, max_seed: int) -> None:
    """The options of the run itself: ``seed``, ``threads``, ``workers``, ``device``, ``precision``."""
    from cfer.distributed import DEVICES, PRECISIONS

    if isinstance(config.seed, bool) or not isinstance(config.seed, int):
        raise ValueError(f"seed must be a whole number, got {config.seed!r}")
    if not 0 <= config.seed <= max_seed:
        raise ValueError(f"seed must lie in [0, {max_seed}] (what NumPy and torch accept), got {config.seed}")
    positive("run", "threads", config.threads)
    if isinstance(config.workers, bool) or not isinstance(config.workers, int) or config.workers < 0:
        raise ValueError(f"workers must be a whole number >= 0 (0: load in the main process), got {config.workers!r}")
    if not isinstance(config.device, str) or not (config.device in DEVICES or re.fullmatch(r"cuda:\d+", config.device)):
        raise ValueError(f"device must be one of {list(DEVICES)} or cuda:N, got {config.device!r}")
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {config.precision!r} (fp16 needs a "
                         "CUDA device; bf16 works on CPUs too)")
