"""Parts of :class:`cfer.models.temporal.TemporalFusionNet`: the clip format, stream encoders, time pooling.

:class:`cfer.cliplayout.ClipLayout` (in the base layer, shared with the clip readers)
reads packed clips; :func:`resolve_layout` fills it from what timm passes.

Each encoder turns one stream of a batch of clips into one ``dim``-wide vector per clip:

* :class:`FrameStream`: a timm/cfer image encoder on every frame at once (``B * T``
  images), pooled per frame by the encoder's own ``forward_head(pre_logits=True)``,
  projected to ``dim`` and aggregated over time by :class:`TemporalAggregator`;
* :class:`MotionEncoder`: landmark tracks ``(B, T, L, 2)`` as positions relative to the
  first frame plus velocities, a dilated 1-D temporal convolution net (TCN), mean + max
  pooling over time;
* :class:`AudioEncoder`: a small 2-D CNN over the log-mel spectrogram, mean + max pooling.

The motion and audio encoders use group norm (per-clip statistics), so one clip's output
never depends on the other clips of its batch.

Example:
    >>> import torch
    >>> fmt = ClipLayout(frames=4, image_size=16, channels=1, mel_bins=8, mel_steps=8, landmarks=3)
    >>> fmt.shape, tuple(fmt.unpack(torch.zeros(2, *fmt.shape)).landmarks.shape)
    ((5, 1, 16, 16), (2, 4, 3, 2))
    >>> TemporalAggregator(mode="transformer", dim=8, frames=4, num_heads=2)(torch.rand(2, 4, 8)).shape
    torch.Size([2, 8])
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Sequence

import torch
from torch import nn

from cfer.cliplayout import ClipLayout

__all__ = ["FUSIONS", "STREAMS", "TEMPORAL_MODES", "AttentionPool", "AudioEncoder",
           "FrameStream", "MotionEncoder", "TemporalAggregator", "check_encoder", "check_options", "resolve_layout"]

def resolve_layout(layout: object = None, *, in_chans: int | None = None,
                   img_size: int | Sequence[int] | None = None, frames: int | None = None) -> ClipLayout:
    """The :class:`~cfer.cliplayout.ClipLayout` of a ``ClipLayout`` (anything with ``as_dict()``), its dict, or
    the defaults, with ``in_chans`` / ``img_size`` / ``frames`` (what timm and
    ``create_backbone`` pass) setting the fields the layout leaves out.

    Raises:
        ValueError: An unknown layout field, a non-square ``img_size``, or an override that
            contradicts a field the layout gives (give one of them).

    Example:
        >>> resolve_layout({"frames": 4}, in_chans=1).channels
        1
    """
    fields = [f.name for f in dataclasses.fields(ClipLayout)]
    if layout is None:
        layout = {}
    elif callable(getattr(layout, "as_dict", None)):
        layout = layout.as_dict()
    if not isinstance(layout, dict):
        raise TypeError(f"layout must be a ClipLayout or its dict (ClipLayout.as_dict()), got {type(layout).__name__}")
    unknown = sorted(set(layout) - set(fields))
    if unknown:
        raise ValueError(f"unknown ClipLayout fields {unknown}; known: {fields}")
    if isinstance(img_size, (tuple, list)):
        if len({int(s) for s in img_size}) != 1:
            raise ValueError(f"clip frames are square: img_size must be one side, got {tuple(img_size)}")
        img_size = int(img_size[0])
    base = ClipLayout(**layout)
    changes = {k: int(v) for k, v in (("channels", in_chans), ("image_size", img_size), ("frames", frames))
               if v is not None}
    clash = {k: (v, getattr(base, k)) for k, v in changes.items() if k in layout and v != getattr(base, k)}
    if clash:
        raise ValueError(f"{', '.join(f'{k}={a} but layout.{k}={b}' for k, (a, b) in clash.items())}: give the "
                         "size in the layout or as in_chans=/img_size=/frames=, not both")
    return dataclasses.replace(base, **changes)


TEMPORAL_MODES = ("attention", "transformer", "gru", "mean", "apex")
"""How the frame stream aggregates its per-frame features over time: attention pooling;
a small transformer (learned positions) + attention pooling; a bidirectional GRU +
attention pooling; the plain mean; only the middle ("apex") frame."""

STREAMS = ("frames", "motion", "audio")
"""The streams of a clip, in the order of the model's tokens."""

