"""The features before the classifier: one definition for every part of cfer.

Distillation, the few-shot episodes, iCaRL's feature extractor and herding all read a
model's pre-logit features through :func:`pre_logits`, the timm feature API
(``forward_features`` then ``forward_head(..., pre_logits=True)``).

Example:
    >>> import torch, timm, cfer.models
    >>> net = timm.create_model("cfer_tiny", num_classes=7)
    >>> pre_logits(net, torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 16])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["pre_logits"]


def pre_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model.forward_head(model.forward_features(x), pre_logits=True)``.

    Raises:
        TypeError: If the model lacks the timm feature API (name the fix).
    """
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise TypeError(f"{type(model).__name__} has no forward_features/forward_head (the timm feature API); "
                        "use a timm or cfer model, or wrap yours in cfer.continual.growing.GrowingClassifier")
    return model.forward_head(model.forward_features(x), pre_logits=True)
