"""ResEmoteNet for 64x64 faces, registered with timm, plus slim and tiny variants.

ResEmoteNet (A. K. Roy, H. K. Kathania, A. Sharma, A. Dey, Md. S. A. Ansari, 2024,
"ResEmoteNet: Bridging Accuracy and Loss Reduction in Facial Emotion Recognition") is a
stem of three convolution / batch-norm / ReLU / max-pool blocks, a squeeze-and-excitation
block that re-weights the stem's channels, residual blocks that widen the features, and
global pooling into a small MLP classifier. This file writes that structure in timm's
conventions (``forward_features`` / ``forward_head(pre_logits=...)`` / ``num_features``
/ ``reset_classifier``) with a width multiplier:

=====================  ======================  ==========================================
name                   widths (stem / res)     use
=====================  ======================  ==========================================
``resemotenet``        64-128-256 / 512-1024   the published width (its last residual
                       -2048                   stage is 2048 wide)
``resemotenet_slim``   16-32-64 / 128-256      trains in minutes on a 2-core CPU
``cfer_tiny``          8-16-16 / 32            tests
=====================  ======================  ==========================================

Nothing is ever downloaded: ``pretrained=True`` raises; load a local file with
:func:`cfer.models.load_weights`.

Example:
    >>> import timm, torch, cfer.models
    >>> net = timm.create_model("resemotenet_slim", num_classes=7)
    >>> net(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 7])
"""

from __future__ import annotations

from typing import Sequence

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["ResEmoteNet"]


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> bottleneck MLP -> sigmoid gates."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(g))))


def _norm(kind: str, channels: int, momentum: float = 0.1) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, momentum=momentum)
    if kind == "group":
        return nn.GroupNorm(min(8, channels // 4) or 1, channels)
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a projected shortcut (stride 2 halves the map)."""

    def __init__(self, cin: int, cout: int, stride: int = 2, norm: str = "batch", momentum: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, cout, momentum)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, cout, momentum)
        self.shortcut = nn.Identity() if (cin == cout and stride == 1) else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout, momentum))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


def _stem_block(cin: int, cout: int, norm: str = "batch", momentum: float = 0.1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), _norm(norm, cout, momentum), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


class ResEmoteNet(nn.Module):
    """ResEmoteNet with timm's model interface.

    Args:
        stem_widths: Channels of the three stem blocks.
        res_widths: Channels of the residual stages.
        num_classes: Classifier outputs; 0 gives pooled features from ``forward``.
        in_chans: 1 (grey) or 3 (RGB).
        hidden: Width of the classifier's hidden layer (0: a single linear layer).
        drop_rate: Dropout before the classifier layers.
        se_reduction: Squeeze-and-excitation bottleneck ratio.
        norm: ``"batch"`` (the published choice) or ``"group"`` normalisation. Group norm
            has no running statistics, so a model trained for a few epochs on a small
            experience behaves the same in train and eval mode, and replayed or distilled
            batches do not shift any statistics.
    """

    def __init__(
        self,
        stem_widths: Sequence[int] = (64, 128, 256),
        res_widths: Sequence[int] = (512, 1024, 2048),
        num_classes: int = 7,
        in_chans: int = 3,
        hidden: int = 256,
        drop_rate: float = 0.2,
        se_reduction: int = 16,
        global_pool: str = "avg",
        norm: str = "batch",
        bn_momentum: float = 0.1,
        **kwargs,  # noqa: ANN003 - timm passes pretrained_cfg and friends
    ) -> None:
        super().__init__()
        unknown = set(kwargs) - {"pretrained_cfg", "pretrained_cfg_overlay", "img_size"}
        if unknown:
            raise TypeError(f"ResEmoteNet got unexpected arguments {sorted(unknown)}")
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.global_pool = global_pool
        self.hidden = hidden
        self.bn_momentum = bn_momentum
        chans = [in_chans, *stem_widths]
        self.stem = nn.Sequential(*[_stem_block(a, b, norm, bn_momentum) for a, b in zip(chans[:-1], chans[1:])])
        self.se = SqueezeExcite(stem_widths[-1], se_reduction)
        widths = [stem_widths[-1], *res_widths]
        self.stages = nn.Sequential(*[ResidualBlock(a, b, stride=2 if i else 1, norm=norm, momentum=bn_momentum)
                                      for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))])
        self.num_features = self.head_hidden_size = widths[-1]
        self.cam_layer = self.stages[-1]  # where Grad-CAM reads (cfer.explain)
        self.feature_info = [dict(num_chs=widths[-1], reduction=8 * 2 ** (len(res_widths) - 1), module="stages")]
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = self._make_classifier(num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        if self.hidden <= 0:
            return nn.Linear(self.num_features, num_classes)
        return nn.Sequential(nn.Linear(self.num_features, self.hidden), nn.ReLU(inplace=True),
                             nn.Dropout(self.drop_rate), nn.Linear(self.hidden, num_classes))

    # -- timm interface ----------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.classifier = self._make_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.se(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs) -> dict:  # noqa: ANN003
    return {"num_classes": 7, "input_size": (3, 64, 64), "pool_size": (2, 2), "crop_pct": 1.0,
            "interpolation": "bilinear", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
            "first_conv": "stem.0.0", "classifier": "classifier", **kwargs}


default_cfgs = generate_default_cfgs({"resemotenet": _cfg(), "resemotenet_slim": _cfg(), "cfer_tiny": _cfg()})

_VARIANTS = {
    "resemotenet": dict(stem_widths=(64, 128, 256), res_widths=(512, 1024, 2048), hidden=256),
    "resemotenet_slim": dict(stem_widths=(16, 32, 64), res_widths=(128, 256), hidden=64, se_reduction=8,
                             bn_momentum=0.5),
    "cfer_tiny": dict(stem_widths=(8, 16, 16), res_widths=(32,), hidden=0, se_reduction=4, drop_rate=0.0,
                      bn_momentum=0.5),
}


def _create_resemotenet(variant: str, pretrained: bool = False, **kwargs) -> ResEmoteNet:  # noqa: ANN003
    if pretrained:
        raise ValueError(f"cfer never downloads weights: create {variant!r} with pretrained=False and load a local "
                         "file with cfer.models.load_weights(model, path)")
    args = {**_VARIANTS[variant], **kwargs}
    return build_model_with_cfg(ResEmoteNet, variant, pretrained=False, **args)


@register_model
def resemotenet(pretrained: bool = False, **kwargs) -> ResEmoteNet:  # noqa: ANN003
    """ResEmoteNet at the published width (64x64 input)."""
    return _create_resemotenet("resemotenet", pretrained=pretrained, **kwargs)


@register_model
def resemotenet_slim(pretrained: bool = False, **kwargs) -> ResEmoteNet:  # noqa: ANN003
    """ResEmoteNet with about 1/16 of the channels: trains quickly on a CPU."""
    return _create_resemotenet("resemotenet_slim", pretrained=pretrained, **kwargs)


@register_model
def cfer_tiny(pretrained: bool = False, **kwargs) -> ResEmoteNet:  # noqa: ANN003
    """A few-thousand-parameter model for tests."""
    return _create_resemotenet("cfer_tiny", pretrained=pretrained, **kwargs)
