"""The fused clip model's loss with the cross-entropy of every proper subset of its streams.

For :class:`~cfer.models.temporal.TemporalFusionNet` built with ``stream_loss=w > 0``:

    L = CE(fused, y) + w * (1/B) * sum over clips b, usable subsets A of CE(z_A[b], y[b])

where ``A`` runs over every non-empty proper subset of the model's streams
(:func:`stream_subsets`: each stream alone; with three streams, also each pair), ``z_A``
are the logits of the fusion of ``A``'s tokens only (for late fusion the mean of its
streams' own logits ``head(token_s)``), and a clip can use ``A`` when it has all of
``A``'s streams (flags, :meth:`~cfer.models.temporal.TemporalFusionNet.dropping`; modality
dropout, which only changes the fused term, does not remove them). Each subset weighs
``w`` times the fused term. Two failures are what this prevents. Trained on the fused
loss alone, a stream that a stronger one makes redundant gets little gradient once the
fused output is right (the weak stream leans on the strong one), and the model falls
apart when the strong stream is missing. And a model that lost a stream at test time
runs a fusion of the remaining streams that it never trained as such; the subset terms
train exactly the fusions a missing stream leaves, as a model trained without that
stream would (on the synthetic clips a stream dropped at test then costs about what
training without it costs: ``docs/benchmarks.md``, "Video clips").

The clip model keeps its training forward's fused and per-subset features on
``last_stream_features``; :class:`StreamCriterion` reads them and puts them through the
classifier, so ``criterion(model(x), y)`` serves :func:`cfer.continual.teacher.train_teacher`
and Avalanche strategies (through :func:`~cfer.models.ensemble_loss.criterion_for`) as any
criterion does, for the clip model with its own head and inside cfer's growing
classifier alike.

Example:
    >>> import torch
    >>> from cfer.cliplayout import ClipLayout
    >>> from cfer.models.temporal import TemporalFusionNet
    >>> lay = ClipLayout(frames=2, image_size=16, channels=1, mel_bins=4, mel_steps=4, landmarks=2)
    >>> net = TemporalFusionNet(streams=("motion", "audio"), layout=lay, num_classes=3, dim=8, num_heads=2,
    ...                         fusion="late", stream_loss=1.0).train()
    >>> x = torch.stack([lay.pack(frames=None, mel=torch.randn(4, 4), landmarks=torch.rand(2, 2, 2)) for _ in range(4)])
    >>> crit = StreamCriterion(net)
    >>> loss = crit(net(x), torch.tensor([0, 1, 2, 0]))
    >>> sorted(crit.last)
    ['fused', 'streams', 'total']
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

__all__ = ["StreamCriterion", "StreamFeatures", "stream_loss", "stream_model", "stream_subsets"]


def stream_loss(logits: torch.Tensor, usable: torch.Tensor, target: torch.Tensor, *,
                label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of each stream subset's own logits, summed over a clip's usable subsets
    and averaged over the clips.

    Args:
        logits: Per-subset logits ``(B, K, C)`` (the subsets of :func:`stream_subsets`).
        usable: Which subsets each clip has all the streams of ``(B, K)`` (bool).
        target: Class indices ``(B,)``.
        label_smoothing: As in ``torch.nn.functional.cross_entropy``.

    Returns:
        ``sum over (clip, usable subset) of CE / B``: each subset weighs as much as the fused
        output's mean cross-entropy (0 if no subset is usable).

    Example:
        >>> z = torch.tensor([[[4.0, 0.0], [0.0, 4.0]]])
        >>> round(float(stream_loss(z, torch.tensor([[True, False]]), torch.tensor([0]))), 3)
        0.018
    """
    if logits.ndim != 3 or usable.shape != logits.shape[:2] or target.shape != logits.shape[:1]:
        raise ValueError(f"stream_loss takes logits (B, K, C), usable subsets (B, K) and targets (B,); got "
                         f"{tuple(logits.shape)}, {tuple(usable.shape)} and {tuple(target.shape)}")
    b, k, c = logits.shape
    ce = nn.functional.cross_entropy(logits.reshape(b * k, c), target.repeat_interleave(k), reduction="none",
                                     label_smoothing=label_smoothing)
    return (ce * usable.reshape(-1).to(ce.dtype)).sum() / max(b, 1)


