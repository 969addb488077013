"""What cfer's own plugins hold, as an Avalanche metric the loggers receive.

Avalanche's loggers (TensorBoard, CSV, Weights & Biases) only see what an
``EvaluationPlugin``'s metrics emit. :class:`CferTermsMetric` emits the state of cfer's
plugins that the built-in metrics do not know about:

=============================  ===================================================  ==========
name                           value                                                when
=============================  ===================================================  ==========
``Distillation/kd``            logit-distillation term of the mini-batch            iteration
``Distillation/feature``       feature-distillation term of the mini-batch          iteration
``Distillation/gamma``         logit-distillation weight ``g_i`` of the step        iteration
``Memory/items``               items in the replay buffer                           experience
``Memory/per_class``           per-class quota ``m`` of a PSMR buffer               experience
=============================  ===================================================  ==========

The distillation values are the :class:`~cfer.continual.plugins.distillation.BasicDistillationPlugin`'s
``last`` record of the mini-batch just trained; the memory values come from the storage
policy of any ``ReplayPlugin`` of the strategy, read after the experience (when the buffer
has been updated). A strategy without such plugins emits nothing. The x value of every
point is the strategy's ``train_iterations`` clock.

Example:
    >>> from avalanche.training.plugins import EvaluationPlugin
    >>> evaluator = EvaluationPlugin(CferTermsMetric(), loggers=[])
    >>> str(CferTermsMetric())
    'CferTerms'
"""

from __future__ import annotations

from avalanche.evaluation.metric_definitions import PluginMetric
from avalanche.evaluation.metric_results import MetricValue

__all__ = ["CferTermsMetric", "TERM_NAMES"]

_DISTILLATION = {"kd": "Distillation/kd", "feat": "Distillation/feature", "gamma": "Distillation/gamma"}
TERM_NAMES: tuple[str, ...] = (*_DISTILLATION.values(), "Memory/items", "Memory/per_class")
"""Every name :class:`CferTermsMetric` can emit."""


class CferTermsMetric(PluginMetric[dict]):
    """Distillation terms per iteration and the replay memory per experience, for loggers.

    ``result()`` is the latest value of every name emitted so far.
    """

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def result(self) -> dict:
        return dict(self._last)

    def reset(self) -> None:
        self._last = {}

    def __str__(self) -> str:
        return "CferTerms"

    def _values(self, strategy, values: dict[str, float]) -> list[MetricValue]:  # noqa: ANN001
        self._last.update(values)
        x = int(strategy.clock.train_iterations)
        return [MetricValue(self, name, float(v), x) for name, v in values.items()]

    def after_training_iteration(self, strategy) -> list[MetricValue]:  # noqa: ANN001
        from cfer.continual.plugins.distillation import BasicDistillationPlugin

        values = {}
        for plugin in strategy.plugins:
            if isinstance(plugin, BasicDistillationPlugin):
                values.update({_DISTILLATION[k]: v for k, v in plugin.last.items() if k in _DISTILLATION})
        return self._values(strategy, values)

    def after_training_exp(self, strategy) -> list[MetricValue]:  # noqa: ANN001
        from avalanche.training.plugins import ReplayPlugin

        values = {}
        for plugin in strategy.plugins:
            if isinstance(plugin, ReplayPlugin):
                policy = plugin.storage_policy
                values["Memory/items"] = len(policy.buffer)
                quota = getattr(policy, "per_class_quota", None)
                if isinstance(quota, (int, float)):
                    values["Memory/per_class"] = quota
        return self._values(strategy, values)
