"""A multi-scale, local-attention network for faces (MA-Net style), registered with timm.

The design follows the idea of MA-Net (Z. Zhao, Q. Liu, S. Wang, 2021, "Learning Deep
Global Multi-Scale and Local Attention Features for Facial Expression Recognition in the
Wild", IEEE Transactions on Image Processing 30): a shared convolutional trunk, then two
branches over its mid-level map:

* the **global multi-scale branch**: a residual block, then parallel 3x3 convolutions with
  dilations 1, 2 and 3 (receptive fields of 3, 5 and 7 cells, i.e. a part of the face up to
  the whole face at 1/8 resolution), concatenated, fused by a 1x1 convolution and added
  back. The map keeps the trunk's 1/8 resolution (dilation instead of striding), so
  Grad-CAM reads an 8x8 map at 64 px;
* the **local attention branch**: the mid-level map is cut into a ``grid`` x ``grid`` set of
  facial patches (2x2: left/right brow-and-eye, left/right cheek-and-mouth); each patch has
  its own convolution (a grouped convolution, one group per patch) and its own attention
  score, ``sigmoid(MLP(mean of the patch's features))``, which scales that patch's
  features. The weighted patches are put back in place.

``forward_features`` returns both maps concatenated on the channel axis, ``(B,
global_width + local_width, h, w)``; average pooling therefore gives the concatenation of
the global feature and the attention-weighted mean of the patch features, and the
classifier is one linear layer on it. The code is cfer's own; only the idea is MA-Net's
(which builds on a ResNet-18 and crops the patches from its second stage).

===================  ===========================  ===========  ==========  ========  ============
name                 stem / trunk                 global       local       features  use
===================  ===========================  ===========  ==========  ========  ============
``manet``            64 / 128-256                 512 (3x128)  256 (2x2)   768       full width
``manet_slim``       16 / 32-64                   128 (3x32)   64 (2x2)    192       CPU, 48-64 px
``manet_pool_slim``  16 / 32-64, max-pool trunk   128 (3x32)   64 (2x2)    192       CPU, 48-64 px
``manet_tiny``       8 (stride 2) / 8-16          16 (3x4)     8 (2x2)     24        tests
===================  ===========================  ===========  ==========  ========  ============

The trunk is either strided residual blocks (``trunk="residual"``, MA-Net's ResNet-like
trunk) or conv-norm-ReLU-max-pool blocks like ResEmoteNet's stem (``trunk="pool"``). On
48-pixel synthetic faces (all 22 classes, 5 seeds) ``manet_pool_slim`` trained with precise
BatchNorm (``TeacherConfig(precise_bn=True)``) matches ``resemotenet_slim`` (0.594 against
0.589 macro-F1), where ``manet_slim`` stays about 10 points below; without precise BatchNorm
its early stopping is unsteady (``docs/benchmarks.md``). Any variant takes ``trunk=...`` as
a keyword of ``timm.create_model``.

Example:
    >>> import timm, torch, cfer.models
    >>> net = timm.create_model("manet_slim", num_classes=7)
    >>> net(torch.rand(2, 3, 48, 48)).shape
    torch.Size([2, 7])
    >>> net.forward_features(torch.rand(2, 3, 48, 48)).shape
    torch.Size([2, 192, 6, 6])
    >>> net.patch_attention(torch.rand(2, 3, 48, 48)).shape
    torch.Size([2, 2, 2])
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from cfer.models.resemotenet import _POOLS, ResidualBlock, _norm, _stem_block

__all__ = ["LocalPatchAttention", "MANet", "MultiScaleBlock"]


class MultiScaleBlock(nn.Module):
    """Parallel dilated 3x3 convolutions over one map, concatenated, fused (1x1) and added back.

    Args:
        channels: Channels in and out.
        branch_width: Channels of each dilated branch.
        dilations: One branch per dilation (same resolution, growing receptive field).
        norm: ``"batch"`` or ``"group"``.
        momentum: Batch-norm momentum.

    Example:
        >>> MultiScaleBlock(8, branch_width=4)(torch.rand(2, 8, 6, 6)).shape
        torch.Size([2, 8, 6, 6])
    """

    def __init__(self, channels: int, *, branch_width: int, dilations: Sequence[int] = (1, 2, 3),
                 norm: str = "batch", momentum: float = 0.1) -> None:
        super().__init__()
        if not dilations or min(dilations) < 1:
            raise ValueError(f"dilations must be one or more integers >= 1, got {tuple(dilations)}")
        self.branches = nn.ModuleList([
            nn.Sequential(nn.Conv2d(channels, branch_width, 3, 1, d, dilation=d, bias=False),
                          _norm(norm, branch_width, momentum), nn.ReLU(inplace=True))
            for d in dilations])
        self.fuse = nn.Conv2d(branch_width * len(dilations), channels, 1, bias=False)
        self.bn = _norm(norm, channels, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.fuse(torch.cat([b(x) for b in self.branches], 1)))
        return torch.relu(x + y)


class LocalPatchAttention(nn.Module):
    """Cut a map into ``grid`` x ``grid`` patches, convolve each with its own weights, and
    scale each patch by a learned attention score in (0, 1) (sigmoid of a small MLP on the
    patch's mean feature), then put the patches back in place.

    A map whose side is not a multiple of ``grid`` is zero-padded at the bottom and right
    and cropped back afterwards. Nothing crosses a patch border: a patch's output depends
    only on that patch of the input.

    Args:
        in_channels: Channels of the input map.
        width: Channels of each patch's features (the output's channels).
        grid: Patches per side (2: four facial quarters; 3: brows/eyes/mouth rows).
        hidden: Hidden width of each patch's scoring MLP.
        norm: ``"batch"`` or ``"group"``.
        momentum: Batch-norm momentum.

    Example:
        >>> att = LocalPatchAttention(8, width=4, grid=2, hidden=2)
        >>> out, scores = att(torch.rand(2, 8, 6, 6))
        >>> out.shape, scores.shape
        (torch.Size([2, 4, 6, 6]), torch.Size([2, 2, 2]))
    """

    def __init__(self, in_channels: int, *, width: int, grid: int = 2, hidden: int = 16,
                 norm: str = "batch", momentum: float = 0.1) -> None:
        super().__init__()
        if grid < 1:
            raise ValueError(f"grid must be >= 1 patches per side (2: facial quarters), got {grid}")
        self.grid, self.width = grid, width
        n = grid * grid
        self.conv = nn.Conv2d(in_channels * n, width * n, 3, 1, 1, groups=n, bias=False)
        self.bn = _norm(norm, width * n, momentum)
        self.score = nn.Sequential(nn.Conv2d(width * n, hidden * n, 1, groups=n), nn.ReLU(inplace=True),
                                   nn.Conv2d(hidden * n, n, 1, groups=n))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weighted map (B, width, H, W), scores (B, grid, grid))``."""
        b, c, h, w = x.shape
        g = self.grid
        ph, pw = math.ceil(h / g), math.ceil(w / g)
        x = nn.functional.pad(x, (0, pw * g - w, 0, ph * g - h))
        patches = x.reshape(b, c, g, ph, g, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g * c, ph, pw)
        f = torch.relu(self.bn(self.conv(patches)))
        scores = torch.sigmoid(self.score(f.mean((2, 3), keepdim=True)))  # (B, g*g, 1, 1)
        f = f.reshape(b, g * g, self.width, ph, pw) * scores.reshape(b, g * g, 1, 1, 1)
        out = f.reshape(b, g, g, self.width, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, self.width, g * ph, g * pw)
        return out[:, :, :h, :w], scores.reshape(b, g, g)


