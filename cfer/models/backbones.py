"""Backbones by name: cfer's models and every timm model, as feature extractors.

Nothing is downloaded unless asked for: ``pretrained=True`` or hub weights
(``weights="hf-hub:ORG/NAME"`` or a timm tag) go through timm's own hub loading
(:mod:`cfer.models.hub`: the Hugging Face cache, ``HF_HUB_OFFLINE``); a local file through
:func:`cfer.models.load_weights`.

Example:
    >>> from cfer.models import create_backbone
    >>> net = create_backbone("resemotenet_slim")
    >>> net.num_features
    256
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any, Sequence

from torch import nn

__all__ = ["CFER_MODELS", "ENSEMBLE_PREFIX", "create_backbone", "is_ensemble_arch", "suggestions"]

logger = logging.getLogger(__name__)

CFER_MODELS = ("resemotenet", "resemotenet_slim", "cfer_tiny", "manet", "manet_slim", "manet_pool_slim",
               "manet_tiny", "dualview", "dualview_slim", "dualview_tiny", "vit_face_small", "vit_face_tiny",
               "vit_face_mini", "vit_face_micro")
"""The models cfer registers with timm, per family full, CPU-friendly (``_slim``) and for tests
(``cfer_tiny``, ``_tiny``): ResEmoteNet, the MA-Net-style multi-scale local-attention
network, and the dual-view fusion model; and the face-sized ViTs (8-pixel patches on
64-pixel faces: ``vit_face_small``, ``vit_face_tiny`` at the ViT-Tiny widths, ``vit_face_mini``
for CPU runs, ``vit_face_micro``
for tests), the encoders ``cfer pretrain`` pretrains. None has hub weights."""

ENSEMBLE_PREFIX = "ensemble:"
"""How an ensemble's arch string starts (:mod:`cfer.models.ensemble_arch`)."""


def is_ensemble_arch(arch: object) -> bool:
    """Whether ``arch`` names an ensemble (starts with ``"ensemble:"``; see :mod:`cfer.models.ensemble_arch`)."""
    return isinstance(arch, str) and arch.strip().lower().startswith(ENSEMBLE_PREFIX)


def suggestions(name: str) -> list[str]:
    """Up to six model names close to ``name`` (cfer's and timm's), for error messages."""
    import timm

    names = list(dict.fromkeys([*CFER_MODELS, *timm.list_models()]))
    close = difflib.get_close_matches(name, names, n=6, cutoff=0.6)
    stem = name.split("_")[0].rstrip("0123456789")
    if len(close) < 3 and len(stem) >= 3:  # e.g. "effnet" -> nothing close; "vit_xyz" -> "vit_*"
        close += [n for n in timm.list_models(f"{stem}*")[:6] if n not in close]
    return close[:6]


