"""cfer's Avalanche plugins and storage policies, one a module.

* :mod:`~cfer.continual.plugins.distillation`: logit and feature distillation from the
  frozen basic teacher (``BasicDistillationPlugin``);
* :mod:`~cfer.continual.plugins.psmr`: predictive-sorting memory replay
  (``PredictiveSortingBuffer``, an ``ExemplarsBuffer``);
* :mod:`~cfer.continual.plugins.logit_adjustment`: logit adjustment against the new-class
  bias (``LogitAdjustmentPlugin``);
* :mod:`~cfer.continual.plugins.epochs`: a different number of epochs for the first
  experience (``BasicEpochsPlugin``).
"""