FUSIONS = ("late", "attention")
"""How the streams' tokens are fused: their mean (= averaged per-stream logits), or attention."""


def check_options(temporal: str, streams: tuple[str, ...], fusion: str, modality_dropout: float, dim: int,
                  num_heads: int, num_classes: int, drop_rate: float, stream_loss: float = 0.0) -> None:
    """TemporalFusionNet's options, checked at the door."""
    if temporal not in TEMPORAL_MODES:
        raise ValueError(f"temporal must be one of {list(TEMPORAL_MODES)}, got {temporal!r}")
    bad = [s for s in streams if s not in STREAMS]
    if bad or not streams or len(set(streams)) != len(streams):
        raise ValueError(f"streams must be distinct names from {list(STREAMS)}, at least one, got {list(streams)}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {fusion!r}")
    if not 0.0 <= modality_dropout < 1.0:
        raise ValueError(f"modality_dropout must lie in [0, 1), got {modality_dropout}")
    if dim < 2 or num_heads < 1 or dim % num_heads:
        raise ValueError(f"dim ({dim}) must be a multiple of num_heads ({num_heads}) and >= 2")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0: the fused features), got {num_classes}")
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must lie in [0, 1), got {drop_rate}")
    if not 0.0 <= stream_loss < float("inf"):
        raise ValueError(f"stream_loss must be a finite weight >= 0 (0: the fused loss only), got {stream_loss}")