def create_backbone(name: str, *, in_chans: int = 3, img_size: int | None = None,
                    weights: str | Path | Sequence[str | Path | None] | None = None, pretrained: bool = False,
                    **kwargs: Any) -> nn.Module:
    """A feature extractor: ``timm.create_model(name, num_classes=0, ...)``.

    Works for cfer's models (:data:`CFER_MODELS`), any timm model, and ensembles of them
    (``"ensemble:cfer_tiny+resemotenet_slim@48"``, see :mod:`cfer.models.ensemble`: a
    :class:`~cfer.models.ensemble.LateFusionEnsemble` without heads, whose features are its
    members' features concatenated). ``forward`` returns
    pooled features ``(B, num_features)``; ``forward_features`` / ``forward_head(x,
    pre_logits=True)`` are the timm feature API that
    :class:`cfer.continual.growing.GrowingClassifier` builds on.

    Args:
        name: A cfer model or a timm model name (``"resnet18"``, ``"vit_tiny_patch16_224"``, with
            ``pretrained=True`` also a tagged one, ``"resnet50.a1_in1k"``, or ``"hf-hub:ORG/NAME"``),
            or an ensemble arch string (``"ensemble:NAME[@SIZE]+NAME[@SIZE]..."``).
        in_chans: Input channels (1 grey, 3 RGB).
        img_size: Input side. Passed only to models with a fixed input grid (ViTs and
            the like); convolutional networks take any size and do not need it.
        weights: Optional local weight file, loaded with :func:`load_weights` (for an
            ensemble also a list of one file or None per member); or hub weights for the
            architecture: ``"hf-hub:ORG/NAME[@REV]"`` or a timm tag (``"resnet50.a1_in1k"``),
            loaded by timm (see :mod:`cfer.models.hub`).
        pretrained: Load timm's default hub weights for ``name`` (from the Hugging Face
            cache, downloading them when online and ``HF_HUB_OFFLINE`` is not set); the input
            convolution is adapted to ``in_chans`` and the classifier dropped.
        **kwargs: Passed on to ``timm.create_model`` (e.g. ``drop_rate``); the model
            rejects names it does not know.

    Returns:
        The backbone, with no classifier (``num_classes == 0``).

    Raises:
        ValueError: For an unknown name (listing close timm names and cfer's models), or
            ``pretrained=True`` for one of cfer's own models (they have no hub weights; pass
            ``weights=PATH``).
        cfer.models.hub.HubWeightsError: Hub weights offline without a cached copy (the
            message says how to fetch the file and pass it as a local file).

    Example:
        >>> vit = create_backbone("vit_tiny_patch16_224", img_size=64)
        >>> vit(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 192])
    """
    import timm

    import cfer.models  # noqa: F401 - registers cfer's models with timm

    if "num_classes" in kwargs:
        raise ValueError("create_backbone builds a feature extractor (num_classes=0); use timm.create_model "
                         "for a classifier, or cfer.continual.growing.GrowingClassifier for a growing head")
    if is_ensemble_arch(name):
        from cfer.models.ensemble import create_ensemble

        if pretrained:
            raise ValueError("an ensemble takes no pretrained=True: give each member its weights "
                             "(weights=[FILE_OR_HUB, ...], see cfer.models.ensemble)")
        return create_ensemble(name, num_classes=0, in_chans=in_chans, img_size=img_size, weights=weights, **kwargs)
    from cfer.models.hub import HUB_PREFIX, create_hub_model, is_hub_weights

    hub_weights = weights if is_hub_weights(weights) else None
    if pretrained and weights is not None and hub_weights is None:
        raise ValueError(f"pretrained=True loads hub weights, weights={str(weights)!r} a local file: give one of them")
    if name.startswith(HUB_PREFIX) and not pretrained:
        raise ValueError(f"{name!r} names hub weights: pass pretrained=True, or the architecture's timm name "
                         "with weights=FILE")
    if not name.startswith(HUB_PREFIX) and not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}; close timm names: {suggestions(name)}; "
                         f"cfer's models: {list(CFER_MODELS)} (all timm names: timm.list_models())")
    args: dict[str, Any] = dict(num_classes=0, in_chans=in_chans, **kwargs)
    if img_size is not None:
        if _fixed_input_size(name):
            args["img_size"] = img_size
        else:
            logger.debug("%s takes any input size; img_size=%s not passed", name, img_size)
    if pretrained or hub_weights is not None:
        return create_hub_model(name, weights=hub_weights, **args)
    model = timm.create_model(name, pretrained=False, **args)
    if weights is not None:
        from cfer.models.weights import load_weights

        load_weights(model, weights)
    return model


def _fixed_input_size(name: str) -> bool:
    """Whether the model ``name`` has a fixed input grid (then it takes ``img_size``)."""
    import timm

    from cfer.models.hub import HUB_PREFIX

    if name.startswith(HUB_PREFIX):  # the architecture is in the repository's config.json: ask timm's parser
        try:
            from timm.models._hub import load_model_config_from_hf

            cfg, _, _ = load_model_config_from_hf(name[len(HUB_PREFIX):])
        except Exception:  # noqa: BLE001 - not cached / offline: create_hub_model gives the clear error
            return False
        return bool(cfg.get("fixed_input_size", False))
    cfg = timm.models.get_pretrained_cfg(name.split(".")[0])
    return cfg is not None and bool(cfg.fixed_input_size)
