"""Models registered with timm (ResEmoteNet and friends) and backbone helpers.

Importing ``cfer.models`` registers ``resemotenet``, ``resemotenet_slim`` and
``cfer_tiny`` with timm, so ``timm.create_model("resemotenet", num_classes=7)`` works.
Nothing here downloads weights or imports Avalanche.

Example:
    >>> import timm, cfer.models
    >>> timm.create_model("cfer_tiny", num_classes=7).num_classes
    7
"""

from cfer.models import resemotenet as _resemotenet  # noqa: F401 - registration
from cfer.models._registry import CFER_MODELS, create_backbone, load_weights
from cfer.models.resemotenet import ResEmoteNet

__all__ = ["CFER_MODELS", "ResEmoteNet", "create_backbone", "load_weights"]
