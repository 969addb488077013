"""Avalanche's ``WandBLogger`` for scalar metrics, working with current ``wandb`` releases.

Avalanche 0.6's ``WandBLogger`` asks ``wandb.util.generate_id`` for a run id and looks
up ``wandb.viz.CustomChart`` for every value; wandb 0.31 has neither. :class:`ScalarWandBLogger`
is that logger with a run id of its own and a ``log_single_metric`` that writes numbers
(images, figures and histograms are skipped). :func:`cfer.continual.loggers.make_loggers`
builds it in offline mode for ``--logger wandb-offline``.

Example:
    >>> logger = ScalarWandBLogger(folder="run/logs/wandb-offline", run_name="order0")  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
from pathlib import Path

from avalanche.logging import WandBLogger

__all__ = ["ScalarWandBLogger"]


class ScalarWandBLogger(WandBLogger):
    """A Weights & Biases run of scalar metrics, offline by default.

    Args:
        folder: Where wandb writes the run (``folder/wandb/offline-run-*``).
        run_name: The run's name.
        project: The W&B project.
        mode: ``"offline"`` (nothing is uploaded; ``wandb sync`` does it later) or ``"online"``.
    """

    def __init__(self, *, folder: str | Path, run_name: str, project: str = "cfer", mode: str = "offline") -> None:
        super().__init__(project_name=project, run_name=run_name, save_code=False, dir=str(folder),
                         params={"mode": mode, "id": uuid.uuid4().hex[:8]})

    def log_single_metric(self, name, value, x_plot) -> None:  # noqa: ANN001
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):  # images, figures, tensors of many items
            return
        self.step = x_plot
        self.wandb.log({name: number}, step=int(x_plot))

    def close(self) -> None:
        """Finish the run (flushes the offline files)."""
        if self.wandb.run is not None:
            self.wandb.finish()
