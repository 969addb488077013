"""The masked-autoencoder pretraining loop: AdamW, warm-up + cosine, checkpoint every epoch, resume.

:func:`pretrain_mae` trains a :class:`~cfer.pretrain.mae.MaskedAutoencoder` on unlabelled
faces (a uint8 array ``(N, H, W, C)``, a float tensor ``(N, C, H, W)`` in [0, 1], or a
:class:`~cfer.data.FaceDataset` whose labels are ignored). Each epoch runs inside
``torch.random.fork_rng`` seeded with ``(seed, epoch)``: shuffling, augmentation and masking
are the same whether the run went through or was killed and resumed, and the caller's
global generator is left as it was. With ``checkpoint=PATH`` the state (model, optimiser,
step, loss history) is written atomically after every epoch; ``resume=True`` goes on from
it, so a resumed run ends in the same state as an uninterrupted one.

Example:
    >>> import numpy as np
    >>> faces = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 1), dtype=np.uint8)
    >>> result = pretrain_mae(images=faces, config=PretrainConfig(arch="vit_face_micro", image_size=32,
    ...                                                           epochs=1, batch_size=8))
    >>> len(result.history), sorted(result.encoder_state())[:1]
    (1, ['blocks.0.attn.proj.bias'])
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cfer.data.augment import augment_batch, face_augmentation
from cfer.data.base import FaceDataset
from cfer.distributed import (
    all_reduce_sum,
    autocast,
    barrier,
    check_precision,
    is_main,
    rank,
    resolve_device,
    shard,
    sync_buffers,
    world_size,
    wrap_ddp,
)
from cfer.models.decay import decay_groups
from cfer.pretrain.mae import MaskedAutoencoder
from cfer.schedule import lr_at

__all__ = ["PretrainConfig", "PretrainResult", "build_mae", "pretrain_mae", "lr_at", "as_image_tensor"]

logger = logging.getLogger(__name__)

ENCODER_FORMAT = "cfer-encoder/1"
_RUNTIME = ("progress", "device", "compile")  # how a run executes, not what it learns


@dataclass(frozen=True)
class PretrainConfig:
    """How the masked autoencoder is pretrained.

    Attributes:
        arch: A timm ViT name (``"vit_face_tiny"``: ViT-Tiny widths, 8-pixel patches; any
            ``vit_*`` works) built with ``img_size=image_size``.
        image_size: Side of the faces (the encoder's input grid is fixed to it).
        mask_ratio: Share of patches dropped before the encoder.
        decoder_dim: Width of the light decoder.
        decoder_depth: Transformer blocks in the decoder.
        decoder_heads: Attention heads of the decoder.
        norm_pix_loss: Predict patches normalised by their own mean and variance.
        epochs: Passes over the faces.
        batch_size: Faces per step (the last, smaller batch of an epoch is dropped when
            there are more faces than one batch).
        lr: Peak AdamW learning rate (reached after the warm-up).
        min_lr: Learning rate at the end of the cosine decay.
        weight_decay: AdamW weight decay (not on biases, norms, positions, tokens).
        warmup_epochs: Epochs of linear warm-up (whole or fractional).
        augment: Face augmentation strength (0: none; see :func:`face_augmentation`).
        seed: Seed of initialisation, shuffling, augmentation and masking.
        progress: Show a tqdm bar over the steps with the loss.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
            (:func:`cfer.distributed.resolve_device`); the result is returned on the CPU.
        precision: ``"fp32"``, ``"bf16"`` (``torch.autocast``, CPU or CUDA) or ``"fp16"`` (CUDA).
        compile: Train through ``torch.compile`` (needs a C++ compiler on the CPU).

    Under ``torchrun`` each process takes every N-th face of each global batch of
    ``batch_size`` (same batches and learning rate as one process; DDP averages the
    gradients) and masks its own shard with its own seed; only rank 0 writes the
    checkpoint. A run may resume on another device or without ``compile``.
    """

    arch: str = "vit_face_tiny"
    image_size: int = 64
    mask_ratio: float = 0.75
    decoder_dim: int = 128
    decoder_depth: int = 1
    decoder_heads: int = 4
    norm_pix_loss: bool = True
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 5.0
    augment: float = 1.0
    seed: int = 0
    progress: bool = False
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        from cfer.distributed import check_precision, resolve_device

        resolve_device(self.device)
        check_precision(self.precision, None)  # the device's own limits are checked where training starts
        for name in ("image_size", "epochs", "batch_size", "decoder_dim", "decoder_depth", "decoder_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1), got {self.mask_ratio} (0.75 masks three patches of four)")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_epochs < 0 or self.augment < 0 or self.weight_decay < 0:
            raise ValueError("warmup_epochs, augment and weight_decay must be >= 0")

    def resumable_with(self, other: "PretrainConfig") -> list[str]:
        """The fields (besides ``progress``, ``device`` and ``compile``, which do not change what
        is learnt) in which ``other`` differs from this config."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        return [k for k in mine if k not in _RUNTIME and mine[k] != theirs[k]]


@dataclass
class PretrainResult:
    """A pretrained masked autoencoder and its record.

    Attributes:
        model: The :class:`MaskedAutoencoder` (``model.encoder`` is the timm ViT).
        history: One dict per epoch: ``epoch``, ``loss`` (mean over its steps), ``lr`` (at
            its end), ``seconds``, ``images_per_s``.
        config: The config it was trained with.
    """

    model: MaskedAutoencoder
    history: list[dict] = field(default_factory=list)
    config: PretrainConfig = PretrainConfig()

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The encoder's weights: what ``create_backbone(arch, weights=FILE)`` loads."""
        return {k: v.detach().clone() for k, v in self.model.encoder.state_dict().items()}

    def save_encoder(self, path: str | Path, *, in_chans: int | None = None) -> Path:
        """Write the encoder's weights (atomically) with what they were trained as, loadable
        by :func:`cfer.models.load_weights` / ``create_backbone(arch, weights=path, img_size=...)``."""
        from cfer.atomic import torch_save

        c = self.config
        return torch_save({"format": ENCODER_FORMAT, "arch": c.arch, "img_size": c.image_size,
                           "in_chans": in_chans or self.model.channels, "state_dict": self.encoder_state()}, path)


def as_image_tensor(images: np.ndarray | torch.Tensor | FaceDataset) -> torch.Tensor:
    """Faces as a float tensor ``(N, C, H, W)`` in [0, 1] (labels of a dataset are ignored)."""
    if isinstance(images, FaceDataset):
        images = images.images
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] not in (1, 3):
            raise ValueError(f"expected uint8 images (N, H, W, C) with C 1 or 3, got {images.dtype} {images.shape}")
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError("expected images as a uint8 array (N, H, W, C), a float tensor (N, C, H, W) in [0, 1] or "
                         f"a FaceDataset, got {type(images).__name__} {tuple(getattr(images, 'shape', ()))}")
    return images.float()


