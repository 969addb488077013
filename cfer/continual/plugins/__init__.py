"""cfer's Avalanche plugins and storage policies, one a module.

* :mod:`~cfer.continual.plugins.distillation`: logit and feature distillation from the
  frozen basic teacher (``BasicDistillationPlugin``);
* :mod:`~cfer.continual.plugins.psmr`: predictive-sorting memory replay
  (``PredictiveSortingBuffer``, an ``ExemplarsBuffer``);
* :mod:`~cfer.continual.plugins.logit_adjustment`: logit adjustment against the new-class
  bias (``LogitAdjustmentPlugin``);
* :mod:`~cfer.continual.plugins.ncm`: prediction by nearest class mean over the replay
  memory (``NearestMeanPlugin``);
* :mod:`~cfer.continual.plugins.weight_aligning`: the new classes' head weights scaled
  to the old classes' mean norm after each step (``WeightAligningPlugin``);
* :mod:`~cfer.continual.plugins.balanced`: a class-balanced fine-tuning pass on the memory
  after each step (``BalancedFinetunePlugin``);
* :mod:`~cfer.continual.plugins.epochs`: a different number of epochs for the first
  experience (``BasicEpochsPlugin``);
* :mod:`~cfer.continual.plugins.mirror_augment` and
  :mod:`~cfer.continual.plugins.shift_augment`: mirror images and random shifts of the
  training faces (``MirrorAugmentPlugin``, ``ShiftAugmentPlugin``);
* :mod:`~cfer.continual.plugins.weight_interpolation`: the student's weights averaged
  with the previous step's after each step (``WeightInterpolationPlugin``);
* :mod:`~cfer.continual.plugins.supervised_contrastive`: a supervised contrastive term on
  the student's features (``SupConPlugin``);
* :mod:`~cfer.continual.plugins.step_schedule`: the learning rate decays by a cosine within
  each experience (``StepCosinePlugin``);
* :mod:`~cfer.continual.plugins.head_warm_start`: the new classes' head rows fitted on the
  frozen student's features before each experience trains (``HeadWarmStartPlugin``);
* :mod:`~cfer.continual.plugins.class_balanced_sampler`: class-balanced draws of the new
  data and the memory (``ClassBalancedSamplerPlugin``);
* :mod:`~cfer.continual.plugins.early_stopping`: each experience stops when its
  validation score stops improving and ends on its best epoch (``StepEarlyStoppingPlugin``);
* :mod:`~cfer.continual.plugins.ddp`: any strategy under ``torchrun``: DDP training,
  sharded and reduced evaluation (``DistributedPlugin``);
* :mod:`~cfer.continual.plugins.criterion`: how plugins that change the criterion compose;
* :mod:`~cfer.continual.plugins.monitor`: the distillation terms and the replay memory as
  an Avalanche metric, for loggers (``CferTermsMetric``);
* :mod:`~cfer.continual.plugins.csvlog`: CSV loggers (``MetricsCSVLogger``, every metric
  as rows; ``ResumableCSVLogger``, Avalanche's ``CSVLogger`` that keeps earlier rows);
* :mod:`~cfer.continual.plugins.wandb_offline`: Avalanche's ``WandBLogger`` for scalars
  with current wandb releases (``ScalarWandBLogger``).

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
    "ConcatReplayPlugin": "psmr", "herding_order": "psmr",
    "NearestMeanPlugin": "ncm", "BalancedFinetunePlugin": "balanced",
    "LogitAdjustmentPlugin": "logit_adjustment", "BasicEpochsPlugin": "epochs",
    "StepEarlyStoppingPlugin": "early_stopping", "ClassBalancedSamplerPlugin": "class_balanced_sampler",
    "WeightAligningPlugin": "weight_aligning", "align_new_classes": "weight_aligning",
    "MirrorAugmentPlugin": "mirror_augment", "ShiftAugmentPlugin": "shift_augment",
    "WeightInterpolationPlugin": "weight_interpolation", "SupConPlugin": "supervised_contrastive",
    "supcon_loss": "supervised_contrastive", "StepCosinePlugin": "step_schedule",
    "HeadWarmStartPlugin": "head_warm_start",
    "DistributedPlugin": "ddp", "per_process_batch": "ddp",
    "CriterionAdjustment": "criterion", "adjust_criterion": "criterion",
    "CferTermsMetric": "monitor", "TERM_NAMES": "monitor",
    "MetricsCSVLogger": "csvlog", "ResumableCSVLogger": "csvlog", "ScalarWandBLogger": "wandb_offline",
}

__all__ = sorted(_NAMES)

__getattr__ = lazy_attributes("cfer.continual.plugins", _NAMES)
