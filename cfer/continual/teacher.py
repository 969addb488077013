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

import copy
import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cfer import taxonomy
from cfer.continual.evaluation import LazyItems, evaluate, evaluate_classes, inputs_of
from cfer.continual.growing import build_model
from cfer.data.augment import FaceAugment
from cfer.data.base import FaceDataset
from cfer.distributed import (
    all_reduce_sum,
    autocast,
    check_precision,
    is_main,
    resolve_device,
    shard,
    sync_buffers,
    world_size,
    wrap_ddp,
)
from cfer.models.decay import decay_groups, layer_decay_groups
from cfer.models.ensemble_loss import criterion_for
from cfer.schedule import lr_at

__all__ = ["TeacherConfig", "TeacherResult", "PHOTO_RECIPE", "photo_recipe", "train_teacher", "evaluate",
           "evaluate_classes", "LazyItems"]

logger = logging.getLogger(__name__)

AUGMENTS = ("shift", "faces", "none")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")


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

    def __post_init__(self) -> None:
        from cfer.distributed import check_precision, resolve_device

        resolve_device(self.device)  # refuses a bad spelling, or CUDA where there is none
        check_precision(self.precision, None)  # the device's own limits are checked where training starts
        if isinstance(self.augment, bool):
            object.__setattr__(self, "augment", "shift" if self.augment else "none")
        for name, allowed in (("augment", AUGMENTS), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
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


def _shift_draws(n: int, g: torch.Generator) -> tuple[torch.Tensor, int, int]:
    """The ``shift`` augmentation's draws for a global batch of ``n``: a flip per face, one shift."""
    flip = torch.rand(n, generator=g) < 0.5
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    return flip, dx, dy


def _shift(x: torch.Tensor, flip: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def _optimizer(model: nn.Module, config: TeacherConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw" and config.layer_decay < 1:
        groups = layer_decay_groups(model, weight_decay=config.weight_decay, layer_decay=config.layer_decay)
        for g in groups:
            g["lr"] = config.lr * g["lr_scale"]
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(decay_groups(model, weight_decay=config.weight_decay), lr=config.lr)
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                            weight_decay=config.weight_decay)


def _set_lr(opt: torch.optim.Optimizer, config: TeacherConfig, *, step: int, total: int, warmup: int) -> None:
    if config.schedule == "cosine":
        lr = lr_at(step, total=total, warmup=warmup, lr=config.lr, min_lr=0.01 * config.lr)
    else:
        lr = config.lr * min(1.0, (step + 1) / warmup)
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


@torch.no_grad()
def _options(config: TeacherConfig, train: object) -> dict:
    """The model builder's options: the config's, plus the clip layout of a clip dataset."""
    options = dict(config.arch_options)
    if getattr(train, "layout", None) is not None:
        options.setdefault("layout", train.layout)
    return options


def _for_training(model: nn.Module, *, device: torch.device, compiled: bool) -> nn.Module:
    """What the training forward calls: the model, under DDP when in a distributed job, compiled if asked."""
    net = wrap_ddp(model, device=device, static_graph=not compiled)
    if compiled:
        net = torch.compile(net)
    return net


@torch.no_grad()
def _sharded_accuracy(model: nn.Module, x: torch.Tensor | LazyItems, y: torch.Tensor, *, device: torch.device,
                      precision: str) -> float:
    """Accuracy on ``(x, y)``: each process scores its shard, the counts are summed."""
    model.eval()
    mine = shard(torch.arange(len(y)))  # positions, so that lazy inputs load only this shard
    correct = torch.zeros((), dtype=torch.long)
    for i in range(0, len(mine), 256):
        pos = mine[i:i + 256]
        with autocast(device, precision):
            out = model(x[pos].to(device))
        correct += (out.argmax(1).cpu() == y[pos]).sum()
    return int(all_reduce_sum(correct)) / len(x)


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
    if device.type == "cuda":  # page-locked host memory: the copies to the GPU overlap the compute
        xt, yt, xv, yv = (t.pin_memory() for t in (xt, yt, xv, yv))
    opt = _optimizer(model, config)
    criterion = criterion_for(model, label_smoothing=config.label_smoothing)  # an ensemble's loss, else CE
    augment = (FaceAugment(image_size=train.image_size[-1], channels=train.channels, strength=config.augment_strength)
               if config.augment == "faces" else None)
    world = world_size()
    net = _for_training(model, device=device, compiled=config.compile)
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16")
    steps_per_epoch = -(-len(xt) // config.batch_size)
    total_steps, warmup_steps, step = config.max_epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch, 0
    g = torch.Generator().manual_seed(config.seed)
    best, best_state, best_epoch, since, history = -1.0, None, 0, 0, []
    epochs = range(config.max_epochs)
    if config.progress and is_main():
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="teacher", unit="epoch")
    if world > 1:
        logger.info("teacher: DDP over %d processes, %d faces per process and global batch of %d", world,
                    -(-config.batch_size // world), config.batch_size)
    # Dropout draws from torch's global generator: seed it for the loop, so the same config
    # gives the same teacher in any process and after any earlier work, and leave the
    # caller's generator as it was. Every rank draws the same shuffles, flips and shifts from
    # ``g`` for each global batch and applies them to its own shard of it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for epoch in epochs:
            model.train()
            perm = torch.randperm(len(xt), generator=g)
            total = torch.zeros(())
            for i in range(0, len(xt), config.batch_size):
                idx = perm[i:i + config.batch_size]
                mine = shard(idx)  # this process's faces of the global batch (all of it in one process)
                xb, yb = xt[mine], yt[mine]
                if config.augment == "shift":  # drawn for the whole batch, as one process would
                    flip, dx, dy = _shift_draws(len(idx), g)
                    xb = _shift(xb, shard(flip), dx, dy)
                if config.schedule == "cosine" or warmup_steps:
                    _set_lr(opt, config, step=step, total=total_steps, warmup=warmup_steps)
                step += 1
                if len(idx) < world:  # a last batch too small to give every process an item (all skip it)
                    continue
                if augment is not None:
                    xb, yb = augment(xb, yb)
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                opt.zero_grad()
                with autocast(device, config.precision):
                    loss = criterion(net(xb), yb)
                # DDP averages the processes' gradients; weigh each by its share of the global
                # batch so that the average is the global batch's mean loss even when it does
                # not divide evenly.
                scaled = loss * (len(yb) * world / len(idx)) if world > 1 else loss
                scaler.scale(scaled).backward()
                scaler.step(opt)
                scaler.update()
                total += loss.detach().float().cpu() * len(yb)
            sync_buffers(model)  # rank 0's BatchNorm statistics everywhere before validation
            acc = _sharded_accuracy(model, xv, yv, device=device, precision=config.precision)
            train_loss = float(all_reduce_sum(total)) / len(xt)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_accuracy": acc,
                            "lr": opt.param_groups[0]["lr"]})
            logger.info("teacher epoch %d: loss %.3f, val acc %.3f", epoch, train_loss, acc)
            if acc > best:
                best, best_state, best_epoch, since = acc, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                since += 1
                if since >= config.patience:
                    break
    model.load_state_dict(best_state)
    model.cpu().eval()
    return TeacherResult(model=model, classes=classes, best_epoch=best_epoch, best_val_accuracy=best, history=history)
