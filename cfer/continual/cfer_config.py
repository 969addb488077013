"""The options of the ``cfer`` strategy: :class:`CferConfig`.

:func:`cfer.continual.factory.make_strategy` turns them into Avalanche plugins; the
``cfer`` and ``published`` presets (:mod:`cfer.continual.presets`) are two values of it.

Example:
    >>> CferConfig().previous_weight, CferConfig(weight_aligning=False).weight_aligning
    (3.0, False)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CferConfig", "ADDED_OPTIONS"]

ADDED_OPTIONS: dict[str, object] = {"psmr_first_step_weight": 1.0, "shift_training": 0}
"""Options added to :class:`CferConfig` after runs and checkpoints began recording their
method, each with the value that does what the cfer without it did: a run or checkpoint
whose record lacks one goes on with that value."""


@dataclass(frozen=True)
class CferConfig:
    """Options of the ``cfer`` strategy (distillation, PSMR and bias correction).

    The defaults are the ``cfer`` preset (:mod:`cfer.continual.presets`); each attribute
    says what the ``published`` preset has.

    Attributes:
        gamma0: Initial logit-distillation weight (published: 0.1).
        temperature: Distillation temperature ``T`` (published: 3).
        first_step: ``i`` of the first compound experience in ``g_i`` (1: the experience
            index; 0: the authors' code).
        t_squared: Multiply the logit term by ``T**2`` (published: no).
        feature_weight: Weight of feature distillation (0: logits only, as published).
        feature_loss: ``"mse"`` or ``"cosine"``.
        feature_layer: The student's module whose input holds the pre-logit features
            (default: found: a ``pre_logits`` module, timm's classifier, else the last
            ``nn.Linear``; see :func:`cfer.models.features.find_feature_layer`).
        feature_from: ``"input"`` or ``"output"`` of ``feature_layer``.
        feature_samples: The items feature distillation covers: ``"all"`` (the preset),
            ``"memory"`` (those of classes seen before the step) or ``"new"``.
        psmr_mode: ``"grow"`` (m per class, published) or ``"limit"`` (M re-balanced).
        psmr_scorer: ``"current"`` model or the frozen ``"teacher"`` ranks the samples (the
            teacher those of its own classes, the current model the others).
        psmr_rescore_old: Re-sort old classes before truncating them.
        psmr_new_class_selection: ``"sorted"`` (the method), ``"random"`` (the authors' code)
            or ``"sorted_herding"`` (herding within the better-recognised half).
        psmr_score: What PSMR sorts by: ``"softmax"`` (the true class's probability, the
            method) or ``"margin"`` (its logit minus the highest other logit).
        psmr_first_step_weight: A class of the first experience (the classes the frozen
            teacher knows) keeps this many times the memory items of a later class (0.5 in
            the preset; 1, every class alike, in the published method): the teacher's
            distillation keeps its classes on every input, the memory alone keeps the others.
        logit_adjustment: ``tau`` of :class:`~cfer.continual.plugins.logit_adjustment.LogitAdjustmentPlugin`
            (0: off, the published method).
        nearest_mean: Predict by nearest class mean
            (:class:`~cfer.continual.plugins.ncm.NearestMeanPlugin`): ``"off"`` (the
            published method), ``"memory"`` or ``"memory+new"``.
        nearest_mean_mirror: Count each item and its left-right mirror image in the class
            means (iCaRL's implementation does; off in the published method, which has no
            class means).
        nearest_mean_head_weight: With nearest class mean, add the linear head's
            log-probabilities with this weight to the class means' (0: the means alone).
        balanced_epochs: Epochs of the class-balanced fine-tuning pass on the memory after
            each step (:class:`~cfer.continual.plugins.balanced.BalancedFinetunePlugin`;
            0: off, the published method).
        balanced_lr: Learning rate of that pass.
        previous_weight: Weight of logit distillation from the previous step's frozen
            student, over all the classes it knew (0: off, the published method).
        previous_weight_scale: ``"constant"`` or ``"sqrt_ratio"`` (``previous_weight`` times
            ``sqrt(old classes / new classes)`` at each step; ``"constant"`` when it is off).
        previous_feature_weight: Weight of ``1 - cosine`` between the student's pre-logit
            features and the previous step's frozen student's (0: off, the published method).
        criterion: ``"ce"`` (softmax cross-entropy, the published method) or ``"sigmoid"``
            (per-class binary cross-entropy, old classes' targets from the previous
            student, as iCaRL trains:
            :class:`~cfer.continual.plugins.sigmoid.SigmoidCriterionPlugin`).
        replay_batches: ``"mixed"`` (half new data, half memory per mini-batch; an epoch
            is a pass over the new data: Avalanche's ``ReplayPlugin``, the published
            method) or ``"concat"`` (an epoch is a pass over new data and memory together).
        cache_teacher: Compute the frozen teacher's and previous student's outputs once per
            distinct input in a step (:mod:`cfer.continual.output_cache`; exact, so the
            ``published`` preset has it too: it changes the cost, not the result).
        weight_aligning: After each step, scale the new classes' head weights to the old
            classes' mean norm (:mod:`~cfer.continual.plugins.weight_aligning`; on in the
            preset, off in the published method; a cosine head has no norms to align, so
            with ``head="cosine"`` it does nothing).
        head: The student's growing head: ``"linear"`` (the published method and the
            preset) or ``"cosine"`` (a learnt scale times the cosine of features and class
            weights, :mod:`cfer.continual.cosine_head`; the strategy turns the model's linear
            head into one, keeping each class's weights).
        mirror_training: Replace half of each training mini-batch's faces, drawn at random,
            by their mirror images (:mod:`~cfer.continual.plugins.mirror_augment`; on in the
            preset, off in the published method, which trains on the faces as stored).
        shift_training: Move each training face by a random whole number of pixels, up to
            this many in each direction (:mod:`~cfer.continual.plugins.shift_augment`; 0:
            off, in the preset and the published method; 2 is measured in
            ``docs/benchmarks.md``).
    """

    gamma0: float = 0.1
    temperature: float = 3.0
    first_step: int = 1
    t_squared: bool = False
    feature_weight: float = 1.0
    feature_loss: str = "mse"
    feature_layer: str | None = None
    feature_from: str = "input"
    feature_samples: str = "all"
    psmr_mode: str = "limit"
    psmr_scorer: str = "current"
    psmr_rescore_old: bool = False
    psmr_new_class_selection: str = "sorted_herding"
    psmr_score: str = "softmax"
    psmr_first_step_weight: float = 0.5
    logit_adjustment: float = 1.0
    nearest_mean: str = "memory"
    nearest_mean_mirror: bool = True
    nearest_mean_head_weight: float = 0.0
    balanced_epochs: int = 0
    balanced_lr: float = 1e-4
    replay_batches: str = "concat"
    criterion: str = "ce"
    previous_weight: float = 3.0
    previous_weight_scale: str = "constant"
    previous_feature_weight: float = 0.0
    cache_teacher: bool = True
    weight_aligning: bool = True
    head: str = "linear"
    mirror_training: bool = True
    shift_training: int = 0

    def __post_init__(self) -> None:
        if self.replay_batches not in ("mixed", "concat"):
            raise ValueError(f"replay_batches must be 'mixed' or 'concat', got {self.replay_batches!r}")
        if self.previous_weight < 0:
            raise ValueError(f"previous_weight must be >= 0 (0: off), got {self.previous_weight}")
        if self.previous_weight_scale not in ("constant", "sqrt_ratio"):
            raise ValueError(f"previous_weight_scale must be 'constant' or 'sqrt_ratio', got "
                             f"{self.previous_weight_scale!r}")
        if self.previous_feature_weight < 0:
            raise ValueError(f"previous_feature_weight must be >= 0 (0: off), got {self.previous_feature_weight}")
        if self.criterion not in ("ce", "sigmoid"):
            raise ValueError(f"criterion must be 'ce' or 'sigmoid', got {self.criterion!r}")
        if not self.psmr_first_step_weight > 0:
            raise ValueError(f"psmr_first_step_weight must be > 0 (1: every class alike), got "
                             f"{self.psmr_first_step_weight}")
        if self.nearest_mean not in ("off", "memory", "memory+new"):
            raise ValueError(f"nearest_mean must be 'off', 'memory' or 'memory+new', got {self.nearest_mean!r}")
        if self.balanced_epochs < 0 or not self.balanced_lr > 0:
            raise ValueError("balanced_epochs must be >= 0 (0: off) and balanced_lr > 0")
        if isinstance(self.shift_training, bool) or not isinstance(self.shift_training, int) \
                or self.shift_training < 0:
            raise ValueError(f"shift_training must be a whole number of pixels >= 0 (0: off), got "
                             f"{self.shift_training!r}")
        if self.head not in ("linear", "cosine"):
            raise ValueError(f"head must be 'linear' or 'cosine', got {self.head!r}")