def stream_subsets(n: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Every non-empty proper subset of ``n`` streams as rows of a ``(2**n - 2, n)`` bool mask:
    the streams alone first, then the pairs, and so on (for 2 streams the two singletons;
    for 3, three singletons and three pairs).

    Example:
        >>> stream_subsets(3).int().tolist()
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]]
    """
    if n < 2:
        raise ValueError(f"stream subsets need at least 2 streams, got {n}")
    rows = [c for k in range(1, n) for c in itertools.combinations(range(n), k)]
    mask = torch.zeros(len(rows), n, dtype=torch.bool, device=device)
    for i, c in enumerate(rows):
        mask[i, list(c)] = True
    return mask


class StreamFeatures(tuple):
    """A training forward's ``(fused, per-subset features, usable)``, kept on the clip model
    for :class:`StreamCriterion`. They are part of the autograd graph: copies of the model
    (``copy.deepcopy``, pickling) leave them out (``None``) instead of failing on them."""

    def __deepcopy__(self, memo: dict) -> None:
        return None

    def __reduce__(self) -> tuple:
        return type(None), ()


def stream_model(model: nn.Module) -> nn.Module | None:
    """The :class:`~cfer.models.temporal.TemporalFusionNet` that ``model`` is or wraps as its
    ``backbone`` (cfer's growing classifier) when it trains with ``stream_loss > 0``, else ``None``."""
    from cfer.models.temporal import TemporalFusionNet

    for net in (model, getattr(model, "backbone", None)):
        if isinstance(net, TemporalFusionNet):
            return net if net.stream_loss > 0 and len(net.streams) > 1 else None
    return None


class StreamCriterion:
    """``CE(fused) + w * stream_loss`` as ``criterion(output, target)``, reading the model's stream features.

    Call it right after ``model(x)`` in training mode (``train_teacher`` and Avalanche
    strategies do). Each stream subset's features go through ``model.forward_head`` (the
    clip model's own head, or the growing classifier's), and get whatever the caller added
    to the fused logits before calling (e.g. logit adjustment's prior offset), so the
    subset terms see the same adjusted classes as the fused one (not for a clip model's
    own head with ``drop_rate > 0``, where dropout would blur the offset: there the
    subset terms are plain cross-entropy). The last call's terms are on :attr:`last`
    (floats: ``fused``, ``streams`` (the subsets' term before ``w``), ``total``).

    Args:
        model: A :class:`~cfer.models.temporal.TemporalFusionNet` with a head, or a model
            wrapping one as its ``backbone`` (``cfer.continual.growing.GrowingClassifier``).
        weight: ``w`` (default: the clip model's ``stream_loss``).
        label_smoothing: Label smoothing of every cross-entropy term.

    Raises:
        TypeError: If ``model`` has no clip model with several streams and ``stream_loss > 0``.
    """

    def __init__(self, model: nn.Module, *, weight: float | None = None, label_smoothing: float = 0.0) -> None:
        net = stream_model(model)
        if net is None or (net is model and net.num_classes == 0):
            raise TypeError(f"StreamCriterion needs a TemporalFusionNet with several streams, stream_loss > 0 and a "
                            f"head (its own or a growing classifier's), got {type(model).__name__}; use "
                            "torch.nn.CrossEntropyLoss() otherwise (or criterion_for)")
        self.model, self.net = model, net
        self.weight = net.stream_loss if weight is None else float(weight)
        self.label_smoothing = float(label_smoothing)
        self.last: dict[str, float] = {}

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fused_ce = nn.functional.cross_entropy(output, target, label_smoothing=self.label_smoothing)
        kept = self.net.last_stream_features
        if kept is None:  # evaluation mode: the fused loss
            self.last = {"fused": float(fused_ce.detach()), "total": float(fused_ce.detach())}
            return fused_ce
        fused, per_subset, usable = kept
        if fused.shape[0] != output.shape[0]:
            raise RuntimeError("the model's stream features are not those of this output: call the criterion right "
                               "after model(x) of the same batch")
        b, k, d = per_subset.shape
        logits = self.model.forward_head(per_subset.reshape(b * k, d)).reshape(b, k, -1)
        if self.model is not self.net or self.net.drop_rate == 0:  # no dropout between features and logits
            logits = logits + (output - self.model.forward_head(fused)).detach()[:, None]  # the caller's offset
        streams = stream_loss(logits, usable, target, label_smoothing=self.label_smoothing)
        total = fused_ce + self.weight * streams
        self.last = {"fused": float(fused_ce.detach()), "streams": float(streams.detach()),
                     "total": float(total.detach())}
        return total