def build_mae(config: PretrainConfig, *, in_chans: int) -> MaskedAutoencoder:
    """A fresh :class:`MaskedAutoencoder` on ``config.arch``, initialised from ``config.seed``."""
    from cfer.models import create_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        encoder = create_backbone(config.arch, in_chans=in_chans, img_size=config.image_size)
        return MaskedAutoencoder(encoder=encoder, mask_ratio=config.mask_ratio, decoder_dim=config.decoder_dim,
                                 decoder_depth=config.decoder_depth, decoder_heads=config.decoder_heads,
                                 norm_pix_loss=config.norm_pix_loss)


def _optimizer(model: nn.Module, config: PretrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(decay_groups(model, weight_decay=config.weight_decay), lr=config.lr, betas=(0.9, 0.95))


def _batches(n: int, batch_size: int) -> list[torch.Tensor]:
    order = torch.randperm(n)
    if n <= batch_size:
        return [order]
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def pretrain_mae(*, images: np.ndarray | torch.Tensor | FaceDataset, config: PretrainConfig = PretrainConfig(),
                 checkpoint: str | Path | None = None, resume: bool = False,
                 on_epoch: Callable[[PretrainResult], None] | None = None,
                 extra: dict[str, Any] | None = None) -> PretrainResult:
    """Pretrain a masked autoencoder on unlabelled faces.

    Args:
        images: The faces (uint8 ``(N, H, W, C)``, float ``(N, C, H, W)`` in [0, 1], or a
            ``FaceDataset`` whose labels are ignored), of side ``config.image_size``.
        config: Architecture, masking and optimisation settings.
        checkpoint: File written (atomically) after every epoch with all the training state.
        resume: Go on from ``checkpoint`` (which must exist and come from the same config).
        on_epoch: Called after every epoch (after the checkpoint) with the result so far,
            e.g. to write the encoder file.
        extra: Plain data (numbers, strings, lists, dicts) saved with every checkpoint,
            e.g. what rebuilds the data on resume.

    Returns:
        A :class:`PretrainResult`; ``result.save_encoder(path)`` writes the encoder file.

    Raises:
        ValueError: For images of another size than ``config.image_size``, fewer than two
            faces, or a checkpoint of another config (naming the fields).
        FileNotFoundError: If ``resume`` and there is no checkpoint.

    Example:
        >>> result = pretrain_mae(images=faces, config=PretrainConfig(epochs=2), checkpoint="ckpt.pt")  # doctest: +SKIP
        >>> result.save_encoder("encoder.pt")                                                          # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from cfer.models.io import load_checkpoint, save_checkpoint

    x_all = as_image_tensor(images)
    if tuple(x_all.shape[-2:]) != (config.image_size, config.image_size):
        raise ValueError(f"the faces are {tuple(x_all.shape[-2:])} pixels but config.image_size is "
                         f"{config.image_size}; read them at that size (--image-size) or change image_size")
    if len(x_all) < 2:
        raise ValueError(f"pretraining needs at least 2 faces, got {len(x_all)}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH (the file the first run wrote)")
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    world, me = world_size(), rank()
    if config.batch_size < world:
        raise ValueError(f"batch_size {config.batch_size} is smaller than the {world} processes; each needs at "
                         "least one face of every global batch")
    model = build_mae(config, in_chans=int(x_all.shape[1])).to(device)
    optimizer = _optimizer(model, config)
    steps_per_epoch = max(1, len(x_all) // config.batch_size)  # as many as _batches gives
    total = steps_per_epoch * config.epochs
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    result = PretrainResult(model=model, history=[], config=config)
    step, start = 0, 0
    if resume:
        state = load_checkpoint(checkpoint)
        saved = PretrainConfig(**state["config"])
        if diff := config.resumable_with(saved):
            was = ", ".join(f"{k}: {getattr(saved, k)!r}" for k in diff)
            raise ValueError(f"{checkpoint} was written with another config ({was}); resume with the same settings, "
                             "or start a new run elsewhere")
        if state.get("n_images") != len(x_all):
            raise ValueError(f"{checkpoint} was trained on {state.get('n_images')} faces, these are {len(x_all)}: "
                             "resume with the same data")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, start, result.history = int(state["step"]), int(state["epoch"]), list(state["history"])
        logger.info("resuming %s after epoch %d of %d", checkpoint, start, config.epochs)
    net = wrap_ddp(model, device=device, static_graph=not config.compile)
    if config.compile:
        net = torch.compile(net)
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16")
    transform = face_augmentation(image_size=config.image_size, strength=config.augment) if config.augment else None
    bar = tqdm(total=total, initial=step, desc=f"pretrain {config.arch}", unit="step", disable=not config.progress,
               dynamic_ncols=True) if is_main() else tqdm(disable=True)
    model.train()
    try:
        for epoch in range(start, config.epochs):
            t0, losses, seen = time.perf_counter(), [], 0
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed * 100_003 + epoch)
                batches = _batches(len(x_all), config.batch_size)  # the same on every rank
                if world > 1:  # each rank masks and augments its shard with its own draws
                    torch.manual_seed(config.seed * 100_003 + epoch + 1_000_003 * me)
                for idx in batches:
                    x = x_all[shard(idx)]
                    if transform is not None:
                        x = augment_batch(x, transform=transform)
                    if device.type == "cuda":  # page-locked batch: its copy to the GPU overlaps the compute
                        x = x.pin_memory()
                    lr = lr_at(step, total=total, warmup=warmup, lr=config.lr, min_lr=config.min_lr)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    with autocast(device, config.precision):
                        loss = net(x.to(device, non_blocking=True)).loss
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"the loss became {loss.item()} at step {step}; lower lr "
                                                 f"(now {config.lr}) or raise warmup_epochs")
                    step += 1
                    seen += len(idx)
                    losses.append(float(loss.detach()))
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}")
            sync_buffers(model)
            took = time.perf_counter() - t0
            mean_loss = float(all_reduce_sum(torch.tensor(float(np.mean(losses)), dtype=torch.float64))) / world
            result.history.append({"epoch": epoch + 1, "loss": mean_loss, "lr": lr, "seconds": took,
                                   "images_per_s": seen / max(took, 1e-9)})
            logger.info("epoch %d/%d: loss %.4f (%.1f images/s)", epoch + 1, config.epochs, result.history[-1]["loss"],
                        result.history[-1]["images_per_s"])
            if checkpoint is not None and is_main():
                save_checkpoint(checkpoint, {**(extra or {}), "config": dataclasses.asdict(config), "epoch": epoch + 1,
                                             "step": step, "n_images": len(x_all), "model": model.state_dict(),
                                             "optimizer": optimizer.state_dict(), "history": result.history})
            if on_epoch is not None and is_main():
                on_epoch(result)
            barrier()  # the other ranks go on once rank 0 has written the epoch's files
    finally:
        bar.close()
    model.cpu().eval()
    return result


def config_from_checkpoint(path: str | Path) -> PretrainConfig:
    """The :class:`PretrainConfig` a checkpoint was written with."""
    from cfer.models.io import load_checkpoint

    state = load_checkpoint(path)
    if not isinstance(state.get("config"), dict):
        raise ValueError(f"{path} is a cfer checkpoint but not of a pretraining run (no config)")
    return PretrainConfig(**state["config"])


def load_mae(path: str | Path, *, in_chans: int) -> tuple[MaskedAutoencoder, dict[str, Any]]:
    """Rebuild the masked autoencoder a checkpoint holds; returns ``(model, checkpoint)``."""
    from cfer.models.io import load_checkpoint

    state = load_checkpoint(path)
    model = build_mae(PretrainConfig(**state["config"]), in_chans=in_chans)
    model.load_state_dict(state["model"])
    return model.eval(), state
