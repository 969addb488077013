"""A clip model teaches its own stream subsets on unlabelled clips (cross-modal distillation).

A multi-stream clip model trained with the subset losses (:mod:`cfer.models.temporal_loss`)
learns each fusion a missing stream leaves from the labelled clips alone, as a model trained
without that stream would. Unlabelled clips of other people are where the full model knows
more than its subsets: with every stream it scores a clip better than the frames and
motion alone do. This step fine-tunes the model on both:

    L = CE(z, y) + w * stream_loss(z_A, y)                       (labelled clips)
      + T² * KL(p_T(t) ‖ p_T(z)) + w * T² * (1/B) * Σ_(b, A usable) KL(p_T(t_b) ‖ p_T(z_A,b))   (unlabelled clips)

where ``t`` are the logits of a frozen copy of the model taken before the step, on all the
streams each unlabelled clip has, ``z`` the training forward's fused logits (modality
dropout included) and ``z_A`` each proper stream subset's (:func:`~cfer.models.temporal_loss.stream_subsets`).
The same rule serves a model of any streams: a two-stream model teaches its singletons from
its pair. What a stream adds reaches the subsets without it only through the teacher's
answers on clips nobody labelled (learning with privileged information, Vapnik & Vashist
2009; cross-modal distillation, Gupta et al. 2016).

Measured in ``docs/benchmarks.md`` ("Unlabelled clips: the full model teaching its subsets"):
on the synthetic clips (5 seeds, 704 unlabelled clips of 32 other people, 8 epochs) the step
raises the fused model by 2.0 points and the two-stream models by 2.0 to 4.9; the fused
model without audio gains 8.7 points, the model trained without audio 4.9.

Example:
    >>> import torch
    >>> from cfer.cliplayout import ClipLayout
    >>> from cfer.data.video import synthetic_clips
    >>> from cfer.models.temporal import TemporalFusionNet
    >>> lay = ClipLayout(frames=2, image_size=16)
    >>> clips = synthetic_clips(classes=("happy", "sad"), n_subjects=2, per_class=1, layout=lay, decoded_frames=2)
    >>> pool = synthetic_clips(classes=("happy", "sad"), n_subjects=2, per_class=1, first_subject=2, layout=lay,
    ...                        decoded_frames=2)
    >>> net = TemporalFusionNet(streams=("motion", "audio"), layout=lay, num_classes=2, dim=8, num_heads=2,
    ...                         fusion="late", stream_loss=1.0)
    >>> history = distil_streams_unlabelled(model=net, pool=pool, train=clips, epochs=2, batch_size=4)
    >>> [sorted(h) for h in history][-1]
    ['epoch', 'labelled', 'unlabelled']
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from cfer.distributed import model_device
from cfer.models.temporal_loss import stream_loss, stream_model

__all__ = ["distil_streams_unlabelled", "pool_logits"]

logger = logging.getLogger(__name__)


def _batch(data: Any, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    items = [data[int(i)] for i in idx]
    return torch.stack([x for x, _ in items]), torch.as_tensor([y for _, y in items])


@torch.no_grad()
def pool_logits(model: nn.Module, pool: Any, *, batch_size: int = 64) -> torch.Tensor:
    """The model's logits (eval mode, every stream each clip has) on every clip of ``pool``: ``(N, C)``, on the CPU."""
    was = model.training
    model.eval()
    dev = model_device(model)
    try:
        return torch.cat([model(_batch(pool, np.arange(i, min(i + batch_size, len(pool))))[0].to(dev)).cpu()
                          for i in range(0, len(pool), batch_size)])
    finally:
        model.train(was)


