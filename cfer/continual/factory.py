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
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from cfer.continual.cfer_config import CferConfig
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
                         score=cfer.psmr_score, batches=cfer.replay_batches,
                         first_step_weight=cfer.psmr_first_step_weight)
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
    if cfer.mirror_training:  # the flips come from the plugin's own generator (seed 0)
        from cfer.continual.plugins.mirror_augment import MirrorAugmentPlugin

        own.append(MirrorAugmentPlugin())
    if cfer.shift_training > 0:  # its own generator too (seed 1)
        from cfer.continual.plugins.shift_augment import ShiftAugmentPlugin

        own.append(ShiftAugmentPlugin(max_shift=cfer.shift_training))
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
