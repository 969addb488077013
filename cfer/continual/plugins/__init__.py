"""cfer's Avalanche plugins and storage policies, one a module.

* :mod:`~cfer.continual.plugins.distillation`: logit and feature distillation from the
  frozen basic teacher (``BasicDistillationPlugin``);
* :mod:`~cfer.continual.plugins.psmr`: predictive-sorting memory replay
  (``PredictiveSortingBuffer``, an ``ExemplarsBuffer``);
* :mod:`~cfer.continual.plugins.logit_adjustment`: logit adjustment against the new-class
  bias (``LogitAdjustmentPlugin``);
* :mod:`~cfer.continual.plugins.epochs`: a different number of epochs for the first
  experience (``BasicEpochsPlugin``);
* :mod:`~cfer.continual.plugins.criterion`: how plugins that change the criterion compose.

Example:
    >>> from cfer.continual.plugins import BasicDistillationPlugin
    >>> BasicDistillationPlugin(feature_weight=0.0).feature_weight
    0.0
"""

from __future__ import annotations

from cfer.lazy import lazy_attributes

_NAMES = {
    "BasicDistillationPlugin": "distillation", "gamma_schedule": "distillation",
    "logit_distillation": "distillation", "feature_distillation": "distillation",
    "PredictiveSortingBuffer": "psmr", "PredictiveSortingSelection": "psmr", "psmr_plugin": "psmr",
    "LogitAdjustmentPlugin": "logit_adjustment", "BasicEpochsPlugin": "epochs",
    "CriterionAdjustment": "criterion", "adjust_criterion": "criterion",
}

__all__ = sorted(_NAMES)

__getattr__ = lazy_attributes("cfer.continual.plugins", _NAMES)
