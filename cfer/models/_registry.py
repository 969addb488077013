"""Backbones by name (cfer's and timm's) and local weight files.

Example:
    >>> from cfer.models import create_backbone
    >>> net = create_backbone("resemotenet_slim")
    >>> net.num_features
    256
"""

from __future__ import annotations

import difflib
import inspect
import logging
from pathlib import Path

import torch
from torch import nn

__all__ = ["CFER_MODELS", "create_backbone", "load_weights"]

logger = logging.getLogger(__name__)

CFER_MODELS = ("resemotenet", "resemotenet_slim", "cfer_tiny")
"""The models cfer registers with timm."""


def create_backbone(name: str, *, in_chans: int = 3, img_size: int | None = None,
                    weights: str | Path | None = None, **kwargs) -> nn.Module:  # noqa: ANN003
    """A feature extractor: ``timm.create_model(name, num_classes=0, ...)``, never downloading.

    Args:
        name: A cfer model (:data:`CFER_MODELS`) or any timm model name.
        in_chans: Input channels (1 grey, 3 RGB).
        img_size: Input side, passed to models that take it (ViTs); ignored by CNNs.
        weights: Optional local weight file (see :func:`load_weights`).
        **kwargs: Passed to ``timm.create_model`` (e.g. ``drop_rate``).

    Returns:
        A module with ``forward_features``, ``forward_head(pre_logits=True)`` and
        ``num_features``; ``forward`` returns pooled features.

    Raises:
        ValueError: For an unknown name (with the closest timm names).
    """
    import timm

    import cfer.models  # noqa: F401 - registers cfer's models

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        raise ValueError(f"unknown model {name!r}; cfer's models: {list(CFER_MODELS)}; close timm names: {close}")
    if kwargs.pop("pretrained", False):
        raise ValueError("cfer never downloads weights: pass weights=PATH to a local file instead of pretrained=True")
    entry = timm.models.model_entrypoint(name)
    extra = {}
    if img_size is not None and name not in CFER_MODELS:
        # ViTs and other fixed-grid models take img_size; CNNs do not need it.
        try:
            probe = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, img_size=img_size,
                                      **kwargs)
            model = probe
        except TypeError:
            model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
    else:
        model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs, **extra)
    del entry
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = False) -> dict:
    """Load a local checkpoint into ``model``, safely.

    The file is read with ``torch.load(..., weights_only=True)`` (or safetensors), so a
    file carrying pickled code is refused. Accepts a raw state dict or one stored under
    ``"state_dict"`` or ``"model"``; classifier weights whose shapes do not match (a
    1000-class ImageNet head) are dropped.

    Args:
        model: The module to fill.
        path: ``.pt``/``.pth``/``.bin`` or ``.safetensors`` file.
        strict: Fail on missing or unexpected keys.

    Returns:
        ``{"missing": [...], "unexpected": [...], "dropped": [...]}``.

    Raises:
        FileNotFoundError: If there is no such file.
        ValueError: If the file carries pickled objects or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - UnpicklingError and friends
            raise ValueError(f"{path} carries pickled Python objects and is refused for safety (weights_only=True "
                             f"failed: {type(exc).__name__}); save a plain state_dict instead") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors")
    own = model.state_dict()
    dropped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in dropped}
    result = model.load_state_dict(state, strict=strict)
    info = {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys), "dropped": dropped}
    if dropped:
        logger.info("dropped %d tensors with other shapes (e.g. a classifier): %s", len(dropped), dropped[:4])
    if info["missing"]:
        logger.warning("%d weights missing from %s (kept at initialisation): %s", len(info["missing"]), path,
                       info["missing"][:4])
    return info


_ = inspect  # kept for signature checks in future model types
