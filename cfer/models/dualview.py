"""Two views of a face, two encoders, fused by attention across their tokens; registered with timm.

The idea follows the two-view fusion models of the ABAW challenges built on MAE-Face (Ma
et al., "MAE-Face"-based entries to the Affective Behavior Analysis in-the-wild
competitions): encode the whole face and a second view of it, and let attention fuse the
two. cfer's version is its own code and works over **any two timm encoders**:

1. view A is the image; view B is its horizontal mirror (``view="flip"``), a central crop
   of the brows-to-mouth region resized back to the input size (``view="crop"``, the box
   given by ``crop_box``), or what a callable returns;
2. each encoder's ``forward_features`` becomes tokens: a CNN map ``(B, C, h, w)`` ->
   ``(B, h*w, C)`` (an NHWC map is read as such), a ViT's sequence as it is; each view's
   tokens are projected to a common width ``dim`` and tagged with a learned view embedding;
3. **local attention** on each view's token grid (:class:`LocalTokenAttention`: every
   token re-weighted by a gate computed from its 3x3 neighbourhood, a depthwise
   convolution), then **self-attention across the tokens of both views** (``depth``
   pre-norm transformer layers), so every token of one view can attend to every token of
   the other;
4. mean pooling over all tokens, an MLP (``num_features`` wide: the pre-logit features),
   and a linear classifier.

``forward_features`` returns the fused tokens ``(B, N_a + N_b, dim)``;
``forward_head(t, pre_logits=True)`` the pooled MLP features. Grad-CAM reads
:attr:`DualViewFusion.cam_layer`: encoder A's own ``cam_layer`` when it has one, else its
last ``nn.Conv2d``, else (a transformer encoder A) ``cam_grid``, an identity that sees view
A's projected tokens laid out as a map ``(B, dim, h, w)``; so a map always explains view A,
the whole face, at image coordinates.

=================  ==========================================  ======  =====  ===========
name               encoders (view A / view B)                  view    dim    use
=================  ==========================================  ======  =====  ===========
``dualview``       ``resemotenet`` / ``resemotenet_slim``      crop    256    full width
``dualview_slim``  ``resemotenet_slim`` / ``resemotenet_slim``  crop    128    CPU
``dualview_tiny``  ``cfer_tiny`` / ``cfer_tiny``               crop    16     tests
=================  ==========================================  ======  =====  ===========

Any other pair: :func:`create_dualview`.

Example:
    >>> import timm, torch, cfer.models
    >>> net = timm.create_model("dualview_tiny", num_classes=7, in_chans=1)
    >>> net(torch.rand(2, 1, 48, 48)).shape
    torch.Size([2, 7])
    >>> net.forward_features(torch.rand(2, 1, 48, 48)).shape   # 3x3 tokens from each view
    torch.Size([2, 18, 16])
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["VIEWS", "DualViewFusion", "LocalTokenAttention", "create_dualview", "second_view"]

VIEWS = ("flip", "crop")
"""The named second views: the mirrored face, and the brows-to-mouth crop resized back."""

CROP_BOX = (0.2, 0.15, 0.9, 0.85)
"""Default ``(top, left, bottom, right)`` of the crop view, as fractions of the side: brows
to below the mouth on an aligned face (cfer's region template puts the brows at 0.27-0.34
and the mouth at 0.72-0.80 of the height)."""


def second_view(x: torch.Tensor, *, view: str | Callable[[torch.Tensor], torch.Tensor] = "crop",
                crop_box: Sequence[float] = CROP_BOX) -> torch.Tensor:
    """View B of a batch ``(B, C, H, W)``: mirrored, cropped and resized back, or ``view(x)``.

    Example:
        >>> x = torch.rand(2, 1, 8, 8)
        >>> torch.equal(second_view(x, view="flip"), x.flip(-1)), second_view(x).shape
        (True, torch.Size([2, 1, 8, 8]))
    """
    if callable(view):
        return view(x)
    if view == "flip":
        return x.flip(-1)
    if view == "crop":
        h, w = x.shape[-2:]
        top, left, bottom, right = crop_box
        r0, r1 = int(round(top * h)), max(int(round(bottom * h)), int(round(top * h)) + 1)
        c0, c1 = int(round(left * w)), max(int(round(right * w)), int(round(left * w)) + 1)
        return nn.functional.interpolate(x[..., r0:r1, c0:c1], size=(h, w), mode="bilinear", align_corners=False)
    raise ValueError(f"view must be one of {list(VIEWS)} or a callable (B, C, H, W) -> (B, C, H', W'), got {view!r}")


def _check_crop_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    box = tuple(float(v) for v in box)
    if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
        raise ValueError(f"crop_box must be (top, left, bottom, right) fractions with 0 <= top < bottom <= 1 and "
                         f"0 <= left < right <= 1, got {box}; default {CROP_BOX}")
    return box  # type: ignore[return-value]


def _check_pool(pool: str) -> None:
    if pool != "avg":
        raise ValueError(f"DualViewFusion pools by the mean over tokens: global_pool must be 'avg', got {pool!r}")


class LocalTokenAttention(nn.Module):
    """Local attention over a token grid: a gate from each token's 3x3 neighbourhood
    (depthwise convolution, sigmoid) scales a depthwise-mixed copy of the tokens, which a
    linear layer adds back (pre-norm residual). Tokens more than one cell apart do not
    interact.

    Args:
        dim: Token width.

    Example:
        >>> LocalTokenAttention(8)(torch.rand(2, 9, 8), (3, 3)).shape
        torch.Size([2, 9, 8])
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mix = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.gate = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, d = tokens.shape
        y = self.norm(tokens).transpose(1, 2).reshape(b, d, *grid)
        y = self.mix(y) * torch.sigmoid(self.gate(y))
        return tokens + self.proj(y.flatten(2).transpose(1, 2))


