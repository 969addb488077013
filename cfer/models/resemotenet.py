"""ResEmoteNet for 64x64 faces, registered with timm, plus slim and tiny variants.

ResEmoteNet (A. K. Roy, H. K. Kathania, A. Sharma, A. Dey, Md. S. A. Ansari, 2024,
"ResEmoteNet: Bridging Accuracy and Loss Reduction in Facial Emotion Recognition") is a
stem of three convolution / batch-norm / ReLU / max-pool blocks (64, 128, 256 channels),
a squeeze-and-excitation block that re-weights the stem's channels, residual blocks that
widen the features (256 -> 512 -> 1024 -> 2048), adaptive average pooling and fully
connected layers with dropout. The paper feeds 64x64 RGB faces. This file writes that
structure from the description, in timm's conventions (``forward_features`` /
``forward_head(pre_logits=...)`` / ``num_features`` / ``reset_classifier``):

=====================  =================  ===============  ================  =======================
name                   stem               residual         classifier MLP    use
=====================  =================  ===============  ================  =======================
``resemotenet``        64-128-256         512-1024-2048    1024-512-256      the published widths
``resemotenet_slim``   16-32-64           64-128-256       64                trains fast on a CPU
``cfer_tiny``          8-8-16 (stride 2)  16               none              tests
=====================  =================  ===============  ================  =======================

``resemotenet_slim`` divides the stem's widths by 4 and the residual widths by 8 and keeps
the structure.
``cfer_tiny`` (a few thousand parameters) also strides its first convolution, so a
64x64 batch is cheap; it exists for tests, not for accuracy.

cfer's models have no hub weights: ``pretrained=True`` raises; load a local file with
:func:`cfer.models.load_weights`.

Example:
    >>> import timm, torch, cfer.models
    >>> net = timm.create_model("resemotenet_slim", num_classes=7)
    >>> net(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 7])
    >>> net.forward_head(net.forward_features(torch.rand(2, 3, 64, 64)), pre_logits=True).shape
    torch.Size([2, 256])
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from cfer.models.pooling import MaxPool2x2

__all__ = ["ResEmoteNet"]

_POOLS = ("avg", "max", "avgmax", "")


def _norm(kind: str, channels: int, momentum: float) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, momentum=momentum)
    if kind == "group":
        return nn.GroupNorm(min(8, channels // 4) or 1, channels)
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


class SqueezeExcite(nn.Module):
    """Channel attention: global average -> bottleneck (ReLU) -> sigmoid gates per channel."""

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(g))))


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm layers plus a shortcut (a 1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, *, stride: int, norm: str, momentum: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, cout, momentum)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, cout, momentum)
        self.shortcut: nn.Module = nn.Identity()
        if cin != cout or stride != 1:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout, momentum))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


def _stem_block(cin: int, cout: int, *, stride: int, norm: str, momentum: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _norm(norm, cout, momentum),
                         nn.ReLU(inplace=True), MaxPool2x2())


class ResEmoteNet(nn.Module):
    """ResEmoteNet with timm's model interface.

    Args:
        stem_widths: Channels of the three conv-norm-ReLU-max-pool stem blocks.
        res_widths: Channels of the residual blocks (the first keeps the resolution, each
            later one halves it).
        head_widths: Hidden widths of the classifier MLP (``()``: one linear layer).
        num_classes: Classifier outputs; ``0`` makes the classifier an identity, so
            ``forward`` returns the pooled features (``num_features`` wide).
        in_chans: Input channels (1 grey, 3 RGB).
        drop_rate: Dropout after pooling and between the classifier's layers.
        se_reduction: Squeeze-and-excitation bottleneck ratio.
        stem_stride: Stride of the first convolution (``2`` quarters the cost of the stem).
        global_pool: ``"avg"`` (the published choice), ``"max"``, ``"avgmax"``, or ``""``
            (no pooling: ``forward_head`` returns the map; needs ``num_classes=0``).
        norm: ``"batch"`` (the published choice) or ``"group"``: group norm has no running
            statistics, so train and eval mode agree after a few epochs on a small experience.
        bn_momentum: Batch-norm momentum (higher settles the running statistics sooner).

    Attributes:
        num_features: Width of the pooled features (``forward_head(..., pre_logits=True)``).
        cam_layer: The block Grad-CAM reads (:mod:`cfer.explain`).

    Example:
        >>> net = ResEmoteNet(stem_widths=(4, 8, 8), res_widths=(16,), head_widths=(), num_classes=3)
        >>> net(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        *,
        stem_widths: Sequence[int] = (64, 128, 256),
        res_widths: Sequence[int] = (512, 1024, 2048),
        head_widths: Sequence[int] = (1024, 512, 256),
        num_classes: int = 7,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        se_reduction: int = 16,
        stem_stride: int = 1,
        global_pool: str = "avg",
        norm: str = "batch",
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if len(stem_widths) < 1 or len(res_widths) < 1:
            raise ValueError(f"need at least one stem and one residual width, got {stem_widths} and {res_widths}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1 (1 grey, 3 RGB), got {in_chans}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: pooled features), got {num_classes}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must lie in [0, 1), got {drop_rate}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.head_widths = tuple(int(w) for w in head_widths)
        chans = [in_chans, *stem_widths]
        self.stem = nn.Sequential(*[
            _stem_block(a, b, stride=stem_stride if i == 0 else 1, norm=norm, momentum=bn_momentum)
            for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))])
        self.se = SqueezeExcite(stem_widths[-1], reduction=se_reduction)
        widths = [stem_widths[-1], *res_widths]
        self.stages = nn.Sequential(*[
            ResidualBlock(a, b, stride=2 if i else 1, norm=norm, momentum=bn_momentum)
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))])
        self.num_features = self.head_hidden_size = widths[-1]
        reduction = stem_stride * 2 ** len(stem_widths) * 2 ** (len(res_widths) - 1)
        self.feature_info = [dict(num_chs=widths[-1], reduction=reduction, module="stages")]
        self.global_pool = self._make_pool(global_pool, num_classes)
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = self._make_classifier(num_classes)
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
        """Where Grad-CAM reads: the first residual block, which keeps the stem's 1/8
        resolution (8x8 for 64x64 faces). The last block's map is 2x2 there, too coarse to
        tell facial regions apart: on basic synthetic faces its Grad-CAM localisation score
        was 1.1 (1 = a uniform map) against 1.47 for the first block, and 1.57 with LayerCAM.
        A property, so the block's weights are not stored twice."""
        return self.stages[0]

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        layers: list[nn.Module] = []
        cin = self.num_features
        for width in self.head_widths:
            layers += [nn.Linear(cin, width), nn.ReLU(inplace=True), nn.Dropout(self.drop_rate)]
            cin = width
        if not layers:
            return nn.Linear(cin, num_classes)
        return nn.Sequential(*layers, nn.Linear(cin, num_classes))

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
        self.classifier = self._make_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled features ``(B, num_features, h, w)``."""
        return self.stages(self.se(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, drop out, classify; ``pre_logits=True`` stops before the classifier."""
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs: Any) -> dict:
    return {"url": "", "num_classes": 7, "input_size": (3, 64, 64), "pool_size": (2, 2), "crop_pct": 1.0,
            "interpolation": "bilinear", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
            "first_conv": "stem.0.0", "classifier": "classifier", **kwargs}


