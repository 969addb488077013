"""Checkpoints a killed run can resume from, loadable with ``weights_only=True``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only: no pickled
objects, so loading one can never run code. :func:`load_checkpoint` refuses a file that
carries anything else with an error that says so. Files are written atomically
(:mod:`cfer.atomic`), so a kill never leaves half a checkpoint.

:func:`rng_state` / :func:`set_rng_state` capture and restore the three global random
generators a training loop touches (Python's ``random``, NumPy's legacy global and
torch's CPU generator), as plain tensors.

Example:
    >>> import tempfile, pathlib, torch
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "ckpt.pt"
    >>> _ = save_checkpoint(p, {"step": 2, "weights": torch.zeros(3), "rng": rng_state()})
    >>> load_checkpoint(p)["step"]
    2
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cfer.atomic import torch_save

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state",
           "UnsafeCheckpointError"]

CHECKPOINT_FORMAT = "cfer-checkpoint/1"


class UnsafeCheckpointError(ValueError):
    """A file that cannot be loaded with ``weights_only=True`` (it carries pickled objects)."""


def rng_state() -> dict[str, Any]:
    """The global Python, NumPy and torch (CPU) random states, as tensors and numbers."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state().clone(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["cached_gaussian"]))
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus a format tag) atomically with ``torch.save``."""
    return torch_save({"format": CHECKPOINT_FORMAT, **payload}, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, with ``weights_only=True``.

    Raises:
        FileNotFoundError: If there is no such file.
        UnsafeCheckpointError: If the file carries pickled objects (refused: loading them
            could run code) or is not a torch file at all.
        ValueError: If it is a torch file but not a cfer checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise UnsafeCheckpointError(
            f"{path} cannot be loaded with weights_only=True, so it is refused: it carries pickled objects "
            f"that could run code, or it is not a torch file ({type(exc).__name__}: {first[:200]}). "
            "Only load checkpoints that cfer wrote; delete this one to start the run again"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a cfer checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return payload