class MANet(nn.Module):
    """Global multi-scale + local patch-attention network with timm's model interface.

    Args:
        stem_width: Channels of the conv-norm-ReLU-max-pool stem (1/2 resolution).
        trunk_widths: Channels of the residual blocks after the stem, each halving the
            resolution; the last one's map (1/8 with two blocks) feeds both branches.
        global_width: Channels of the global branch (its residual block and multi-scale block).
        branch_width: Channels of each dilated branch of the multi-scale block.
        dilations: Dilations of the multi-scale block's branches.
        local_width: Channels of each patch's features.
        grid: Patches per side of the local branch.
        score_hidden: Hidden width of each patch's attention MLP.
        num_classes: Classifier outputs; ``0``: an identity, ``forward`` returns the pooled
            features.
        in_chans: Input channels (1 grey, 3 RGB).
        drop_rate: Dropout before the classifier.
        stem_stride: Stride of the first convolution.
        trunk: ``"residual"`` (strided residual blocks) or ``"pool"`` (conv-norm-ReLU blocks,
            each followed by a 2x2 max-pool, as in ResEmoteNet's stem): both halve the
            resolution once a block.
        global_pool: ``"avg"``, ``"max"``, ``"avgmax"`` or ``""`` (no pooling; needs
            ``num_classes=0``).
        norm: ``"batch"`` or ``"group"``.
        bn_momentum: Batch-norm momentum.

    Attributes:
        num_features: ``global_width + local_width``.
        cam_layer: The last convolution of the deepest stage (the multi-scale fusion),
            which Grad-CAM reads (:mod:`cfer.explain`).

    Example:
        >>> net = MANet(stem_width=4, trunk_widths=(4, 8), global_width=8, branch_width=2,
        ...             local_width=4, score_hidden=2, num_classes=3)
        >>> net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        *,
        stem_width: int = 64,
        trunk_widths: Sequence[int] = (128, 256),
        global_width: int = 512,
        branch_width: int = 128,
        dilations: Sequence[int] = (1, 2, 3),
        local_width: int = 256,
        grid: int = 2,
        score_hidden: int = 64,
        num_classes: int = 7,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        stem_stride: int = 1,
        trunk: str = "residual",
        global_pool: str = "avg",
        norm: str = "batch",
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1 (1 grey, 3 RGB), got {in_chans}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: pooled features), got {num_classes}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must lie in [0, 1), got {drop_rate}")
        if len(trunk_widths) < 1:
            raise ValueError(f"need at least one trunk width, got {tuple(trunk_widths)}")
        if trunk not in ("residual", "pool"):
            raise ValueError(f"trunk must be 'residual' (strided residual blocks) or 'pool' (conv + max-pool "
                             f"blocks), got {trunk!r}")
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        kw = dict(norm=norm, momentum=bn_momentum)
        self.stem = nn.Sequential(_stem_block(in_chans, stem_width, stride=stem_stride, **kw))
        widths = [stem_width, *trunk_widths]
        self.trunk = nn.Sequential(*[ResidualBlock(a, b, stride=2, **kw) if trunk == "residual"
                                     else _stem_block(a, b, stride=1, **kw) for a, b in zip(widths[:-1], widths[1:])])
        self.deep = ResidualBlock(widths[-1], global_width, stride=1, **kw)
        self.multiscale = MultiScaleBlock(global_width, branch_width=branch_width, dilations=dilations, **kw)
        self.local = LocalPatchAttention(widths[-1], width=local_width, grid=grid, hidden=score_hidden, **kw)
        self.global_width, self.local_width = global_width, local_width
        self.num_features = self.head_hidden_size = global_width + local_width
        reduction = stem_stride * 2 * 2 ** len(trunk_widths)
        self.feature_info = [dict(num_chs=self.num_features, reduction=reduction, module="multiscale")]
        self.global_pool = self._make_pool(global_pool, num_classes)
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _make_pool(pool_type: str, num_classes: int) -> SelectAdaptivePool2d:
        if pool_type not in _POOLS:
            raise ValueError(f"global_pool must be one of {list(_POOLS)}, got {pool_type!r}")
        if pool_type == "" and num_classes > 0:
            raise ValueError("global_pool='' (no pooling) needs num_classes=0; pool with 'avg' to classify")
        return SelectAdaptivePool2d(pool_type=pool_type, flatten=bool(pool_type))

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolution of the deepest stage (the 1x1 fusion of the multi-scale
        block), at the trunk's 1/8 resolution. It explains the global branch; the local
        branch's evidence is its patch scores (:meth:`patch_attention`)."""
        return self.multiscale.fuse

    @torch.no_grad()
    def patch_attention(self, x: torch.Tensor) -> torch.Tensor:
        """The local branch's attention score of each facial patch, ``(B, grid, grid)`` in (0, 1)."""
        return self.local(self.trunk(self.stem(x)))[1]

    # -- timm interface ----------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        """The classifier (an identity when ``num_classes == 0``)."""
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with a fresh one of ``num_classes`` outputs (0: identity)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        pool = self.global_pool.pool_type if global_pool is None else global_pool
        self.global_pool = self._make_pool(pool, num_classes)
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Global and local maps concatenated, ``(B, global_width + local_width, h, w)``."""
        mid = self.trunk(self.stem(x))
        local, _ = self.local(mid)
        return torch.cat([self.multiscale(self.deep(mid)), local], 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, drop out, classify; ``pre_logits=True`` stops before the classifier."""
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs: Any) -> dict:
    return {"url": "", "num_classes": 7, "input_size": (3, 64, 64), "pool_size": (8, 8), "crop_pct": 1.0,
            "interpolation": "bilinear", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
            "first_conv": "stem.0.0", "classifier": "classifier", **kwargs}


