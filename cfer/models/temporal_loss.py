"""The fused clip model's loss with every stream's own cross-entropy (deep supervision of the streams).

For :class:`~cfer.models.temporal.TemporalFusionNet` built with ``stream_loss=w > 0``:

    L = CE(fused, y) + w * mean over (clip, present stream) of CE(z_s, y)

where ``z_s`` are stream ``s``'s logits alone (the fusion of its token only; for late
fusion ``head(token_s)``) and "present" is the training forward's presence: flags,
:meth:`~cfer.models.temporal.TemporalFusionNet.dropping` and modality dropout. Trained
on the fused loss alone, a stream that a stronger one makes redundant gets little
gradient once the fused output is right (the weak stream leans on the strong one), and
the model falls apart when the strong stream is missing; the per-stream terms make each
stream classify on its own, as each member of a late-fusion ensemble does
(:mod:`cfer.models.ensemble_loss`).

The model keeps its training forward's per-stream logits on ``last_stream_logits``, which
:class:`StreamCriterion` reads, so ``criterion(model(x), y)`` serves
:func:`cfer.continual.teacher.train_teacher` (through
:func:`~cfer.models.ensemble_loss.criterion_for`) as any criterion does. A model built
without its own head (``num_classes=0``, as cfer's growing student wraps it) has no
per-stream logits: it trains on the fused loss.

Example:
    >>> import torch
    >>> from cfer.cliplayout import ClipLayout
    >>> from cfer.models.temporal import TemporalFusionNet
    >>> lay = ClipLayout(frames=2, image_size=16, channels=1, mel_bins=4, mel_steps=4, landmarks=2)
    >>> net = TemporalFusionNet(frame_encoder="cfer_tiny", layout=lay, num_classes=3, dim=8, num_heads=2,
    ...                         fusion="late", stream_loss=1.0).train()
    >>> crit = StreamCriterion(net)
    >>> loss = crit(net(torch.rand(4, *lay.shape)), torch.tensor([0, 1, 2, 0]))
    >>> sorted(crit.last)
    ['fused', 'streams', 'total']
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["StreamCriterion", "stream_loss"]


def stream_loss(logits: torch.Tensor, present: torch.Tensor, target: torch.Tensor, *,
                label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of the present streams' own logits.

    Args:
        logits: Per-stream logits ``(B, S, C)``.
        present: Which streams each clip used ``(B, S)`` (bool).
        target: Class indices ``(B,)``.
        label_smoothing: As in ``torch.nn.functional.cross_entropy``.

    Returns:
        The mean over the ``(clip, stream)`` pairs that are present (0 if none is).

    Example:
        >>> z = torch.tensor([[[4.0, 0.0], [0.0, 4.0]]])
        >>> round(float(stream_loss(z, torch.tensor([[True, False]]), torch.tensor([0]))), 3)
        0.018
    """
    if logits.ndim != 3 or present.shape != logits.shape[:2] or target.shape != logits.shape[:1]:
        raise ValueError(f"stream_loss takes logits (B, S, C), presence (B, S) and targets (B,); got "
                         f"{tuple(logits.shape)}, {tuple(present.shape)} and {tuple(target.shape)}")
    b, s, c = logits.shape
    ce = nn.functional.cross_entropy(logits.reshape(b * s, c), target.repeat_interleave(s), reduction="none",
                                     label_smoothing=label_smoothing)
    mask = present.reshape(-1).to(ce.dtype)
    return (ce * mask).sum() / mask.sum().clamp_min(1.0)


class StreamCriterion:
    """``CE(fused) + w * stream_loss`` as ``criterion(output, target)``, reading the model's stream logits.

    Call it right after ``model(x)`` in training mode (``train_teacher`` and Avalanche
    strategies do). The last call's terms are on :attr:`last` (floats).

    Args:
        model: A :class:`~cfer.models.temporal.TemporalFusionNet` with its own head.
        weight: ``w`` (default: ``model.stream_loss``).
        label_smoothing: Label smoothing of every cross-entropy term.

    Raises:
        TypeError: If ``model`` is not a ``TemporalFusionNet`` with a head.
    """

    def __init__(self, model: nn.Module, *, weight: float | None = None, label_smoothing: float = 0.0) -> None:
        from cfer.models.temporal import TemporalFusionNet

        if not isinstance(model, TemporalFusionNet) or model.num_classes == 0:
            raise TypeError(f"StreamCriterion needs a TemporalFusionNet with a head (num_classes > 0), got "
                            f"{type(model).__name__}; use torch.nn.CrossEntropyLoss() otherwise (or criterion_for)")
        self.model = model
        self.weight = model.stream_loss if weight is None else float(weight)
        self.label_smoothing = float(label_smoothing)
        self.last: dict[str, float] = {}

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fused = nn.functional.cross_entropy(output, target, label_smoothing=self.label_smoothing)
        kept = self.model.last_stream_logits
        if kept is None:  # evaluation mode, or a model built with stream_loss=0: the fused loss
            self.last = {"fused": float(fused.detach()), "total": float(fused.detach())}
            return fused
        logits, present = kept
        if logits.shape[0] != output.shape[0]:
            raise RuntimeError("the model's stream logits are not those of this output: call the criterion right "
                               "after model(x) of the same batch")
        streams = stream_loss(logits, present, target, label_smoothing=self.label_smoothing)
        total = fused + self.weight * streams
        self.last = {"fused": float(fused.detach()), "streams": float(streams.detach()),
                     "total": float(total.detach())}
        return total