default_cfgs = generate_default_cfgs({
    "resemotenet": _cfg(),
    "resemotenet_slim": _cfg(),
    "cfer_tiny": _cfg(pool_size=(4, 4)),
})

_VARIANTS: dict[str, dict[str, Any]] = {
    "resemotenet": dict(stem_widths=(64, 128, 256), res_widths=(512, 1024, 2048), head_widths=(1024, 512, 256)),
    "resemotenet_slim": dict(stem_widths=(16, 32, 64), res_widths=(64, 128, 256), head_widths=(64,),
                             se_reduction=8, bn_momentum=0.5),
    "cfer_tiny": dict(stem_widths=(8, 8, 16), res_widths=(16,), head_widths=(), se_reduction=4, stem_stride=2,
                      drop_rate=0.0, bn_momentum=0.5),
}


def _create_resemotenet(variant: str, pretrained: bool = False, **kwargs: Any) -> ResEmoteNet:
    if pretrained:
        raise ValueError(f"{variant!r} is one of cfer's own models and has no hub weights: create it with "
                         "pretrained=False, then load a local file with cfer.models.load_weights(model, path)")
    return build_model_with_cfg(ResEmoteNet, variant, pretrained=False, **{**_VARIANTS[variant], **kwargs})


@register_model
def resemotenet(pretrained: bool = False, **kwargs: Any) -> ResEmoteNet:
    """ResEmoteNet at the published widths (about 80 M parameters, 64x64 input)."""
    return _create_resemotenet("resemotenet", pretrained=pretrained, **kwargs)


@register_model
def resemotenet_slim(pretrained: bool = False, **kwargs: Any) -> ResEmoteNet:
    """ResEmoteNet with 1/4 of the stem and 1/8 of the residual widths: trains quickly on a CPU."""
    return _create_resemotenet("resemotenet_slim", pretrained=pretrained, **kwargs)


@register_model
def cfer_tiny(pretrained: bool = False, **kwargs: Any) -> ResEmoteNet:
    """A few-thousand-parameter ResEmoteNet-shaped model for tests."""
    return _create_resemotenet("cfer_tiny", pretrained=pretrained, **kwargs)