default_cfgs = generate_default_cfgs({
    "manet": _cfg(),
    "manet_slim": _cfg(),
    "manet_pool_slim": _cfg(),
    "manet_tiny": _cfg(pool_size=(4, 4)),
})

_VARIANTS: dict[str, dict[str, Any]] = {
    "manet": dict(stem_width=64, trunk_widths=(128, 256), global_width=512, branch_width=128, local_width=256,
                  score_hidden=64),
    "manet_slim": dict(stem_width=16, trunk_widths=(32, 64), global_width=128, branch_width=32, local_width=64,
                       score_hidden=16, bn_momentum=0.5),
    "manet_pool_slim": dict(stem_width=16, trunk_widths=(32, 64), global_width=128, branch_width=32, local_width=64,
                            score_hidden=16, bn_momentum=0.5, trunk="pool"),
    "manet_tiny": dict(stem_width=8, trunk_widths=(8, 16), global_width=16, branch_width=4, local_width=8,
                       score_hidden=4, stem_stride=2, drop_rate=0.0, bn_momentum=0.5),
}


def _create_manet(variant: str, pretrained: bool = False, **kwargs: Any) -> MANet:
    if pretrained:
        raise ValueError(f"{variant!r} is one of cfer's own models and has no hub weights: create it with "
                         "pretrained=False, then load a local file with cfer.models.load_weights(model, path)")
    return build_model_with_cfg(MANet, variant, pretrained=False, **{**_VARIANTS[variant], **kwargs})


@register_model
def manet(pretrained: bool = False, **kwargs: Any) -> MANet:
    """MA-Net-style global multi-scale + local attention network at full width (64x64 input)."""
    return _create_manet("manet", pretrained=pretrained, **kwargs)


@register_model
def manet_slim(pretrained: bool = False, **kwargs: Any) -> MANet:
    """The MA-Net-style network at a quarter of the widths: trains quickly on a CPU at 48-64 px."""
    return _create_manet("manet_slim", pretrained=pretrained, **kwargs)


@register_model
def manet_pool_slim(pretrained: bool = False, **kwargs: Any) -> MANet:
    """``manet_slim`` with a max-pool trunk (``trunk="pool"``) for 48-64 px faces; train it with precise BatchNorm."""
    return _create_manet("manet_pool_slim", pretrained=pretrained, **kwargs)


@register_model
def manet_tiny(pretrained: bool = False, **kwargs: Any) -> MANet:
    """A small MA-Net-style network for tests."""
    return _create_manet("manet_tiny", pretrained=pretrained, **kwargs)
