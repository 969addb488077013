"""Train, save and load the basic-expression teacher.

The teacher is a :class:`~cfer.continual.growing.GrowingClassifier` trained on the basic
classes only, with early stopping on a validation split (never on the test split). Its
frozen copy is what :class:`~cfer.continual.plugins.distillation.BasicDistillationPlugin` distils
from.

Example:
    >>> from cfer.data.synthetic import make_synthetic_splits
    >>> from cfer.continual.teacher import TeacherConfig, train_teacher
    >>> sp = make_synthetic_splits(classes="basic", subjects=(6, 2, 2), per_class=3)
    >>> result = train_teacher(train=sp["train"], val=sp["val"],
    ...                        config=TeacherConfig(arch="cfer_tiny", max_epochs=2))  # doctest: +SKIP
    >>> result.best_val_accuracy                                                        # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cfer import taxonomy
from cfer.continual.evaluation import LazyItems, evaluate, evaluate_classes, inputs_of
from cfer.continual.growing import build_model
from cfer.continual.members import fit_members
from cfer.continual.teacher_fit import fit
from cfer.data.base import FaceDataset
from cfer.distributed import check_precision, resolve_device
from cfer.models.ensemble_loss import criterion_for

__all__ = ["TeacherConfig", "TeacherResult", "PHOTO_RECIPE", "photo_recipe", "train_teacher", "evaluate",
           "evaluate_classes", "LazyItems"]

logger = logging.getLogger(__name__)

AUGMENTS = ("shift", "faces", "none")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")
MEMBER_TRAINING = ("joint", "one_by_one")


@dataclass(frozen=True)
class TeacherConfig:
    """How the teacher is trained.

    Attributes:
        arch: Backbone name (a cfer model such as ``"resemotenet_slim"`` or any timm model).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        batch_size: Mini-batch size.
        max_epochs: Upper bound on epochs.
        patience: Stop after this many epochs without a better validation accuracy.
        seed: Seed of initialisation, shuffling, augmentation and dropout (private
            generators; the global torch generator is seeded for the loop and restored).
        augment: ``"shift"``: random horizontal flips and 2-pixel shifts (fast; the default,
            enough for the aligned synthetic faces); ``"faces"``: the photo augmentation of
            :class:`cfer.data.augment.FaceAugment` (random resized crop, flip, small
            rotation, brightness/contrast jitter, per image with ``transforms.v2``);
            ``"none"``. ``True``/``False`` mean ``"shift"``/``"none"``.
        augment_strength: Scales the ``"faces"`` augmentation's crop, rotation and jitter.
        optimizer: ``"adam"`` (weight decay added to the gradient) or ``"adamw"`` (decoupled
            decay, none on biases, norms and ViT tokens: :func:`cfer.models.decay.decay_groups`).
        label_smoothing: Cross-entropy label smoothing (0: none).
        mixup: Mixup (Zhang et al. 2018) with this Beta(α, α) parameter: each face of a
            shuffled mini-batch is blended with the next one with a weight λ drawn once per
            batch, and the loss is λ times the loss on the first face's label plus 1 − λ
            times the loss on the second's. 0 (the default): none. Image tensors only.
        warmup_epochs: Epochs of linear learning-rate warm-up (0: none).
        schedule: ``"constant"`` or ``"cosine"`` (decay to 1% of ``lr`` at ``max_epochs``;
            with early stopping the run may end before).
        progress: Show a tqdm bar over epochs.
        weights: Optional weights for the backbone: a local file (see ``cfer.models.load_weights``;
            e.g. the ``encoder.pt`` of ``cfer pretrain``) or hub weights (``hf-hub:ORG/NAME``, a
            timm tag; see ``cfer.models.hub``).
        freeze_stages: Freeze the backbone's stem and its first ``freeze_stages`` blocks or
            stages (``cfer.models.freeze_stages``): fine-tune a pretrained encoder from its
            later layers. 0 trains everything.
        device: ``"auto"`` (this rank's GPU when CUDA works, else the CPU), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"`` (:func:`cfer.distributed.resolve_device`). The trained
            teacher is returned on the CPU.
        precision: ``"fp32"``, ``"bf16"`` (mixed precision with ``torch.autocast``, CPU or
            CUDA) or ``"fp16"`` (CUDA, with a gradient scaler).
        compile: Train through ``torch.compile(model)`` (needs a C++ compiler on the CPU).
        layer_decay: Layer-wise learning-rate decay for fine-tuning a pretrained encoder
            (``adamw`` only): the head and the last block learn at ``lr``, each earlier block
            or stage at ``layer_decay`` times the next one's rate
            (:func:`cfer.models.decay.layer_decay_groups`). 1: every layer at ``lr``.
        arch_options: Keyword arguments of the model's builder (e.g. for a clip model
            ``{"streams": ("frames", "motion"), "temporal": "gru"}``); empty: its defaults.
        member_training: For an ensemble arch: ``"joint"`` (every member at once with the
            ensemble loss) or ``"one_by_one"`` (each member alone with cross-entropy and its
            own early stopping, then, with ``learn_weights=true``, the fusion weights fitted
            on the validation set: :func:`cfer.continual.members.fit_members`).
        precise_bn: Before each validation, recompute the BatchNorm layers' running
            statistics as an average over the training faces
            (:func:`cfer.continual.precise_bn.recompute_batchnorm`) instead of keeping the
            moving average of the last mini-batches. The eval-mode model, its validation
            accuracy and the saved best epoch then use the statistics of the whole training
            set; costs one forward pass over it per epoch.

    Under ``torchrun`` (:mod:`cfer.distributed`) the model is wrapped in
    ``DistributedDataParallel``: each of the N processes takes every N-th item of each
    global mini-batch of ``batch_size`` (the same batches as one process, the same
    learning rate), the validation accuracy is computed on shards and summed, and every
    process ends with the same teacher.
    """

    arch: str = "resemotenet_slim"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 15
    patience: int = 3
    seed: int = 0
    augment: str | bool = "shift"
    progress: bool = False
    weights: str | None = None
    freeze_stages: int = 0
    augment_strength: float = 1.0
    optimizer: str = "adam"
    label_smoothing: float = 0.0
    warmup_epochs: int = 0
    schedule: str = "constant"
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    layer_decay: float = 1.0
    arch_options: dict = field(default_factory=dict)
    member_training: str = "joint"
    precise_bn: bool = False
    mixup: float = 0.0

    def __post_init__(self) -> None:
        from cfer.distributed import check_precision, resolve_device

        resolve_device(self.device)  # refuses a bad spelling, or CUDA where there is none
        check_precision(self.precision, None)  # the device's own limits are checked where training starts
        if isinstance(self.augment, bool):
            object.__setattr__(self, "augment", "shift" if self.augment else "none")
        for name, allowed in (("augment", AUGMENTS), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("member_training", MEMBER_TRAINING)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not self.mixup >= 0:
            raise ValueError(f"mixup must be >= 0 (0: none; 0.2 to 1 are usual), got {self.mixup}")
        if self.warmup_epochs < 0 or self.augment_strength < 0:
            raise ValueError(f"warmup_epochs and augment_strength must be >= 0, got {self.warmup_epochs} and "
                             f"{self.augment_strength}")
        if self.freeze_stages < 0:
            raise ValueError(f"freeze_stages must be >= 0, got {self.freeze_stages}")
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must lie in (0, 1] (1: none), got {self.layer_decay}")
        if self.member_training == "one_by_one" and not self.arch.startswith("ensemble:"):
            raise ValueError(f"member_training='one_by_one' trains an ensemble's members one at a time; arch "
                             f"{self.arch!r} is not an ensemble (use 'ensemble:A+B', or member_training='joint')")
        if self.layer_decay < 1 and self.optimizer != "adamw":
            raise ValueError("layer_decay needs optimizer='adamw' (its parameter groups carry the decay)")


PHOTO_RECIPE = TeacherConfig(augment="faces", optimizer="adamw", lr=1e-3, weight_decay=0.05, label_smoothing=0.1,
                             warmup_epochs=3, schedule="cosine", max_epochs=40, patience=8)
"""The photo recipe's settings (see :func:`photo_recipe`)."""


