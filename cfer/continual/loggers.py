"""Avalanche's loggers by name: what ``cfer run --logger`` writes, and where.

=================  ===============================================================  ==========
kind               what it writes into ``folder``                                   needs
=================  ===============================================================  ==========
``none``           nothing (the default)
``tensorboard``    TensorBoard event files (Avalanche's ``TensorboardLogger``)        tensorboard
``csv``            ``training_results.csv`` and ``eval_results.csv`` (Avalanche's
                   ``CSVLogger``) and ``metrics.csv``: every value the evaluator
                   emits, one ``name,x,value`` row each
                   (:class:`~cfer.continual.plugins.csvlog.MetricsCSVLogger`)
``wandb-offline``  a Weights & Biases run in offline mode under ``folder/wandb``     wandb
                   (Avalanche's ``WandBLogger``, scalars; ``wandb sync`` uploads it)
=================  ===============================================================  ==========

The loggers receive what :func:`cfer.continual.metrics.make_evaluator` measures when it
is given loggers: losses, training and test accuracies, and cfer's distillation terms and
memory size (:class:`~cfer.continual.plugins.monitor.CferTermsMetric`). A logger made
again on a folder it wrote before goes on after what is there (a resumed run keeps the
rows of its first part; an experience cut short by the kill appears twice, its second
rows are the ones the run's results come from).

Example:
    >>> check_logger("CSV")
    'csv'
    >>> loggers = make_loggers("tensorboard", folder="run/logs/tensorboard/order0")  # doctest: +SKIP
    >>> evaluator = make_evaluator(loggers=loggers)                                  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from typing import Sequence

__all__ = ["LOGGERS", "check_logger", "make_loggers", "close_loggers"]

LOGGERS: tuple[str, ...] = ("none", "tensorboard", "csv", "wandb-offline")
"""The logger kinds :func:`make_loggers` builds."""

_PACKAGES = {"tensorboard": "tensorboard", "wandb-offline": "wandb"}


def check_logger(kind: str, *, installed: bool = False) -> str:
    """Check a logger name (and, with ``installed``, that its package imports).

    Returns:
        The name, stripped and lower-cased.

    Raises:
        ValueError: For an unknown name (with the closest known one) or, with
            ``installed``, a missing package (naming what to install).
    """
    key = str(kind).strip().lower()
    if key not in LOGGERS:
        close = difflib.get_close_matches(key, LOGGERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown logger {kind!r}{hint}; choose one of {list(LOGGERS)}")
    package = _PACKAGES.get(key)
    if installed and package is not None and importlib.util.find_spec(package) is None:
        raise ValueError(f"the {key} logger needs the {package!r} package; install it with "
                         f"`pip install {package}` (or `pip install -e .` for the pinned version)")
    return key


def make_loggers(kind: str, *, folder: str | Path, name: str = "cfer") -> list[object]:
    """Avalanche loggers of ``kind`` writing into ``folder`` (created).

    Args:
        kind: One of :data:`LOGGERS`.
        folder: Where the logger's files go.
        name: The run's name (Weights & Biases run name).

    Returns:
        The loggers to give :func:`cfer.continual.metrics.make_evaluator` (empty for ``none``).
        Close them with :func:`close_loggers` when training ends.
    """
    key = check_logger(kind, installed=True)
    if key == "none":
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if key == "tensorboard":
        from avalanche.logging import TensorboardLogger

        return [TensorboardLogger(tb_log_dir=str(folder))]
    if key == "csv":
        from cfer.continual.plugins.csvlog import MetricsCSVLogger, ResumableCSVLogger

        return [ResumableCSVLogger(folder), MetricsCSVLogger(folder / "metrics.csv")]
    from cfer.continual.plugins.wandb_offline import ScalarWandBLogger

    return [ScalarWandBLogger(folder=folder, run_name=name, mode="offline")]


def close_loggers(loggers: Sequence[object]) -> None:
    """Flush and close what :func:`make_loggers` opened (files, event writers, W&B runs)."""
    for lg in loggers:
        if hasattr(lg, "writer"):  # TensorboardLogger
            lg.writer.close()
        elif hasattr(lg, "close"):
            lg.close()
