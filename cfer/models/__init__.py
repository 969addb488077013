"""Models registered with timm (ResEmoteNet and friends), backbones by name, and the one
safe loader for model files, weight files and checkpoints.

Importing ``cfer.models`` registers cfer's models (:data:`CFER_MODELS`: ``resemotenet``,
``manet`` and ``dualview``, each with ``_slim`` and tiny variants) with timm, so
``timm.create_model("resemotenet", num_classes=7)`` works.
Nothing here downloads weights or imports Avalanche.

Example:
    >>> import timm, cfer.models
    >>> timm.create_model("cfer_tiny", num_classes=7).num_classes
    7
"""

# Importing resemotenet, manet and dualview registers their models with timm.
from cfer.models import resemotenet as _resemotenet  # noqa: F401
from cfer.models.backbones import CFER_MODELS, create_backbone
from cfer.models.dualview import DualViewFusion, create_dualview
from cfer.models.features import FeatureTap, find_feature_layer, pre_logits
from cfer.models.io import (
    UnsafeFileError,
    load_checkpoint,
    read_model_file,
    safe_load,
    save_checkpoint,
    save_model,
)
from cfer.models.manet import MANet
from cfer.models.resemotenet import ResEmoteNet
from cfer.models.weights import load_weights

__all__ = ["CFER_MODELS", "ResEmoteNet", "MANet", "DualViewFusion", "create_dualview", "create_backbone",
           "load_weights", "pre_logits", "find_feature_layer", "FeatureTap", "UnsafeFileError",
           "safe_load", "save_model", "read_model_file", "save_checkpoint", "load_checkpoint"]
