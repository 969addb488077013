"""Continual-learning metrics: Avalanche's evaluator plus the summaries it lacks.

Avalanche's :class:`~avalanche.training.plugins.EvaluationPlugin` measures accuracy per
test experience after each training step. :class:`ContinualResults` turns those numbers
into an accuracy matrix ``R[i][j]`` (accuracy on test experience ``j`` after training
step ``i``) and derives what papers on this problem report:

* ``seen_accuracy[i]``: accuracy on all classes seen up to step ``i`` (items pooled);
* ``average_accuracy``: the mean of ``seen_accuracy`` over all steps, the basic step
  included (the published method's metric);
* ``final_accuracy``: ``seen_accuracy`` after the last step;
* ``basic_kept[i]``: accuracy on the basic experience after step ``i``;
* ``newest_accuracy[i]``: accuracy on the classes step ``i`` introduced;
* ``forgetting``: mean over old experiences of (best earlier accuracy - final accuracy);
* ``step_time_s``: wall-clock training time of each step.

Example:
    >>> r = ContinualResults(n_test=[100, 10])
    >>> r.add_step(accuracies=[0.9], seconds=1.0)
    >>> r.add_step(accuracies=[0.8, 0.5], seconds=0.5)
    >>> round(r.seen_accuracy[1], 4), r.final_accuracy == r.seen_accuracy[-1]
    (0.7727, True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["ContinualResults", "make_evaluator", "experience_accuracies"]


def make_evaluator(*, loggers: Sequence[object] = (), training: bool | None = None):  # noqa: ANN201
    """An EvaluationPlugin with the accuracy of every test experience: what
    :func:`experience_accuracies` reads (forgetting and the rest are derived from it by
    :class:`ContinualResults`).

    Args:
        loggers: Avalanche loggers (e.g. from :func:`cfer.continual.loggers.make_loggers`).
        training: Also measure what a reader of the logs wants to follow: the loss (per
            mini-batch, epoch and experience), the training accuracy per epoch, the
            accuracy over the test stream seen so far (``Top1_Acc_Stream``), and cfer's
            distillation terms and memory size
            (:class:`~cfer.continual.plugins.monitor.CferTermsMetric`). Default: when
            there are loggers.

    Returns:
        ``avalanche.training.plugins.EvaluationPlugin``; no logger prints unless given.
    """
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.training.plugins import EvaluationPlugin

    from cfer.continual.plugins.monitor import CferTermsMetric

    if training is None:
        training = bool(loggers)
    if not training:
        return EvaluationPlugin(accuracy_metrics(experience=True), loggers=list(loggers))
    return EvaluationPlugin(accuracy_metrics(epoch=True, experience=True, stream=True),
                            loss_metrics(minibatch=True, epoch=True, experience=True), CferTermsMetric(),
                            loggers=list(loggers))


# With task labels (nc_benchmark) the name has a /Task000/ segment; Avalanche 0.6's
# new-style benchmarks (benchmark_from_datasets, class_incremental_benchmark) have none.
_EXP_ACC = re.compile(r"^Top1_Acc_Exp/eval_phase/(\w+?)(?:/Task\d+)?/Exp(\d+)$")


def experience_accuracies(metrics: dict[str, float], *, n_experiences: int, stream: str = "test_stream") -> list[float]:
    """Pick ``Top1_Acc_Exp`` of experiences ``0..n_experiences-1`` of ``stream`` from Avalanche's metrics.

    Raises:
        KeyError: If an experience's accuracy is missing (was it evaluated?).
    """
    found: dict[int, float] = {}
    for key, value in metrics.items():
        m = _EXP_ACC.match(key)
        if m and m.group(1) == stream:
            found[int(m.group(2))] = float(value)
    missing = [j for j in range(n_experiences) if j not in found]
    if missing:
        raise KeyError(f"no {stream} accuracy for experiences {missing}; evaluate on {stream}[:{n_experiences}]")
    return [found[j] for j in range(n_experiences)]


@dataclass
class ContinualResults:
    """Accuracy matrix and derived metrics of one continual run.

    Args:
        n_test: Number of test items of each experience (to pool seen-class accuracy).
    """

    n_test: list[int]
    matrix: list[list[float]] = field(default_factory=list)
    step_time_s: list[float] = field(default_factory=list)

    def add_step(self, *, accuracies: Sequence[float], seconds: float) -> None:
        """Record step ``i``: accuracies on test experiences ``0..i`` and its training time."""
        i = len(self.matrix)
        if len(accuracies) != i + 1:
            raise ValueError(f"step {i} needs accuracies on experiences 0..{i}, got {len(accuracies)} values")
        if i >= len(self.n_test):
            raise ValueError(f"only {len(self.n_test)} experiences were declared in n_test")
        self.matrix.append([float(a) for a in accuracies])
        self.step_time_s.append(float(seconds))

    @property
    def seen_accuracy(self) -> list[float]:
        out = []
        for i, row in enumerate(self.matrix):
            n = np.asarray(self.n_test[: i + 1], float)
            out.append(float(np.dot(row, n) / n.sum()))
        return out

    @property
    def average_accuracy(self) -> float:
        return float(np.mean(self.seen_accuracy)) if self.matrix else float("nan")

    @property
    def final_accuracy(self) -> float:
        return self.seen_accuracy[-1] if self.matrix else float("nan")

    @property
    def basic_kept(self) -> list[float]:
        return [row[0] for row in self.matrix]

    @property
    def newest_accuracy(self) -> list[float]:
        return [row[-1] for row in self.matrix]

    @property
    def compound_accuracy(self) -> list[float]:
        """Pooled accuracy on the compound experiences seen so far (NaN at the basic step)."""
        out = []
        for i, row in enumerate(self.matrix):
            if i == 0:
                out.append(float("nan"))
                continue
            n = np.asarray(self.n_test[1: i + 1], float)
            out.append(float(np.dot(row[1:], n) / n.sum()))
        return out

    @property
    def forgetting(self) -> float:
        """Mean drop from the best earlier accuracy to the final one, over old experiences."""
        if len(self.matrix) < 2:
            return 0.0
        last = self.matrix[-1]
        drops = [max(self.matrix[i][j] for i in range(j, len(self.matrix) - 1)) - last[j]
                 for j in range(len(self.matrix) - 1)]
        return float(np.mean(drops))

    def to_dict(self) -> dict:
        """Plain JSON-serialisable summary."""
        return {
            "average_accuracy": self.average_accuracy,
            "final_accuracy": self.final_accuracy,
            "final_basic_accuracy": self.basic_kept[-1] if self.matrix else None,
            "mean_newest_accuracy": float(np.mean(self.newest_accuracy[1:])) if len(self.matrix) > 1 else None,
            "final_compound_accuracy": self.compound_accuracy[-1] if len(self.matrix) > 1 else None,
            "forgetting": self.forgetting,
            "mean_step_time_s": float(np.mean(self.step_time_s)) if self.step_time_s else None,
            "seen_accuracy": self.seen_accuracy,
            "basic_kept": self.basic_kept,
            "newest_accuracy": self.newest_accuracy,
            "compound_accuracy": self.compound_accuracy,
            "step_time_s": self.step_time_s,
            "matrix": self.matrix,
            "n_test": self.n_test,
        }