class AttentionPool(nn.Module):
    """Attention pooling over time: ``softmax_t(w . tanh(W h_t))``-weighted sum of ``h_t``.

    Args:
        dim: Width of ``h_t``.

    Example:
        >>> AttentionPool(8)(torch.rand(2, 5, 8)).shape
        torch.Size([2, 8])
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, max(dim // 2, 1)), nn.Tanh(), nn.Linear(max(dim // 2, 1), 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.score(h).squeeze(-1), dim=1)
        return (w.unsqueeze(-1) * h).sum(1)


class TemporalAggregator(nn.Module):
    """Per-frame features ``(B, T, dim)`` -> one clip vector ``(B, dim)``.

    Args:
        mode: One of :data:`TEMPORAL_MODES`. ``"apex"`` expects the middle frame alone
            (``T == 1``; :class:`FrameStream` encodes only that frame).
        dim: Feature width (even for ``"gru"``, a multiple of ``num_heads`` for ``"transformer"``).
        frames: ``T``, the number of learned positions of ``"transformer"``.
        depth: Transformer layers (1 or 2 suit small data).
        num_heads: Transformer attention heads.
        drop_rate: Dropout inside the transformer.

    Example:
        >>> TemporalAggregator(mode="gru", dim=8, frames=4)(torch.rand(2, 4, 8)).shape
        torch.Size([2, 8])
    """

    def __init__(self, *, mode: str, dim: int, frames: int, depth: int = 1, num_heads: int = 4,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        if mode not in TEMPORAL_MODES:
            raise ValueError(f"temporal must be one of {list(TEMPORAL_MODES)}, got {mode!r}")
        self.mode, self.frames = mode, frames
        if mode == "transformer":
            if depth < 1 or dim % num_heads:
                raise ValueError(f"temporal='transformer' needs depth >= 1 (got {depth}) and dim ({dim}) a multiple "
                                 f"of num_heads ({num_heads})")
            self.pos_embed = nn.Parameter(torch.zeros(1, frames, dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
            layer = nn.TransformerEncoderLayer(dim, num_heads, dim_feedforward=2 * dim, dropout=drop_rate,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        elif mode == "gru":
            if dim % 2:
                raise ValueError(f"temporal='gru' runs a bidirectional GRU of dim/2 units each way: dim must be "
                                 f"even, got {dim}")
            self.encoder = nn.GRU(dim, dim // 2, batch_first=True, bidirectional=True)
        if mode in ("attention", "transformer", "gru"):
            self.norm = nn.LayerNorm(dim) if mode != "attention" else nn.Identity()
            self.pool = AttentionPool(dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.mode == "apex":
            return h[:, 0]
        if self.mode == "mean":
            return h.mean(1)
        if self.mode == "transformer":
            h = self.encoder(h + self.pos_embed[:, :h.shape[1]])
        elif self.mode == "gru":
            h = self.encoder(h)[0]
        return self.pool(self.norm(h))


def check_encoder(encoder: nn.Module) -> nn.Module:
    """``encoder`` if it has the timm feature API a frame encoder needs, else a TypeError naming the fix."""
    missing = [a for a in ("forward_features", "forward_head", "num_features") if not hasattr(encoder, a)]
    if missing:
        raise TypeError(f"frame encoder {type(encoder).__name__} lacks {missing}; pass a timm/cfer model name "
                        "(built by cfer.models.create_backbone) or a timm model built with num_classes=0")
    return encoder


def frame_cam_layer(enc: nn.Module, stream: nn.Module) -> nn.Module:
    """Grad-CAM's layer in frame encoder ``enc`` of :class:`FrameStream` ``stream`` (see
    :attr:`cfer.models.temporal.TemporalFusionNet.cam_layer`)."""
    own = getattr(enc, "cam_layer", None)
    if isinstance(own, nn.Module):
        return own
    if hasattr(enc, "blocks") and hasattr(enc, "patch_embed"):
        return stream.cam_grid
    info = getattr(enc, "feature_info", None)
    if info:
        with contextlib.suppress(AttributeError, KeyError, TypeError, IndexError):
            name = info[-1]["module"] if isinstance(info, (list, tuple)) else info.module_name()[-1]
            return enc.get_submodule(name)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else stream.cam_grid


class FrameStream(nn.Module):
    """A frame encoder on all ``B * T`` frames at once, then :class:`TemporalAggregator`.

    Args:
        encoder: A module with ``forward_features``, ``forward_head(pre_logits=True)`` and
            ``num_features`` (a timm or cfer model without classifier).
        mode: One of :data:`TEMPORAL_MODES`; ``"apex"`` encodes the middle frame only.
        dim: Output width.
        frames: ``T``.
        depth, num_heads, drop_rate: The aggregator's.

    Attributes:
        cam_grid: An identity over a token encoder's patch tokens laid out as a map
            ``(B * T, C, h, w)``: the Grad-CAM target of a ViT frame encoder.

    Example:
        >>> import timm, cfer.models
        >>> s = FrameStream(encoder=timm.create_model("cfer_tiny", num_classes=0), mode="mean", dim=8, frames=3)
        >>> s(torch.rand(2, 3, 3, 32, 32)).shape
        torch.Size([2, 8])
    """

    def __init__(self, *, encoder: nn.Module, mode: str, dim: int, frames: int, depth: int = 1,
                 num_heads: int = 4, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.encoder = check_encoder(encoder)
        self.mode = mode
        self.cam_grid = nn.Identity()
        self.proj = nn.Linear(int(encoder.num_features), dim)
        self.aggregate = TemporalAggregator(mode=mode, dim=dim, frames=frames, depth=depth, num_heads=num_heads,
                                            drop_rate=drop_rate)

    def _through_cam_grid(self, f: torch.Tensor) -> torch.Tensor:
        """A token sequence's patch tokens pass :attr:`cam_grid` as a map (a no-op on the values)."""
        if f.ndim != 3:
            return f
        prefix = int(getattr(self.encoder, "num_prefix_tokens", 0))
        n = f.shape[1] - prefix
        side = math.isqrt(max(n, 0))
        if n < 1 or side * side != n:
            return f
        b, _, d = f.shape
        grid = self.cam_grid(f[:, prefix:].transpose(1, 2).reshape(b, d, side, side))
        return torch.cat([f[:, :prefix], grid.flatten(2).transpose(1, 2)], 1)

    def per_frame(self, frames: torch.Tensor) -> torch.Tensor:
        """Projected per-frame features ``(B, t, dim)`` (``t = 1`` for ``"apex"``: the middle frame)."""
        b, t = frames.shape[:2]
        if self.mode == "apex":
            frames = frames[:, t // 2:t // 2 + 1]
        f = self._through_cam_grid(self.encoder.forward_features(frames.flatten(0, 1)))
        e = self.encoder.forward_head(f, pre_logits=True)
        if e.ndim != 2:
            raise ValueError(f"the frame encoder's forward_head(pre_logits=True) gives shape {tuple(e.shape)}, not "
                             "(N, num_features); build it with global pooling (e.g. global_pool='avg')")
        return self.proj(e.reshape(b, -1, e.shape[-1]))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.aggregate(self.per_frame(frames))


class _TemporalBlock(nn.Module):
    """Dilated 3-tap 1-D convolution, group norm, GELU, residual."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.norm = nn.GroupNorm(1, width)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.norm(self.conv(x)))


class MotionEncoder(nn.Module):
    """Landmark tracks ``(B, T, L, 2)`` -> ``(B, dim)``: relative positions + velocities, a TCN, pooling.

    Each point's position relative to the first frame and its frame-to-frame velocity
    (``4 L`` channels) go through a 1x1 convolution and three dilated temporal blocks
    (dilations 1, 2, 4: a receptive field of 15 frames), then mean and max over time and a
    linear layer.

    Args:
        landmarks: ``L``.
        width: Channels of the TCN.
        dim: Output width.

    Example:
        >>> MotionEncoder(landmarks=3, width=4, dim=6)(torch.rand(2, 8, 3, 2)).shape
        torch.Size([2, 6])
    """

    def __init__(self, *, landmarks: int, width: int, dim: int) -> None:
        super().__init__()
        self.inp = nn.Conv1d(4 * landmarks, width, 1)
        self.blocks = nn.Sequential(*[_TemporalBlock(width, d) for d in (1, 2, 4)])
        self.out = nn.Linear(2 * width, dim)

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        rel = landmarks - landmarks[:, :1]
        vel = torch.diff(landmarks, dim=1, prepend=landmarks[:, :1])
        x = self.blocks(self.inp(torch.cat([rel, vel], -1).flatten(2).transpose(1, 2)))  # (B, width, T)
        return self.out(torch.cat([x.mean(-1), x.amax(-1)], 1))


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(1, cout), nn.GELU())


class AudioEncoder(nn.Module):
    """Log-mel spectrogram ``(B, mel_bins, mel_steps)`` -> ``(B, dim)``: a 3-layer 2-D CNN, pooling.

    Args:
        width: Channels of the first layer (then ``2 * width``).
        dim: Output width.

    Example:
        >>> AudioEncoder(width=4, dim=6)(torch.randn(2, 16, 20)).shape
        torch.Size([2, 6])
    """

    def __init__(self, *, width: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(_conv_block(1, width), nn.MaxPool2d(2, ceil_mode=True),
                                 _conv_block(width, 2 * width), nn.MaxPool2d(2, ceil_mode=True),
                                 _conv_block(2 * width, 2 * width))
        self.out = nn.Linear(4 * width, dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.net(mel.unsqueeze(1))
        return self.out(torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1))