def _kl(student: torch.Tensor, teacher_logp: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(teacher ‖ student)`` per row of the leading dimensions (summed over classes)."""
    logp = nn.functional.log_softmax(student / temperature, -1)
    return nn.functional.kl_div(logp, teacher_logp.expand_as(logp), log_target=True, reduction="none").sum(-1)


def _check(model: nn.Module, pool: Any, train: Any, epochs: int, lr: float, batch_size: int,
           temperature: float) -> nn.Module:
    net = stream_model(model)
    if net is None:
        raise TypeError(f"distil_streams_unlabelled needs a TemporalFusionNet with several streams and "
                        f"stream_loss > 0 (or a growing classifier around one), got {type(model).__name__}; build "
                        "it with e.g. create_model('temporal_slim', streams=('frames', 'motion', 'audio'))")
    for name, data in (("pool", pool), ("train", train)):
        if len(data) == 0:
            raise ValueError(f"{name} has no clip")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if lr <= 0 or temperature <= 0:
        raise ValueError(f"lr and temperature must be > 0, got {lr} and {temperature}")
    return net


def distil_streams_unlabelled(*, model: nn.Module, pool: Any, train: Any, val: Any = None, epochs: int = 8,
                              lr: float = 3e-4, batch_size: int = 32, temperature: float = 1.0,
                              weight: float | None = None, seed: int = 0,
                              progress: bool = False) -> list[dict[str, float]]:
    """Fine-tune a multi-stream clip model in place: labels on ``train``, its own full output on ``pool``.

    Each step takes ``batch_size`` labelled clips (cycling through ``train``) and
    ``batch_size`` unlabelled ones (an epoch is one pass over ``pool``) in one training
    forward, and minimises the loss of the module docstring. The teacher's logits are those
    of the model as it is when called (:func:`pool_logits`, computed once: give ``pool``
    without random crops). With ``val``, the model's accuracy on it (every stream) is
    measured before the first epoch and after each, and the best state is kept (the model
    as it came in when no epoch beats it).

    Args:
        model: A :class:`~cfer.models.temporal.TemporalFusionNet` with ``stream_loss > 0``
            (or cfer's growing classifier around one), trained on ``train``.
        pool: Unlabelled clips (a :class:`~cfer.data.video.ClipDataset`; labels unused).
        train: The labelled training clips (items ``(clip, class index)`` in the model's
            output order).
        val: Labelled clips to choose the epoch on (``None``: keep the last).
        epochs: Passes over ``pool``.
        lr: Adam learning rate (small: the model already knows the classes).
        batch_size: Clips of each kind per step.
        temperature: ``T`` of the softened distributions.
        weight: ``w`` of the subset terms (default: the model's ``stream_loss``).
        seed: Seed of the shuffling (and of modality dropout, through torch's global generator,
            restored afterwards).
        progress: Show a tqdm bar over epochs.

    Returns:
        One dict per epoch: ``epoch``, the mean ``labelled`` and ``unlabelled`` loss, and
        ``val`` accuracy when ``val`` is given (``epoch`` 0 with ``val``: the model before).

    Raises:
        TypeError: If ``model`` is not a multi-stream clip model with ``stream_loss > 0``.
        ValueError: If ``pool`` or ``train`` is empty or a setting is out of range.
    """
    from cfer.continual.evaluation import evaluate

    net = _check(model, pool, train, epochs, lr, batch_size, temperature)
    w = net.stream_loss if weight is None else float(weight)
    teacher_logp = nn.functional.log_softmax(pool_logits(model, pool) / temperature, -1)
    dev, rng = model_device(model), np.random.default_rng(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history: list[dict[str, float]] = []
    best = (-1.0, None)
    if val is not None:
        best = (evaluate(model, val, batch_size=64), copy.deepcopy(model.state_dict()))
        history.append({"epoch": 0, "val": best[0]})
    state, was = torch.random.get_rng_state(), model.training
    torch.manual_seed(seed)
    rounds = range(1, epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        rounds = tqdm(rounds, desc="distilling on unlabelled clips", unit="epoch")
    labelled = rng.permutation(len(train))
    at = 0
    try:
        for epoch in rounds:
            model.train()
            order, sums, steps = rng.permutation(len(pool)), [0.0, 0.0], 0
            for i in range(0, len(order), batch_size):
                pidx = order[i:i + batch_size]
                if at + batch_size > len(labelled):
                    labelled, at = rng.permutation(len(train)), 0
                lidx, at = labelled[at:at + batch_size], at + batch_size
                (xl, yl), (xp, _) = _batch(train, lidx), _batch(pool, pidx)
                n, yl, t = len(xl), yl.to(dev), teacher_logp[torch.as_tensor(pidx)].to(dev)
                out = model(torch.cat([xl, xp]).to(dev))
                _, per_subset, usable = net.last_stream_features
                b, k, d = per_subset.shape
                sub = model.forward_head(per_subset.reshape(b * k, d)).reshape(b, k, -1)
                sup = nn.functional.cross_entropy(out[:n], yl) + w * stream_loss(sub[:n], usable[:n], yl)
                kl_sub = (_kl(sub[n:], t[:, None], temperature) * usable[n:].to(out.dtype)).sum() / len(xp)
                unsup = (_kl(out[n:], t, temperature).mean() + w * kl_sub) * temperature ** 2
                opt.zero_grad()
                (sup + unsup).backward()
                opt.step()
                sums[0] += float(sup.detach())
                sums[1] += float(unsup.detach())
                steps += 1
            row = {"epoch": epoch, "labelled": sums[0] / steps, "unlabelled": sums[1] / steps}
            if val is not None:
                row["val"] = evaluate(model, val, batch_size=64)
                if row["val"] > best[0]:
                    best = (row["val"], copy.deepcopy(model.state_dict()))
            history.append(row)
            logger.info("distillation on unlabelled clips, epoch %d: %s", epoch,
                        {k: round(v, 4) for k, v in row.items() if k != "epoch"})
    finally:
        torch.random.set_rng_state(state)
        model.train(was)
    if best[1] is not None:
        model.load_state_dict(best[1])
    return history