def _make_encoder(encoder: str | nn.Module, *, in_chans: int, img_size: int | None) -> nn.Module:
    if isinstance(encoder, nn.Module):
        missing = [a for a in ("forward_features", "num_features") if not hasattr(encoder, a)]
        if missing:
            raise TypeError(f"encoder {type(encoder).__name__} lacks {missing}; pass a timm model name or a timm "
                            "model built with num_classes=0")
        return encoder
    if not isinstance(encoder, str):
        raise TypeError(f"an encoder is a timm model name or an nn.Module, got {type(encoder).__name__}")
    from cfer.models.backbones import create_backbone

    return create_backbone(encoder, in_chans=in_chans, img_size=img_size)


class DualViewFusion(nn.Module):
    """Two encoders on two views of a face, fused by local and cross-view self-attention.

    Args:
        encoder_a: The whole-face encoder: a timm model name (built with ``num_classes=0``
            through :func:`cfer.models.create_backbone`) or a module with
            ``forward_features`` and ``num_features``.
        encoder_b: The second view's encoder, the same way (the same module object twice
            shares the weights).
        view: ``"flip"``, ``"crop"`` or a callable ``(B, C, H, W) -> (B, C, H', W')``.
        crop_box: ``(top, left, bottom, right)`` fractions of the crop view.
        dim: Common token width.
        depth: Transformer layers of the cross-view fusion (1 or 2 suit small data).
        num_heads: Attention heads (``dim`` must be a multiple).
        mlp_ratio: Hidden width of the transformer's MLP, as a multiple of ``dim``.
        num_classes: Classifier outputs; ``0``: an identity, ``forward`` returns the features.
        in_chans: Input channels for encoders built by name (1 grey, 3 RGB).
        img_size: Input side, passed to encoders with a fixed input grid (ViTs) built by
            name, and used for the one probe forward that reads each encoder's output shape.
        drop_rate: Dropout in the fusion layers and before the classifier.
        global_pool: ``"avg"`` (mean over all tokens), the only pooling.

    Attributes:
        num_features: Width of the pre-logit features (``dim``).
        cam_layer: Where Grad-CAM reads (see the module docstring).
        cam_grid: An identity over view A's token grid ``(B, dim, h, w)``.

    Example:
        >>> net = DualViewFusion(encoder_a="cfer_tiny", encoder_b="cfer_tiny", view="flip", dim=8,
        ...                      num_heads=2, num_classes=3)
        >>> net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        *,
        encoder_a: str | nn.Module,
        encoder_b: str | nn.Module,
        view: str | Callable[[torch.Tensor], torch.Tensor] = "crop",
        crop_box: Sequence[float] = CROP_BOX,
        dim: int = 64,
        depth: int = 1,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        num_classes: int = 7,
        in_chans: int = 3,
        img_size: int | None = None,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        if not callable(view) and view not in VIEWS:
            raise ValueError(f"view must be one of {list(VIEWS)} or a callable (B, C, H, W) -> (B, C, H', W'), "
                             f"got {view!r}")
        if dim < 1 or num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        if depth < 1:
            raise ValueError(f"depth must be >= 1 fusion layers, got {depth}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: pre-logit features), got {num_classes}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must lie in [0, 1), got {drop_rate}")
        _check_pool(global_pool)
        self.view, self.crop_box = view, _check_crop_box(crop_box)
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        self.encoder_a = _make_encoder(encoder_a, in_chans=in_chans, img_size=img_size)
        self.encoder_b = _make_encoder(encoder_b, in_chans=in_chans, img_size=img_size)
        self._layouts = (self._probe(self.encoder_a, img_size), self._probe(self.encoder_b, img_size))
        self.proj_a = nn.Linear(int(self.encoder_a.num_features), dim)
        self.proj_b = nn.Linear(int(self.encoder_b.num_features), dim)
        self.view_embed = nn.Parameter(torch.zeros(2, dim))
        nn.init.trunc_normal_(self.view_embed, std=0.02)
        self.local_a, self.local_b = LocalTokenAttention(dim), LocalTokenAttention(dim)
        self.cam_grid = nn.Identity()
        layer = nn.TransformerEncoderLayer(dim, num_heads, dim_feedforward=int(dim * mlp_ratio), dropout=drop_rate,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.fusion = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.num_features = self.head_hidden_size = dim
        self.global_pool = global_pool
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = self.default_cfg = self._derived_cfg(img_size)

    # -- construction helpers ----------------------------------------------------------
    def _probe(self, encoder: nn.Module, img_size: int | None) -> str:
        """How an encoder lays out its output: ``"nchw"``, ``"nhwc"`` or ``"tokens"``."""
        cfg = getattr(encoder, "pretrained_cfg", None) or {}
        grid = getattr(getattr(encoder, "patch_embed", None), "img_size", None)  # a timm ViT's own input side
        side = int(img_size or (grid[-1] if isinstance(grid, (tuple, list)) else grid)
                   or (cfg.get("input_size") or (0, 64, 64))[-1])
        conv = next((m for m in encoder.modules() if isinstance(m, nn.Conv2d)), None)
        chans = conv.in_channels if conv is not None else self.in_chans
        device = next(encoder.parameters(), torch.empty(0)).device
        was = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                out = encoder.forward_features(torch.zeros(1, chans, side, side, device=device))
        except (RuntimeError, AssertionError) as exc:  # timm asserts on a wrong input side
            raise ValueError(f"encoder {type(encoder).__name__} fails on a {side}x{side} probe image ({exc}); "
                             "pass img_size= (the side the encoder takes)") from exc
        finally:
            encoder.train(was)
        width = int(encoder.num_features)
        if out.ndim == 4 and out.shape[1] == width:
            return "nchw"
        if out.ndim == 4 and out.shape[-1] == width:
            return "nhwc"
        if out.ndim == 3 and out.shape[-1] == width:
            return "tokens"
        raise ValueError(f"encoder {type(encoder).__name__}'s forward_features gives shape {tuple(out.shape)}, "
                         f"neither a map nor tokens of its num_features ({width}); pass an encoder whose "
                         "forward_features returns (B, C, h, w), (B, h, w, C) or (B, N, C)")

    def _derived_cfg(self, img_size: int | None) -> dict:
        convs = []
        for name in ("encoder_a", "encoder_b"):
            cfg = getattr(getattr(self, name), "pretrained_cfg", None) or {}
            first = cfg.get("first_conv")
            convs += [f"{name}.{c}" for c in ([first] if isinstance(first, str) else list(first or ()))]
        side = img_size or 64
        return {"url": "", "num_classes": self.num_classes, "input_size": (self.in_chans, side, side),
                "crop_pct": 1.0, "interpolation": "bilinear", "mean": (0.0,) * 3, "std": (1.0,) * 3,
                "first_conv": tuple(convs), "classifier": "head"}

    @property
    def cam_layer(self) -> nn.Module:
        """Encoder A's ``cam_layer``, else its last ``nn.Conv2d``, else :attr:`cam_grid`
        (a transformer encoder A): a layer whose output is a map of view A, the whole face."""
        own = getattr(self.encoder_a, "cam_layer", None)
        if isinstance(own, nn.Module):
            return own
        if self._layouts[0] == "nchw":
            convs = [m for m in self.encoder_a.modules() if isinstance(m, nn.Conv2d)]
            if convs:
                return convs[-1]
        return self.cam_grid

    # -- tokens ------------------------------------------------------------------------
    def _tokens(self, f: torch.Tensor, which: int) -> torch.Tensor:
        layout = self._layouts[which]
        proj, local = (self.proj_a, self.local_a) if which == 0 else (self.proj_b, self.local_b)
        prefix = 0
        if layout == "nchw":
            grid, f = tuple(f.shape[-2:]), f.flatten(2).transpose(1, 2)
        elif layout == "nhwc":
            grid, f = tuple(f.shape[1:3]), f.flatten(1, 2)
        else:
            encoder = self.encoder_a if which == 0 else self.encoder_b
            prefix = int(getattr(encoder, "num_prefix_tokens", 0))
            side = math.isqrt(f.shape[1] - prefix)
            grid = (side, side) if side * side == f.shape[1] - prefix else None
        t = proj(f) + self.view_embed[which]
        head, patches = t[:, :prefix], t[:, prefix:]
        if grid is not None:
            if which == 0:
                b, n, d = patches.shape
                patches = self.cam_grid(patches.transpose(1, 2).reshape(b, d, *grid)).flatten(2).transpose(1, 2)
            patches = local(patches, grid)
        return torch.cat([head, patches], 1)

    # -- timm interface ----------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        """The classifier (an identity when ``num_classes == 0``)."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with a fresh one of ``num_classes`` outputs (0: identity)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        _check_pool(global_pool or "avg")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The fused tokens of both views, ``(B, N_a + N_b, dim)``."""
        xb = second_view(x, view=self.view, crop_box=self.crop_box)
        ta = self._tokens(self.encoder_a.forward_features(x), 0)
        tb = self._tokens(self.encoder_b.forward_features(xb), 1)
        return self.norm(self.fusion(torch.cat([ta, tb], 1)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mean over tokens, MLP, dropout, classifier; ``pre_logits=True`` stops before the classifier."""
        x = self.head_drop(self.mlp(x.mean(1)))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def create_dualview(*, encoder_a: str | nn.Module, encoder_b: str | nn.Module,
                    view: str | Callable[[torch.Tensor], torch.Tensor] = "crop", img_size: int | None = None,
                    in_chans: int = 3, num_classes: int = 7, dim: int = 64, depth: int = 1, num_heads: int = 4,
                    drop_rate: float = 0.0, crop_box: Sequence[float] = CROP_BOX) -> DualViewFusion:
    """A :class:`DualViewFusion` over any two timm encoders (by name), with a ``pretrained_cfg``.

    The arguments are :class:`DualViewFusion`'s; ``img_size`` is needed by fixed-grid
    encoders (a ViT with ``img_size=48`` gives 3x3 patches of 16 px).

    Example:
        >>> net = create_dualview(encoder_a="cfer_tiny", encoder_b="vit_tiny_patch16_224", img_size=48,
        ...                       num_classes=5, dim=32)
        >>> net(torch.rand(2, 3, 48, 48)).shape
        torch.Size([2, 5])
    """
    return DualViewFusion(encoder_a=encoder_a, encoder_b=encoder_b, view=view, crop_box=crop_box, dim=dim,
                          depth=depth, num_heads=num_heads, num_classes=num_classes, in_chans=in_chans,
                          img_size=img_size, drop_rate=drop_rate)


def _cfg(first: str = "stem.0.0") -> dict:
    return {"url": "", "num_classes": 7, "input_size": (3, 64, 64), "crop_pct": 1.0, "interpolation": "bilinear",
            "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
            "first_conv": (f"encoder_a.{first}", f"encoder_b.{first}"), "classifier": "head"}


default_cfgs = generate_default_cfgs({"dualview": _cfg(), "dualview_slim": _cfg(), "dualview_tiny": _cfg()})

_VARIANTS: dict[str, dict[str, Any]] = {
    "dualview": dict(encoder_a="resemotenet", encoder_b="resemotenet_slim", dim=256, depth=2, num_heads=8),
    "dualview_slim": dict(encoder_a="resemotenet_slim", encoder_b="resemotenet_slim", dim=128, depth=1,
                          num_heads=4),
    "dualview_tiny": dict(encoder_a="cfer_tiny", encoder_b="cfer_tiny", dim=16, depth=1, num_heads=2),
}


def _create_dualview(variant: str, pretrained: bool = False, **kwargs: Any) -> DualViewFusion:
    if pretrained:
        raise ValueError(f"{variant!r} is one of cfer's own models and has no hub weights: create it with "
                         "pretrained=False, then load a local file with cfer.models.load_weights(model, path)")
    return build_model_with_cfg(DualViewFusion, variant, pretrained=False, **{**_VARIANTS[variant], **kwargs})


@register_model
def dualview(pretrained: bool = False, **kwargs: Any) -> DualViewFusion:
    """Full-width ResEmoteNet on the face and a slim one on the brows-to-mouth crop, fused by attention."""
    return _create_dualview("dualview", pretrained=pretrained, **kwargs)


@register_model
def dualview_slim(pretrained: bool = False, **kwargs: Any) -> DualViewFusion:
    """Two ``resemotenet_slim`` encoders (face, brows-to-mouth crop) fused by attention: CPU-friendly."""
    return _create_dualview("dualview_slim", pretrained=pretrained, **kwargs)


@register_model
def dualview_tiny(pretrained: bool = False, **kwargs: Any) -> DualViewFusion:
    """Two ``cfer_tiny`` encoders fused by attention, for tests."""
    return _create_dualview("dualview_tiny", pretrained=pretrained, **kwargs)
