"""Precise BatchNorm statistics: recompute a model's running means and variances on the training faces.

During training a BatchNorm layer keeps an exponential moving average of its mini-batches'
means and variances; with cfer's slim models' momentum of 0.5 that average is mostly the
last two or three mini-batches, so a model scored in eval mode after each epoch is scored
with statistics of a few dozen faces, and its validation accuracy jumps from epoch to epoch
by more than the model changed. Early stopping then stops on noise. Recomputing the
statistics as a plain average over many training faces, with the weights fixed (what
Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021, call precise BatchNorm), gives the
eval-mode model the statistics of the data it learned from.

Only the BatchNorm layers are put in training mode for the pass: dropout, modality dropout
and any other training-only behaviour stay off, so each layer sees what it sees in eval
mode. No gradient is computed and no weight changes.

Example:
    >>> import timm, torch, cfer.models
    >>> net = timm.create_model("cfer_tiny", num_classes=3)
    >>> recompute_batchnorm(net, torch.rand(20, 3, 32, 32), batch_size=8)
    5
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn

from cfer.continual.evaluation import LazyItems
from cfer.distributed import autocast, shard

__all__ = ["recompute_batchnorm", "recompute_batchnorm_over"]

logger = logging.getLogger(__name__)

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@contextmanager
def _statistics_pass(model: nn.Module) -> Iterator[list[nn.Module]]:
    """The model in eval mode but its BatchNorm layers averaging afresh; their momenta restored after."""
    layers = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    saved = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches of this pass
        m.train()
    try:
        yield layers
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum
            m.eval()


@torch.no_grad()
def recompute_batchnorm_over(model: nn.Module, batches: Iterable[torch.Tensor], *,
                             device: torch.device | str = "cpu", precision: str = "fp32") -> int:
    """Like :func:`recompute_batchnorm`, over ``batches`` of inputs (e.g. a replay memory's loader).

    Batches of one input are skipped (no variance). Returns how many BatchNorm layers were
    recomputed; a model without any is left as it was and gives 0. Raises ``ValueError``
    when no batch of two or more inputs came (the statistics would be the layers' defaults).

    Example:
        >>> import timm, torch, cfer.models
        >>> net = timm.create_model("cfer_tiny", num_classes=3)
        >>> recompute_batchnorm_over(net, torch.rand(20, 3, 32, 32).split(8))
        5
    """
    if not any(isinstance(m, _BN) and m.track_running_stats for m in model.modules()):
        return 0
    device = torch.device(device)
    seen = 0
    with _statistics_pass(model) as layers:
        for x in batches:
            if len(x) < 2:
                continue
            with autocast(device, precision):
                model(x.to(device))
            seen += len(x)
        if not seen:
            raise ValueError("precise BatchNorm needs batches of two or more inputs; none came")
    logger.debug("precise BatchNorm: %d layers from %d inputs", len(layers), seen)
    return len(layers)


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: torch.Tensor | LazyItems, *, batch_size: int = 64,
                        device: torch.device | str = "cpu", precision: str = "fp32") -> int:
    """Replace every BatchNorm layer's running statistics by their average over ``x``.

    Args:
        model: The model (left in eval mode afterwards, its weights untouched).
        x: Training inputs, a tensor or anything indexed by a tensor of positions (lazily
            decoded clips). Under ``torchrun`` each process uses its shard of ``x``; call
            :func:`cfer.distributed.sync_buffers` afterwards to give every process rank 0's
            statistics, as the teacher's loop does.
        batch_size: Inputs per forward pass; the statistics are the mean over the batches
            of each batch's mean and (unbiased) variance, so batches of about the training
            batch size give the variance training used.
        device: Where the model runs.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (:func:`cfer.distributed.autocast`).

    Returns:
        How many BatchNorm layers were recomputed (0: the model has none, and is unchanged).

    Raises:
        ValueError: ``x`` is empty or ``batch_size`` is below 2 (a batch of one has no variance).
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 to estimate a variance, got {batch_size}")
    if len(x) == 0:
        raise ValueError("precise BatchNorm needs training inputs; x is empty")
    mine = shard(torch.arange(len(x)))
    return recompute_batchnorm_over(model, (x[mine[i:i + batch_size]] for i in range(0, len(mine), batch_size)),
                                    device=device, precision=precision)