def photo_recipe(**changes: object) -> TeacherConfig:
    """The teacher recipe for real photos: :data:`PHOTO_RECIPE` with ``changes``.

    Face augmentation (random resized crop, flip, rotation up to 10 degrees, brightness and
    contrast jitter), AdamW with decay 0.05, label smoothing 0.1, 3 epochs of warm-up then
    cosine decay, up to 40 epochs with early stopping on the validation subjects
    (patience 8). The defaults of ``cfer run --data``; the synthetic faces keep the fast
    :class:`TeacherConfig` defaults.

    Example:
        >>> photo_recipe(arch="vit_face_mini").schedule
        'cosine'
    """
    return dataclasses.replace(PHOTO_RECIPE, **changes)


@dataclass
class TeacherResult:
    """A trained teacher and its training record."""

    model: nn.Module
    classes: tuple[str, ...]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)


def _options(config: TeacherConfig, train: object) -> dict:
    """The model builder's options: the config's, plus the clip layout of a clip dataset."""
    options = dict(config.arch_options)
    if getattr(train, "layout", None) is not None:
        options.setdefault("layout", train.layout)
    return options


def train_teacher(*, train: FaceDataset, val: FaceDataset, config: TeacherConfig = TeacherConfig(),
                  classes: tuple[str, ...] | None = None) -> TeacherResult:
    """Train the basic-expression teacher with early stopping on ``val``.

    An ensemble arch (``"ensemble:cfer_tiny+resemotenet_slim@48"``) trains a
    ``GrowingEnsemble`` with the ensemble loss
    (:class:`~cfer.models.ensemble_loss.EnsembleCriterion`: every member's and the fused
    cross-entropy plus ``lam`` times the members' KL to the fused output); any other arch
    a ``GrowingClassifier`` with cross-entropy.

    Clips train the same way: ``train`` and ``val`` may be
    :class:`cfer.data.video.ClipDataset` s (with a temporal ``arch`` such as
    ``"temporal_slim"``); they are decoded batch by batch, a training set built with
    ``train=True`` gives new random temporal crops every epoch, and the image augmentations
    are refused (``augment="none"``).

    Args:
        train: Training faces or clips (only the ``classes`` are used).
        val: Validation faces or clips from other subjects; selects the best epoch.
        config: Architecture and optimisation settings.
        classes: The teacher's classes, in output order (default: the basic classes
            that have training items, neutral first when it has).

    Returns:
        A :class:`TeacherResult` whose model holds the best validation epoch's weights.

    Raises:
        ValueError: If a class has no training or validation item, or subjects overlap.
    """
    if classes is None:
        present = {train.classes[i] for i in np.unique(train.labels)}
        classes = tuple(c for c in (taxonomy.NEUTRAL, *taxonomy.BASIC) if c in present)
    classes = taxonomy.normalize_many(list(classes))
    if train.subjects is not None and val.subjects is not None:
        shared = set(train.subjects) & set(val.subjects)
        if shared:
            raise ValueError(f"{len(shared)} subjects are in both train and val; split by subject first")

    def pick(ds: FaceDataset, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        names = np.asarray(ds.classes)[ds.labels]
        keep = np.isin(names, classes)
        for c in classes:
            if not (names == c).any():
                raise ValueError(f"class {c!r} has no {name} items; the teacher needs every class in both splits")
        x = inputs_of(ds, np.flatnonzero(keep))
        y = torch.as_tensor([classes.index(n) for n in names[keep]])
        return x, y

    lazy = not isinstance(train, FaceDataset)
    if lazy and config.augment != "none":
        raise ValueError(f"augment={config.augment!r} is an image augmentation; clips are augmented by their "
                         "dataset (ClipDataset(train=True): random temporal crops): pass "
                         "TeacherConfig(augment='none')")
    xt, yt = pick(train, "train")
    xv, yv = pick(val, "val")
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    model = build_model(arch=config.arch, num_classes=len(classes), in_chans=train.channels,
                        img_size=train.image_size[-1], seed=config.seed, weights=config.weights,
                        options=_options(config, train))
    if config.freeze_stages:
        from cfer.models.freeze import freeze_stages

        freeze_stages(model, stages=config.freeze_stages)
    model.to(device)
    image_size, channels = train.image_size[-1], train.channels
    if config.member_training == "one_by_one":
        fitted = fit_members(model, xt=xt, yt=yt, xv=xv, yv=yv, config=config, image_size=image_size,
                             channels=channels)
    else:  # an ensemble's loss (jointly), else cross-entropy
        fitted = fit(model, xt=xt, yt=yt, xv=xv, yv=yv, config=config, image_size=image_size, channels=channels,
                     criterion=criterion_for(model, label_smoothing=config.label_smoothing))
    model.cpu().eval()
    return TeacherResult(model=model, classes=classes, best_epoch=fitted.best_epoch,
                         best_val_accuracy=fitted.best_val_accuracy, history=fitted.history)
