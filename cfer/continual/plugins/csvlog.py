"""CSV loggers for Avalanche's evaluator: every metric as rows, and a resumable ``CSVLogger``.

:class:`MetricsCSVLogger` writes every scalar the evaluator emits as a ``name,x,value``
row (Avalanche's ``CSVLogger`` keeps only accuracy, loss and forgetting columns);
:class:`ResumableCSVLogger` is Avalanche's ``CSVLogger`` that keeps the rows a previous
run wrote into the same folder instead of truncating them. :func:`cfer.continual.loggers.make_loggers`
builds both for ``--logger csv``.

Example:
    >>> from avalanche.training.plugins import EvaluationPlugin
    >>> from avalanche.evaluation.metrics import accuracy_metrics
    >>> evaluator = EvaluationPlugin(accuracy_metrics(experience=True),
    ...                              loggers=[MetricsCSVLogger("run/metrics.csv")])  # doctest: +SKIP
"""

from __future__ import annotations

import csv
from pathlib import Path

from avalanche.logging import BaseLogger, CSVLogger

__all__ = ["MetricsCSVLogger", "ResumableCSVLogger"]


class MetricsCSVLogger(BaseLogger):
    """Every metric value as a ``name,x,value`` row of one CSV file (appended to).

    Avalanche's ``CSVLogger`` keeps a fixed set of columns (accuracy, loss, forgetting);
    this one keeps everything the evaluator emits, cfer's distillation terms included.
    Non-scalar values (images, tensors of more than one item) are skipped.

    Args:
        path: The CSV file; rows are appended after what it holds.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._file = self.path.open("a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(["name", "x", "value"])

    def log_single_metric(self, name, value, x_plot) -> None:  # noqa: ANN001
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):  # images, figures, tensors of many items
            return
        self._writer.writerow([name, int(x_plot), repr(number)])

    def log_metrics(self, metric_values) -> None:  # noqa: ANN001
        super().log_metrics(metric_values)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class ResumableCSVLogger(CSVLogger):
    """Avalanche's ``CSVLogger``, keeping the rows of a folder it wrote before.

    Args:
        folder: Where ``training_results.csv`` and ``eval_results.csv`` go.
    """

    FILES = ("training_results.csv", "eval_results.csv")

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        old = {}
        for n in self.FILES:
            lines = (folder / n).read_text().splitlines(keepends=True) if (folder / n).is_file() else []
            old[n] = lines[1:]  # CSVLogger writes the header again
        super().__init__(log_folder=str(folder))
        for f, n in ((self.training_file, self.FILES[0]), (self.eval_file, self.FILES[1])):
            f.writelines(old[n])
            f.flush()
