"""A classifier whose head grows as new classes arrive, around any timm-style backbone.

The backbone is any module with ``forward_features``, ``forward_head(x, pre_logits=True)``
and ``num_features`` (every timm model, and cfer's own models). The head is Avalanche's
:class:`~avalanche.models.IncrementalClassifier`, so any Avalanche strategy grows it at
the start of each experience (``model_adaptation``), keeping the old classes' weights.

Example:
    >>> import timm
    >>> from cfer.continual.growing import GrowingClassifier
    >>> net = GrowingClassifier(backbone=timm.create_model("resnet18", num_classes=0),
    ...                         initial_classes=6)                       # doctest: +SKIP
    >>> net(x).shape, net.forward_head(net.forward_features(x), pre_logits=True).shape  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch
from avalanche.models import DynamicModule, IncrementalClassifier
from torch import nn

from cfer.models.features import pre_logits
from cfer.models.io import read_model_file

__all__ = ["GrowingClassifier", "build_model", "load_model"]


class GrowingClassifier(DynamicModule):
    """Backbone + incremental linear head, with the timm feature API.

    Args:
        backbone: Feature extractor exposing ``forward_features``, ``forward_head`` (with
            ``pre_logits=True``) and ``num_features``. Its own classifier is not used.
        initial_classes: Width of the head before any experience.
        masking: Mask the logits of classes not trained yet (Avalanche's default).

    Attributes:
        num_features: Width of the pre-logit features.
        head: The :class:`~avalanche.models.IncrementalClassifier`.
    """

    def __init__(self, *, backbone: nn.Module, initial_classes: int = 2, masking: bool = True) -> None:
        super().__init__()
        missing = [a for a in ("forward_features", "forward_head", "num_features") if not hasattr(backbone, a)]
        if missing:
            raise TypeError(
                f"backbone {type(backbone).__name__} lacks {missing}; use a timm model or a cfer model "
                "(cfer.models.create_backbone)"
            )
        if initial_classes < 1:
            raise ValueError(f"initial_classes must be >= 1, got {initial_classes}")
        self.backbone = backbone
        self.num_features = int(backbone.num_features)
        # An identity whose output is the pre-logit features: a stable name to hook
        # (Avalanche's herding selection takes a layer name).
        self.pre_logits = nn.Identity()
        self.head = IncrementalClassifier(self.num_features, initial_out_features=initial_classes, masking=masking)

    @property
    def num_classes(self) -> int:
        """Current width of the head."""
        return int(self.head.classifier.out_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled backbone features."""
        return self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the backbone features; with ``pre_logits`` stop before the head."""
        f = self.pre_logits(self.backbone.forward_head(x, pre_logits=True))
        return f if pre_logits else self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logit features of a batch of images."""
        return pre_logits(self, x)

    @torch.no_grad()
    def grow(self, num_classes: int) -> None:
        """Widen the head to ``num_classes`` outputs by hand (old rows are kept, all active)."""
        old = self.head.classifier
        if num_classes < old.out_features:
            raise ValueError(f"the head has {old.out_features} outputs; it can grow, not shrink to {num_classes}")
        if num_classes > old.out_features:
            new = nn.Linear(old.in_features, num_classes).to(old.weight.device)
            new.weight[: old.out_features] = old.weight
            new.bias[: old.out_features] = old.bias
            self.head.classifier = new
        units = torch.ones(num_classes, dtype=torch.int8, device=old.weight.device)
        self.head.active_units = units


def build_model(*, arch: str, num_classes: int, in_chans: int = 3, img_size: int | None = None,
                seed: int = 0, weights: str | Path | None = None) -> nn.Module:
    """A :class:`GrowingClassifier` on a fresh backbone (or one loaded from a local ``weights``
    file), all ``num_classes`` units active."""
    from cfer.models import create_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = create_backbone(arch, in_chans=in_chans, img_size=img_size, weights=weights)
        model = GrowingClassifier(backbone=backbone, initial_classes=num_classes)
    model.grow(num_classes)
    return model


def load_model(path: str | Path, *, img_size: int | None = None) -> tuple[nn.Module, tuple[str, ...]]:
    """Rebuild a classifier saved by :func:`cfer.models.io.save_model`; returns ``(model, classes)``.

    What was saved as ``extra`` (e.g. ``{"image_size": 48}``) is on ``model.cfer_meta``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is not a cfer model file or carries pickled objects.

    Example:
        >>> model, classes = load_model("runs/demo/teacher.pt")       # doctest: +SKIP
    """
    payload = read_model_file(path)
    if img_size is None:  # fixed-grid models (ViTs) are rebuilt at the size they were trained at
        img_size = (payload.get("extra") or {}).get("image_size")
    model = build_model(arch=payload["arch"], num_classes=payload["num_classes"], in_chans=payload["in_chans"],
                        img_size=img_size)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    model.cfer_meta = dict(payload.get("extra") or {})
    return model, tuple(payload["classes"])
