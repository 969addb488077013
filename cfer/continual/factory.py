"""``make_strategy``: cfer and the baselines it is compared with, built the same way.

Every strategy gets the same model (the caller passes a fresh copy), optimiser, epochs,
mini-batch size and replay budget; baselines are Avalanche's own implementations.

=============  ===================================================================
name           what it is
=============  ===================================================================
``cfer``       cfer's default preset: distillation from the frozen basic teacher
               (logits + features), predictive-sorting replay, logit adjustment and
               nearest-class-mean prediction (:mod:`cfer.continual.presets`; options
               through ``cfer=CferConfig(...)``)
``published``  the method as published (Maiden & Nakisa 2023), exactly: logit
               distillation and PSMR in grow mode, nothing else
``naive``      fine-tuning on each experience (lower bound)
``joint``      Avalanche ``Cumulative``: retrain on all data seen so far (upper bound)
``lwf``        Learning without Forgetting (previous model's logits)
``replay``     class-balanced replay, random selection
``herding``    class-balanced replay, herding selection (iCaRL's rule)
``icarl``      iCaRL (herding memory, distillation, nearest-mean-of-exemplars)
``der``        Dark Experience Replay (logits in the buffer)
``ewc``        Elastic Weight Consolidation
=============  ===================================================================

Example:
    >>> strategy = make_strategy("cfer", model=model, optimizer=opt, memory_size=300,
    ...                          total_classes=21, train_epochs=3)          # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from cfer.models.ensemble_loss import criterion_for
from cfer.models.features import pre_logits

if TYPE_CHECKING:  # pragma: no cover
    from avalanche.training.templates import SupervisedTemplate

__all__ = ["STRATEGIES", "CferConfig", "make_strategy"]

STRATEGIES: tuple[str, ...] = ("cfer", "published", "naive", "joint", "lwf", "replay", "herding", "icarl", "der", "ewc")

# Hyper-parameters of the baselines: Avalanche's defaults where it has them.
_LWF_ALPHA, _LWF_TEMPERATURE = 1.0, 2.0
_EWC_LAMBDA = 100.0
_DER_ALPHA, _DER_BETA = 0.1, 0.5


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
        psmr_scorer: ``"current"`` model or the frozen ``"teacher"`` ranks the samples.
        psmr_rescore_old: Re-sort old classes before truncating them.
        psmr_new_class_selection: ``"sorted"`` (the method), ``"random"`` (the authors' code)
            or ``"sorted_herding"`` (herding within the better-recognised half).
        psmr_score: What PSMR sorts by: ``"softmax"`` (the true class's probability, the
            method) or ``"margin"`` (its logit minus the highest other logit).
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
        if self.nearest_mean not in ("off", "memory", "memory+new"):
            raise ValueError(f"nearest_mean must be 'off', 'memory' or 'memory+new', got {self.nearest_mean!r}")
        if self.balanced_epochs < 0 or not self.balanced_lr > 0:
            raise ValueError("balanced_epochs must be >= 0 (0: off) and balanced_lr > 0")
        if self.head not in ("linear", "cosine"):
            raise ValueError(f"head must be 'linear' or 'cosine', got {self.head!r}")


def make_strategy(
    name: str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_epochs: int = 1,
    train_mb_size: int = 64,
    eval_mb_size: int = 256,
    memory_size: int = 200,
    total_classes: int | None = None,
    teacher: nn.Module | None = None,
    plugins: Sequence[object] = (),
    evaluator: object | None = None,
    device: str | torch.device = "cpu",
    cfer: CferConfig = CferConfig(),
) -> "SupervisedTemplate":
    """Build a strategy by name.

    Args:
        name: One of :data:`STRATEGIES`.
        model: The model to train (a :class:`~cfer.continual.growing.GrowingClassifier`
            for ``icarl``, ``herding`` and ``der``; any classifier for the others,
            ``cfer``'s feature distillation included).
        optimizer: An optimiser over ``model``'s parameters.
        train_epochs: Epochs per experience.
        train_mb_size: Training mini-batch size.
        eval_mb_size: Evaluation mini-batch size.
        memory_size: Replay budget in items (replay, herding, icarl, der, cfer).
        total_classes: Classes the stream will have (``cfer``'s per-class quota).
        teacher: Frozen basic teacher for ``cfer`` (default: a copy of the model taken
            after the first experience).
        plugins: Extra plugins; the caller's sequence is copied, never mutated.
        evaluator: An Avalanche ``EvaluationPlugin`` (default: :func:`cfer.continual.metrics.make_evaluator`).
        device: Torch device.
        cfer: Options of the cfer strategy's plugins (the default is the ``cfer`` preset;
            ``published`` takes none).

    Returns:
        An Avalanche strategy (a ``SupervisedTemplate``).

    Raises:
        ValueError: For an unknown name (the message lists the known ones and the
            closest), or options a strategy cannot use.
    """
    from avalanche.training import DER, EWC, ICaRL, LwF, Naive
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import (
        ClassBalancedBuffer,
        HerdingSelectionStrategy,
        ParametricBuffer,
    )
    from avalanche.training.supervised.cumulative import Cumulative

    from cfer.continual.metrics import make_evaluator

    key = str(name).strip().lower()
    if key not in STRATEGIES:
        close = difflib.get_close_matches(key, STRATEGIES, n=2)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown strategy {name!r}{hint}; known strategies: {list(STRATEGIES)}")
    if train_epochs < 1 or train_mb_size < 1 or eval_mb_size < 1:
        raise ValueError("train_epochs, train_mb_size and eval_mb_size must be >= 1")
    if memory_size < 0:
        raise ValueError(f"memory_size must be >= 0, got {memory_size}")
    extra = list(plugins)  # never mutate the caller's list
    common = dict(optimizer=optimizer, train_mb_size=train_mb_size, train_epochs=train_epochs,
                  eval_mb_size=eval_mb_size, device=device,
                  evaluator=evaluator if evaluator is not None else make_evaluator())
    ce = criterion_for(model)  # cross-entropy; for an ensemble its own loss (cfer.models.ensemble_loss)

    if key == "naive":
        return Naive(model=model, criterion=ce, plugins=extra, **common)
    if key == "joint":
        return Cumulative(model=model, criterion=ce, plugins=extra, **common)
    if key == "lwf":
        return LwF(model=model, criterion=ce, alpha=_LWF_ALPHA, temperature=_LWF_TEMPERATURE,
                   plugins=extra, **common)
    if key == "ewc":
        return EWC(model=model, criterion=ce, ewc_lambda=_EWC_LAMBDA, plugins=extra, **common)
    if key == "der":
        # Avalanche's DER stores logits and compares them with later outputs, so the head
        # must not change width: it gets every class's output from the start, unmasked
        # (the single fixed head of the DER paper).
        if total_classes is None:
            raise ValueError("the der strategy needs total_classes: DER keeps a fixed-width head")
        _require_growing(model, key)
        model.grow(total_classes)
        model.head.masking = False
        return DER(model=model, criterion=ce, mem_size=memory_size, alpha=_DER_ALPHA,
                   beta=_DER_BETA, plugins=extra, **common)
    if key == "replay":
        policy = ClassBalancedBuffer(max_size=memory_size, adaptive_size=True)
        return Naive(model=model, criterion=ce, plugins=[ReplayPlugin(mem_size=memory_size, storage_policy=policy),
                                                          *extra], **common)
    if key == "herding":
        _require_growing(model, key)
        policy = ParametricBuffer(max_size=memory_size, groupby="class",
                                  selection_strategy=HerdingSelectionStrategy(model, "pre_logits"))
        return Naive(model=model, criterion=ce, plugins=[ReplayPlugin(mem_size=memory_size, storage_policy=policy),
                                                          *extra], **common)
    if key == "icarl":
        _require_growing(model, key)
        if total_classes is None:
            raise ValueError("the icarl strategy needs total_classes: Avalanche's iCaRL trains a fixed-width head")
        # Avalanche's iCaRL keeps a copy of the whole model, so its head cannot grow:
        # it gets a fixed linear head over all classes (as in Avalanche's own examples)
        # and classifies by nearest mean of exemplars at evaluation.
        classifier = nn.Linear(model.num_features, total_classes)
        return ICaRL(feature_extractor=_FeatureExtractor(model), classifier=classifier, memory_size=memory_size,
                     buffer_transform=None, fixed_memory=True, plugins=[_class_order_check(), *extra], **common)
    # cfer and published
    from cfer.continual.plugins.distillation import BasicDistillationPlugin
    from cfer.continual.plugins.logit_adjustment import LogitAdjustmentPlugin
    from cfer.continual.plugins.psmr import psmr_plugin

    if total_classes is None:
        raise ValueError(f"the {key} strategy needs total_classes (the number of classes the stream will have)")
    if key == "published":
        from cfer.continual.presets import preset_config

        if cfer != CferConfig():
            raise ValueError("the 'published' strategy is the method as published and takes no cfer options; "
                             "use make_strategy('cfer', cfer=CferConfig(...)) to change them")
        cfer = preset_config("published")
    if cfer.head == "cosine":
        _cosine_head(model)
    distill = BasicDistillationPlugin(teacher=teacher, temperature=cfer.temperature, gamma0=cfer.gamma0,
                                      first_step=cfer.first_step, t_squared=cfer.t_squared,
                                      feature_weight=cfer.feature_weight, feature_loss=cfer.feature_loss,
                                      feature_layer=cfer.feature_layer, feature_from=cfer.feature_from,
                                      feature_samples=cfer.feature_samples,
                                      previous_weight=cfer.previous_weight,
                                      previous_feature_weight=cfer.previous_feature_weight,
                                      previous_weight_scale=cfer.previous_weight_scale,
                                      cache_outputs=cfer.cache_teacher)
    replay = psmr_plugin(max_size=memory_size, total_classes=total_classes, mode=cfer.psmr_mode,
                         scorer=cfer.psmr_scorer, teacher=teacher if cfer.psmr_scorer == "teacher" else None,
                         rescore_old=cfer.psmr_rescore_old, new_class_selection=cfer.psmr_new_class_selection,
                         score=cfer.psmr_score, batches=cfer.replay_batches)
    own = [distill, replay]
    if cfer.criterion == "sigmoid":  # innermost criterion (it wraps in before_training); copies the model
        from cfer.continual.plugins.sigmoid import SigmoidCriterionPlugin  # after distillation removed its taps

        own.insert(1, SigmoidCriterionPlugin())
    if cfer.weight_aligning and cfer.head == "linear":  # first: PSMR and the frozen copies see it aligned
        from cfer.continual.plugins.weight_aligning import WeightAligningPlugin

        own.insert(0, WeightAligningPlugin())
    if cfer.logit_adjustment > 0:
        own.append(LogitAdjustmentPlugin(tau=cfer.logit_adjustment))
    # After the replay plugin: both read the memory it has just updated, fine-tuning first.
    if cfer.balanced_epochs > 0:
        from cfer.continual.plugins.balanced import BalancedFinetunePlugin

        own.append(BalancedFinetunePlugin(epochs=cfer.balanced_epochs, lr=cfer.balanced_lr,
                                          batch_size=train_mb_size))
    if cfer.nearest_mean != "off":
        from cfer.continual.plugins.ncm import NearestMeanPlugin

        own.append(NearestMeanPlugin(source=cfer.nearest_mean, mirror=cfer.nearest_mean_mirror,
                                     head_weight=cfer.nearest_mean_head_weight))
    return Naive(model=model, criterion=ce, plugins=[*own, *extra], **common)


class _FeatureExtractor(nn.Module):
    """The pre-logit part of a GrowingClassifier, as iCaRL's feature extractor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.backbone
        self.pre_logits = model.pre_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_logits(pre_logits(self.model, x))


def _class_order_check():  # noqa: ANN202
    """A plugin that stops Avalanche's iCaRL, before it trains, on a stream it cannot read,
    and gives it the sizes it would otherwise learn only from a training forward pass."""
    from avalanche.core import SupervisedPlugin

    class ClassOrderCheck(SupervisedPlugin, supports_distributed=True):
        def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
            bench = getattr(strategy.experience, "benchmark", None)
            if not (hasattr(bench, "n_classes_per_exp") and hasattr(bench, "classes_order")):
                raise ValueError("Avalanche's iCaRL reads experience.benchmark.n_classes_per_exp and classes_order, "
                                 "which experiences of class_incremental_benchmark / benchmark_from_datasets "
                                 "lack; build the stream with nc_benchmark or cfer.continual.stream.make_stream")

        @torch.no_grad()
        def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
            # Avalanche's iCaRL learns the input and embedding sizes in its first training
            # forward; an experience trained for 0 epochs (a student that starts as a copy of
            # a trained teacher, BasicEpochsPlugin(basic_epochs=0)) has none, and building
            # its exemplar set then fails. Probe one item instead (this plugin runs first).
            from avalanche.training.supervised.icarl import _ICaRLPlugin

            for plugin in strategy.plugins:
                if isinstance(plugin, _ICaRLPlugin) and plugin.input_size is None:
                    x = strategy.experience.dataset[0][0][None].to(strategy.device)
                    extractor = strategy.model.feature_extractor
                    was = extractor.training
                    extractor.eval()  # batch-norm statistics untouched
                    plugin.input_size = x.shape[1:]
                    plugin.output_size = strategy.model.train_classifier.out_features
                    plugin.embedding_size = extractor(x).shape[1]
                    extractor.train(was)

    return ClassOrderCheck()


def _cosine_head(model: nn.Module) -> None:
    from cfer.continual.cosine_head import use_cosine_head

    try:
        use_cosine_head(model)
    except TypeError as err:
        raise ValueError(f"{err}, or keep its own head with cfer=CferConfig(head='linear')") from None


def _require_growing(model: nn.Module, key: str) -> None:
    from cfer.continual.growing import GrowingClassifier

    if not isinstance(model, GrowingClassifier):
        raise ValueError(f"the {key} strategy needs a cfer.continual.growing.GrowingClassifier model, "
                         f"got {type(model).__name__}")
