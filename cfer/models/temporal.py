"""Temporal models over packed video clips: frames, landmark motion and audio, fused; registered with timm.

A clip travels as one tensor ``(T + k, C, S, S)`` (:class:`cfer.cliplayout.ClipLayout`, shared
with the clip readers of :mod:`cfer.data.video`). :class:`TemporalFusionNet` unpacks a batch
``(B, T + k, C, S, S)`` into its streams and encodes each into one ``dim``-wide token:

* ``"frames"``: any timm/cfer image encoder on all ``B * T`` frames at once, pooled per
  frame, aggregated over time by ``temporal``: ``"attention"`` (attention pooling),
  ``"transformer"`` (1-2 layers with learned positions, then attention pooling),
  ``"gru"`` (bidirectional GRU, then attention pooling), ``"mean"`` (plain average) or
  ``"apex"`` (the middle frame only: the single-frame baseline);
* ``"motion"``: landmark tracks (relative positions + velocities) through a small TCN;
* ``"audio"``: a small CNN over the log-mel spectrogram.

**Presence.** A clip uses a stream that is in ``streams``, flagged present in the clip, not
being dropped (:meth:`TemporalFusionNet.dropping`) and, in training, kept by modality
dropout (each present stream dropped with probability ``modality_dropout``, never all of
a clip's). An absent stream's input is zeroed and its token left out of the fusion; a clip
with no stream left falls back to the frames stream (a warning, logged once).

**Fusion.** ``"late"``: the fused features are the mean of the present streams' tokens, so
the one linear classifier ``head`` gives exactly the mean of the present streams' own
logits (``head`` on each token: :meth:`stream_logits`). ``"attention"``: a learned query
attends over the present streams' tokens (absent ones masked), then an MLP. Either way one
final ``nn.Linear`` classifies, so cfer's growing head (``GrowingClassifier`` around the
model built with ``num_classes=0``) grows every stream's classifier at once.

**Features.** For clips ``forward_features`` returns the fused embedding ``(B, num_features)``,
not a spatial map; ``forward_head(f, pre_logits=True)`` returns it unchanged. Grad-CAM
explains the frame encoder (:attr:`~TemporalFusionNet.frame_encoder`, its
:attr:`~TemporalFusionNet.cam_layer`): one map per encoded frame.

=================  ======================  ===========  =====  =======
name               frame encoder           temporal     dim    use
=================  ======================  ===========  =====  =======
``temporal``       ``resemotenet``         transformer  256    full
``temporal_slim``  ``resemotenet_slim``    transformer  128    CPU
``temporal_tiny``  ``cfer_tiny``           transformer  16     tests
=================  ======================  ===========  =====  =======

All use the three streams and the recipe measured best on the synthetic clips (late fusion,
modality dropout 0.5, ``stream_loss=1``; keyword arguments override it); ``layout`` defaults
to ``ClipLayout()``, ``in_chans``/``img_size``/``frames`` set its channels, side and frames.

Example:
    >>> import timm, torch, cfer.models
    >>> net = timm.create_model("temporal_tiny", num_classes=7, in_chans=1, img_size=32, frames=4)
    >>> x = torch.rand(2, *net.clip_layout.shape)
    >>> net(x).shape, net.forward_features(x).shape
    (torch.Size([2, 7]), torch.Size([2, 16]))
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from cfer.cliplayout import ClipParts
from cfer.models.temporal_loss import StreamFeatures, stream_subsets
from cfer.models.temporal_parts import (
    FUSIONS,
    STREAMS,
    TEMPORAL_MODES,
    AudioEncoder,
    FrameStream,
    MotionEncoder,
    check_encoder,
    check_options,
    frame_cam_layer,
    resolve_layout,
)

__all__ = ["FUSIONS", "STREAMS", "TEMPORAL_MODES", "TemporalFusionNet", "resolve_layout"]

logger = logging.getLogger(__name__)

_FLAG = {"frames": "has_frames", "motion": "has_landmarks", "audio": "has_audio"}
_INPUT = {"frames": "frames", "motion": "landmarks", "audio": "mel"}


class TemporalFusionNet(nn.Module):
    """Frame, motion and audio streams of packed clips, aggregated over time and fused.

    Args:
        frame_encoder: A timm/cfer model name (``"resemotenet_slim"``, ``"cfer_tiny"``,
            ``"vit_face_tiny"``, ...) built by :func:`cfer.models.create_backbone` without
            classifier, or such a module.
        layout: The input's :class:`~cfer.cliplayout.ClipLayout` (or its dict, or a
            :class:`~cfer.cliplayout.ClipLayout`); default ``ClipLayout()``.
        num_classes: Classifier outputs; ``0``: ``forward`` returns the fused features.
        temporal: Frame aggregation, one of :data:`TEMPORAL_MODES`.
        streams: The streams used, a subset of :data:`STREAMS`.
        fusion: One of :data:`FUSIONS`.
        modality_dropout: In training, the probability of dropping each present stream of
            a clip (never all of a clip's streams).
        stream_loss: Weight of the cross-entropy of every proper subset of the streams (each
            alone; with three, each pair too) in training, next to the fused one (``StreamCriterion``
            of :mod:`cfer.models.temporal_loss`, which ``criterion_for`` picks, also for cfer's
            growing classifier): the model holds up with any stream missing.
        dim: Width of the stream tokens and of the fused features.
        depth: Layers of the ``"transformer"`` aggregation.
        num_heads: Attention heads of the transformer and the attention fusion.
        stream_width: Channels of the motion TCN and the audio CNN.
        drop_rate: Dropout in the transformer and before the classifier.
        frame_weights: Weights for a frame encoder built by name: a local file (a cfer
            ``pretrain`` MAE encoder, a state dict) or hub weights (``"hf-hub:ORG/NAME"``).
        in_chans, img_size, frames: Override the layout's channels, frame side and frames.

    Attributes:
        clip_layout: The input format, a :class:`~cfer.cliplayout.ClipLayout` (build the
            datasets with ``ClipDataset(..., layout=net.clip_layout)``).
        num_features: Width of the fused features (``dim``).
        head: The classifier, one ``nn.Linear`` (an identity for ``num_classes=0``).

    Example:
        >>> from cfer.cliplayout import ClipLayout
        >>> layout = ClipLayout(frames=4, image_size=32, channels=1, mel_bins=8, mel_steps=8, landmarks=4)
        >>> net = TemporalFusionNet(frame_encoder="cfer_tiny", layout=layout, num_classes=3, dim=8, num_heads=2)
        >>> x = layout.pack(frames=torch.rand(4, 1, 32, 32), mel=torch.randn(8, 8))[None]
        >>> net(x).shape, sorted(net.stream_logits(x))
        (torch.Size([1, 3]), ['audio', 'frames', 'motion'])
    """

    def __init__(
        self,
        *,
        frame_encoder: str | nn.Module = "cfer_tiny",
        layout: object = None,
        num_classes: int = 7,
        temporal: str = "transformer",
        streams: Sequence[str] = STREAMS,
        fusion: str = "attention",
        modality_dropout: float = 0.0,
        stream_loss: float = 0.0,
        dim: int = 64,
        depth: int = 1,
        num_heads: int = 4,
        stream_width: int = 16,
        drop_rate: float = 0.0,
        frame_weights: str | Path | None = None,
        in_chans: int | None = None,
        img_size: int | Sequence[int] | None = None,
        frames: int | None = None,
    ) -> None:
        super().__init__()
        streams = (streams,) if isinstance(streams, str) else tuple(streams)
        check_options(temporal, streams, fusion, modality_dropout, dim, num_heads, num_classes, drop_rate, stream_loss)
        self.clip_layout = lay = resolve_layout(layout, in_chans=in_chans, img_size=img_size, frames=frames)
        self.streams = tuple(s for s in STREAMS if s in streams)
        self.temporal, self.fusion = temporal, fusion
        self.modality_dropout, self.stream_loss = float(modality_dropout), float(stream_loss)
        self.last_stream_features: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.num_classes, self.in_chans, self.drop_rate = num_classes, lay.channels, drop_rate
        self._dropped, self._warned_empty = frozenset(), False
        # frames first: its stem is the model's first Conv2d, whose input channels io.save_model records
        self.encoders = nn.ModuleDict()
        if "frames" in self.streams:
            if isinstance(frame_encoder, str):
                from cfer.models.backbones import create_backbone

                encoder = create_backbone(frame_encoder, in_chans=lay.channels, img_size=lay.image_size,
                                          weights=frame_weights)
            elif frame_weights is not None:
                raise ValueError("frame_weights= loads weights into a frame encoder built by name; load them into "
                                 "your module yourself (cfer.models.load_weights(module, path))")
            else:
                encoder = check_encoder(frame_encoder)
            self.encoders["frames"] = FrameStream(encoder=encoder, mode=temporal, dim=dim, frames=lay.frames,
                                                  depth=depth, num_heads=num_heads, drop_rate=drop_rate)
        if "motion" in self.streams:
            self.encoders["motion"] = MotionEncoder(landmarks=lay.landmarks, width=stream_width, dim=dim)
        if "audio" in self.streams:
            self.encoders["audio"] = AudioEncoder(width=stream_width, dim=dim)
        self._fallback = self.streams.index("frames") if "frames" in self.streams else 0
        if fusion == "attention":
            self.token_norm = nn.LayerNorm(dim)
            self.stream_embed = nn.Parameter(torch.zeros(len(self.streams), dim))
            self.query = nn.Parameter(torch.zeros(1, 1, dim))
            nn.init.trunc_normal_(self.stream_embed, std=0.02)
            nn.init.trunc_normal_(self.query, std=0.02)
            self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
            self.norm = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.num_features = self.head_hidden_size = dim
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = self.default_cfg = self._derived_cfg()

    def _derived_cfg(self) -> dict[str, Any]:
        frames = self.encoders["frames"].encoder if "frames" in self.encoders else None
        cfg = getattr(frames, "pretrained_cfg", None) or {}
        first, lay = cfg.get("first_conv"), self.clip_layout
        return {"url": "", "num_classes": self.num_classes, "input_size": lay.shape[1:], "fixed_input_size": True,
                "crop_pct": 1.0, "interpolation": "bilinear",
                "mean": cfg.get("mean", (0.0,) * 3), "std": cfg.get("std", (1.0,) * 3),
                "first_conv": f"encoders.frames.encoder.{first}" if isinstance(first, str) else None,
                "classifier": "head", "clip_layout": lay.as_dict(), "clip_shape": lay.shape}

    # -- encoders and Grad-CAM ---------------------------------------------------------
    @property
    def frame_encoder(self) -> nn.Module:
        """The image encoder of the frames stream.

        Raises:
            ValueError: If the model has no frames stream (nothing to explain as images).
        """
        if "frames" not in self.encoders:
            raise ValueError(f"this TemporalFusionNet has no frames stream (streams={list(self.streams)}): it has no "
                             "frame encoder and no Grad-CAM layer; build it with 'frames' in streams")
        return self.encoders["frames"].encoder

    @property
    def cam_layer(self) -> nn.Module:
        """Where Grad-CAM reads (``cfer.explain.gradcam.find_target_layer`` takes it): the
        frame encoder's ``cam_layer``; else, for a ViT, ``encoders.frames.cam_grid`` (its
        patch tokens as a map, no reshape needed); else the module of its last
        ``feature_info`` entry; else its last ``nn.Conv2d``. Its output holds one map per
        encoded frame (``B * T``; ``B`` for ``temporal="apex"``)."""
        return frame_cam_layer(self.frame_encoder, self.encoders["frames"])

    @property
    def gradcam_target_layer(self) -> nn.Module:
        """The same module as :attr:`cam_layer`."""
        return self.cam_layer

    # -- presence ----------------------------------------------------------------------
    def _unpack(self, x: torch.Tensor) -> ClipParts:
        if not isinstance(x, torch.Tensor) or x.ndim != 5:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"TemporalFusionNet takes packed clips (B, {', '.join(map(str, self.clip_layout.shape))})"
                             f" built with ClipLayout.pack, got {shape}; for images use a frame model, for clips "
                             "cfer.data.video.ClipDataset(layout=model.clip_layout)")
        return self.clip_layout.unpack(x)

    @contextlib.contextmanager
    def dropping(self, streams: Iterable[str]) -> Iterator["TemporalFusionNet"]:
        """Leave ``streams`` out of the fusion inside the block (as if their flags were 0).

        Example:
            >>> with net.dropping({"audio"}):          # doctest: +SKIP
            ...     no_audio = net(x)
        """
        names = frozenset([streams] if isinstance(streams, str) else streams)
        bad = sorted(names - set(STREAMS))
        if bad:
            raise ValueError(f"unknown streams {bad}; streams are {list(STREAMS)}")
        before, self._dropped = self._dropped, self._dropped | names
        try:
            yield self
        finally:
            self._dropped = before

    def _available(self, parts: ClipParts) -> torch.Tensor:
        """``(B, S)``: flagged present in the clip and not being dropped (before modality dropout)."""
        present = torch.stack([getattr(parts, _FLAG[s]) for s in self.streams], 1)
        for i, s in enumerate(self.streams):
            if s in self._dropped:
                present[:, i] = False
        return present

    def _presence(self, parts: ClipParts) -> torch.Tensor:
        present = self._available(parts)
        eye = torch.eye(len(self.streams), dtype=torch.bool, device=present.device)  # one-hot rows
        if self.training and self.modality_dropout > 0:  # never all of a clip's streams: rescue one at random
            kept = present & (torch.rand(present.shape, device=present.device) >= self.modality_dropout)
            pick = torch.rand(present.shape, device=present.device).masked_fill(~present, -1.0).argmax(1)
            present = kept | (eye[pick] & (present.any(1) & ~kept.any(1)).unsqueeze(1))
        empty = ~present.any(1)  # no stream left: the fallback stream (frames)
        if not self._warned_empty and bool(empty.any()):
            logger.warning("%d clip(s) have no present stream (flags 0 or dropped): they fall back to the %s stream; "
                           "check the clips' presence flags (logged once)", int(empty.sum()),
                           self.streams[self._fallback])
            self._warned_empty = True
        return present | (eye[self._fallback] & empty.unsqueeze(1))

    def presence(self, x: torch.Tensor) -> torch.Tensor:
        """The streams (columns, :attr:`streams` order) each clip's fusion uses, ``(B, S)`` bool:
        flags, :meth:`dropping`, modality dropout (training: a new draw a call), fallback."""
        return self._presence(self._unpack(x))

    def _encode(self, parts: ClipParts) -> torch.Tensor:
        tokens = []
        for s in self.streams:
            inp, flag = getattr(parts, _INPUT[s]), getattr(parts, _FLAG[s])
            inp = torch.where(flag.view(-1, *([1] * (inp.ndim - 1))), inp, 0.0)
            tokens.append(self.encoders[s](inp))
        return torch.stack(tokens, 1)  # (B, S, dim)

    def _fuse(self, tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        tokens = torch.where(present.unsqueeze(-1), tokens, 0.0)
        if self.fusion == "late":
            return tokens.sum(1) / present.sum(1, keepdim=True).to(tokens.dtype)
        t = self.token_norm(tokens) + self.stream_embed
        out = self.attn(self.query.expand(len(t), -1, -1), t, t, key_padding_mask=~present, need_weights=False)[0]
        return self.mlp(self.norm(out[:, 0]))

    # -- timm interface ----------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        """The classifier: one ``nn.Linear`` over the fused features (an identity when ``num_classes == 0``)."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with a fresh one of ``num_classes`` outputs (0: identity).
        To widen it keeping the old classes, wrap the model built with ``num_classes=0`` in
        :class:`cfer.continual.growing.GrowingClassifier`."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if global_pool not in (None, "avg"):
            raise ValueError(f"TemporalFusionNet pools by its fusion: global_pool must be None or 'avg', got "
                             f"{global_pool!r}")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = self.default_cfg = {**self.pretrained_cfg, "num_classes": num_classes}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The fused embedding of packed clips ``(B, T + k, C, S, S)``: ``(B, num_features)``,
        not a spatial map (see :attr:`cam_layer` for the frame encoder's maps). Training with
        ``stream_loss > 0``, it keeps ``last_stream_features`` for ``StreamCriterion``: ``(fused,
        per stream subset (B, K, num_features), usable (B, K))``, the subsets of ``stream_subsets``."""
        parts = self._unpack(x)
        tokens, present = self._encode(parts), self._presence(parts)
        fused = self._fuse(tokens, present)
        keep = self.training and self.stream_loss > 0 and len(self.streams) > 1
        subsets = stream_subsets(len(self.streams), device=tokens.device) if keep else None  # (K, S)
        self.last_stream_features = None if subsets is None else StreamFeatures((  # usable: has all A's streams
            fused, self._fuse_each(tokens, subsets), (self._available(parts)[:, None] | ~subsets).all(-1)))
        return fused

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The fused features already pooled: ``pre_logits=True`` returns them; else dropout, classifier."""
        return x if pre_logits else self.head(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def _fuse_each(self, tokens: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The fusion run once per row of ``masks`` ``(K, S)``: ``(B, K, num_features)``."""
        return torch.stack([self._fuse(tokens, m.expand(len(tokens), -1)) for m in masks.to(tokens.device)], 1)

    def stream_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each stream's logits alone, ``{name: (B, num_classes)}``: the fusion run with only
        that stream (for ``"late"`` fusion exactly ``head(token)``, the stream's own
        classifier; the fused logits are their mean over the present streams). A stream
        flagged absent in a clip gives the logits of its zeroed input there."""
        feats = self._fuse_each(self._encode(self._unpack(x)), torch.eye(len(self.streams), dtype=torch.bool))
        return {s: self.forward_head(feats[:, i]) for i, s in enumerate(self.streams)}


def _cfg(encoder_first: str = "stem.0.0") -> dict[str, Any]:
    return {"url": "", "num_classes": 7, "input_size": (3, 64, 64), "fixed_input_size": True, "crop_pct": 1.0,
            "interpolation": "bilinear", "mean": (0.0,) * 3, "std": (1.0,) * 3,
            "first_conv": f"encoders.frames.encoder.{encoder_first}", "classifier": "head"}


default_cfgs = generate_default_cfgs({"temporal": _cfg(), "temporal_slim": _cfg(), "temporal_tiny": _cfg()})

_RECIPE = dict(fusion="late", modality_dropout=0.5, stream_loss=1.0)  # docs/benchmarks.md, "Video clips"
_VARIANTS: dict[str, dict[str, Any]] = {
    "temporal": dict(_RECIPE, frame_encoder="resemotenet", dim=256, depth=2, num_heads=8, stream_width=32),
    "temporal_slim": dict(_RECIPE, frame_encoder="resemotenet_slim", dim=128, depth=1, num_heads=4, stream_width=16),
    "temporal_tiny": dict(_RECIPE, frame_encoder="cfer_tiny", dim=16, depth=1, num_heads=2, stream_width=8),
}


def _create_temporal(variant: str, pretrained: bool = False, **kwargs: Any) -> TemporalFusionNet:
    if pretrained:
        raise ValueError(f"{variant!r} is one of cfer's own models and has no hub weights: create it with "
                         "pretrained=False, load a local file with cfer.models.load_weights(model, path), or give "
                         "the frame encoder weights with frame_weights=FILE_OR_HUB")
    # timm fills in_chans / img_size from the default cfg: resolve them with the layout first.
    layout = resolve_layout(kwargs.pop("layout", None), in_chans=kwargs.pop("in_chans", None),
                            img_size=kwargs.pop("img_size", None), frames=kwargs.pop("frames", None))
    kwargs.update(layout=layout, in_chans=layout.channels, img_size=layout.image_size)
    model = build_model_with_cfg(TemporalFusionNet, variant, pretrained=False, **{**_VARIANTS[variant], **kwargs})
    model.pretrained_cfg = model.default_cfg = {**model.pretrained_cfg, **model._derived_cfg()}
    return model


@register_model
def temporal(pretrained: bool = False, **kwargs: Any) -> TemporalFusionNet:
    """Full-width ResEmoteNet frames + motion + audio, a 2-layer temporal transformer, late fusion."""
    return _create_temporal("temporal", pretrained=pretrained, **kwargs)


@register_model
def temporal_slim(pretrained: bool = False, **kwargs: Any) -> TemporalFusionNet:
    """``resemotenet_slim`` frames + motion + audio, a 1-layer temporal transformer, late fusion: CPU."""
    return _create_temporal("temporal_slim", pretrained=pretrained, **kwargs)


@register_model
def temporal_tiny(pretrained: bool = False, **kwargs: Any) -> TemporalFusionNet:
    """``cfer_tiny`` frames + motion + audio, late fusion, for tests."""
    return _create_temporal("temporal_tiny", pretrained=pretrained, **kwargs)
