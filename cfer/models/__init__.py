"""Models registered with timm (ResEmoteNet and friends), backbones by name, and the one
safe loader for model files, weight files and checkpoints.

Importing ``cfer.models`` registers cfer's models (:data:`CFER_MODELS`: ``resemotenet``,
``manet`` and ``dualview``, each with ``_slim`` and tiny variants, and the face-sized ViTs
``vit_face_*``) with timm, so
``timm.create_model("resemotenet", num_classes=7)`` works.
Late-fusion ensembles of any of these (:mod:`cfer.models.ensemble`) are built from arch
strings such as ``"ensemble:cfer_tiny+resemotenet_slim@48"``.
Nothing here imports Avalanche or downloads weights unless asked for (``pretrained=True``
or hub weights, through timm's hub loading: :mod:`cfer.models.hub`).

Example:
    >>> import timm, cfer.models
    >>> timm.create_model("cfer_tiny", num_classes=7).num_classes
    7
"""

# Importing resemotenet, manet, dualview and vit_face registers their models with timm.
from cfer.models import resemotenet as _resemotenet  # noqa: F401
from cfer.models import temporal as _temporal  # noqa: F401
from cfer.models import vit_face as _vit_face  # noqa: F401
from cfer.models.backbones import CFER_MODELS, create_backbone, is_ensemble_arch
from cfer.models.dualview import DualViewFusion, create_dualview
from cfer.models.ensemble import LateFusionEnsemble, create_ensemble
from cfer.models.ensemble_loss import EnsembleCriterion, criterion_for, ensemble_loss
from cfer.models.features import FeatureTap, find_feature_layer, pre_logits
from cfer.models.freeze import freeze_stages
from cfer.models.hub import HubWeightsError, is_hub_weights
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
from cfer.models.temporal import TemporalFusionNet
from cfer.models.weights import load_weights

__all__ = ["CFER_MODELS", "ResEmoteNet", "MANet", "DualViewFusion", "create_dualview", "create_backbone",
           "load_weights", "pre_logits", "find_feature_layer", "FeatureTap", "UnsafeFileError",
           "LateFusionEnsemble", "create_ensemble", "is_ensemble_arch", "EnsembleCriterion", "ensemble_loss",
           "criterion_for", "HubWeightsError", "is_hub_weights", "freeze_stages",
           "safe_load", "save_model", "read_model_file", "save_checkpoint", "load_checkpoint",
           "TemporalFusionNet"]
