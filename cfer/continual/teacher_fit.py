"""The teacher's training loop: mini-batches, augmentation, schedule, DDP, early stopping.

:func:`fit` trains one model in place on tensors (or lazily decoded clips) and keeps its best
validation epoch. :func:`cfer.continual.teacher.train_teacher` calls it once for a model (an
ensemble trained jointly included) and once per member for an ensemble trained one member
at a time (:mod:`cfer.continual.members`).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from cfer.continual.teacher import TeacherConfig
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> x, y = torch.randn(16, 1, 2, 2), torch.arange(16) % 2
    >>> fit(model, xt=x, yt=y, xv=x, yv=y, criterion=nn.CrossEntropyLoss(),
    ...     config=TeacherConfig(max_epochs=2, augment="none", device="cpu")).best_epoch in (0, 1)
    True
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from cfer.continual.evaluation import LazyItems
from cfer.continual.precise_bn import recompute_batchnorm
from cfer.data.augment import FaceAugment
from cfer.distributed import (
    all_reduce_sum,
    autocast,
    is_main,
    resolve_device,
    shard,
    sync_buffers,
    world_size,
    wrap_ddp,
)
from cfer.models.decay import decay_groups, layer_decay_groups
from cfer.schedule import lr_at

if TYPE_CHECKING:
    from cfer.continual.teacher import TeacherConfig

__all__ = ["FitResult", "fit"]

logger = logging.getLogger("cfer.continual.teacher")  # the teacher's log, whatever module runs its loop


@dataclass
class FitResult:
    """The best validation epoch of a :func:`fit` (whose weights the model then holds)."""

    best_val_accuracy: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def _shift_draws(n: int, g: torch.Generator, *, shift: int = 2) -> tuple[torch.Tensor, int, int]:
    """The ``shift`` augmentation's draws for a global batch of ``n``: a flip per face, one shift
    of up to ``shift`` pixels."""
    flip = torch.rand(n, generator=g) < 0.5
    dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=g))
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


def fit(model: nn.Module, *, xt: torch.Tensor | LazyItems, yt: torch.Tensor, xv: torch.Tensor | LazyItems,
        yv: torch.Tensor, criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], config: TeacherConfig,
        image_size: int | None = None, channels: int | None = None, label: str = "teacher") -> FitResult:
    """Train ``model`` in place with early stopping on ``(xv, yv)``; it ends with its best epoch's weights.

    Args:
        model: The classifier to train (on the config's device afterwards).
        xt: Training inputs (a tensor, or lazily decoded clips), ``yt`` their class indices.
        xv: Validation inputs, ``yv`` their class indices.
        criterion: ``criterion(output, target)`` (an ensemble's loss or cross-entropy).
        config: Optimiser, schedule, batch, augmentation, epochs, patience, device, precision.
        image_size: Side of the faces (for ``augment="faces"``).
        channels: Channels of the faces (for ``augment="faces"``).
        label: What the log lines and the progress bar call the model.

    Returns:
        The best validation accuracy, its epoch and the per-epoch history.
    """
    if config.mixup and not isinstance(xt, torch.Tensor):
        raise ValueError("mixup blends image tensors; it does not apply to clips (set the teacher's mixup to 0)")
    if config.augment == "faces" and (image_size is None or channels is None):
        raise ValueError("augment='faces' needs the faces' image_size and channels; pass them to fit()")
    device = resolve_device(config.device)
    model.to(device)
    opt = _optimizer(model, config)
    augment = (FaceAugment(image_size=image_size, channels=channels, strength=config.augment_strength)
               if config.augment == "faces" else None)
    world = world_size()
    net = _for_training(model, device=device, compiled=config.compile)
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16")
    steps_per_epoch = -(-len(xt) // config.batch_size)
    total_steps, warmup_steps, step = config.max_epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch, 0
    g = torch.Generator().manual_seed(config.seed)
    # Mixup's weights: their own generator, so that the shuffles and flips drawn from ``g``
    # stay those of a run without mixup; every rank draws the same weight for a batch.
    mix = np.random.default_rng(config.seed) if config.mixup else None
    best, best_state, best_epoch, since, history = -1.0, None, 0, 0, []
    epochs = range(config.max_epochs)
    if config.progress and is_main():
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=label, unit="epoch")
    if world > 1:
        logger.info("%s: DDP over %d processes, %d faces per process and global batch of %d", label, world,
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
                if device.type == "cuda":  # page-locked batch: its copy to the GPU overlaps the compute
                    xb, yb = xb.pin_memory(), yb.pin_memory()
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                if mix is not None:  # the batch is shuffled, so each face's successor is a random partner
                    lam = float(mix.beta(config.mixup, config.mixup))
                    xb = lam * xb + (1 - lam) * xb.roll(1, 0)
                opt.zero_grad()
                with autocast(device, config.precision):
                    out = net(xb)
                    loss = criterion(out, yb)
                    if mix is not None:
                        loss = lam * loss + (1 - lam) * criterion(out, yb.roll(1, 0))
                # DDP averages the processes' gradients; weigh each by its share of the global
                # batch so that the average is the global batch's mean loss even when it does
                # not divide evenly.
                scaled = loss * (len(yb) * world / len(idx)) if world > 1 else loss
                scaler.scale(scaled).backward()
                scaler.step(opt)
                scaler.update()
                total += loss.detach().float().cpu() * len(yb)
            if config.precise_bn:  # the statistics of the training faces, not of the last few batches
                recompute_batchnorm(model, xt, batch_size=max(2, -(-config.batch_size // world)), device=device,
                                    precision=config.precision)
            sync_buffers(model)  # rank 0's BatchNorm statistics everywhere before validation
            acc = _sharded_accuracy(model, xv, yv, device=device, precision=config.precision)
            train_loss = float(all_reduce_sum(total)) / len(xt)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_accuracy": acc,
                            "lr": opt.param_groups[0]["lr"]})
            logger.info("%s epoch %d: loss %.3f, val acc %.3f", label, epoch, train_loss, acc)
            if acc > best:
                best, best_state, best_epoch, since = acc, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                since += 1
                if since >= config.patience:
                    break
    model.load_state_dict(best_state)
    return FitResult(best_val_accuracy=best, best_epoch=best_epoch, history=history)
