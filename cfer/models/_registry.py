"""Backbones by name (cfer's and timm's) and local weight files; nothing is downloaded.

Example:
    >>> from cfer.models import create_backbone
    >>> net = create_backbone("resemotenet_slim")
    >>> net.num_features
    256
"""

from __future__ import annotations

import difflib
import logging
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["CFER_MODELS", "create_backbone", "load_weights"]

logger = logging.getLogger(__name__)

CFER_MODELS = ("resemotenet", "resemotenet_slim", "cfer_tiny")
"""The models cfer registers with timm (full, CPU-friendly, tests)."""

# Classifier module names seen in timm models, for models without a pretrained_cfg.
_COMMON_HEADS = ("fc", "head", "head.fc", "classifier", "last_linear")


def _suggestions(name: str) -> list[str]:
    import timm

    names = list(dict.fromkeys([*CFER_MODELS, *timm.list_models()]))
    close = difflib.get_close_matches(name, names, n=6, cutoff=0.6)
    stem = name.split("_")[0].rstrip("0123456789")
    if len(close) < 3 and len(stem) >= 3:  # e.g. "effnet" -> nothing close; "vit_xyz" -> "vit_*"
        close += [n for n in timm.list_models(f"{stem}*")[:6] if n not in close]
    return close[:6]


def create_backbone(name: str, *, in_chans: int = 3, img_size: int | None = None,
                    weights: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """A feature extractor: ``timm.create_model(name, num_classes=0, pretrained=False, ...)``.

    Works for cfer's models (:data:`CFER_MODELS`) and any timm model. ``forward`` returns
    pooled features ``(B, num_features)``; ``forward_features`` / ``forward_head(x,
    pre_logits=True)`` are the timm feature API that
    :class:`cfer.strategies.growing.GrowingClassifier` builds on.

    Args:
        name: A cfer model or a timm model name (``"resnet18"``, ``"vit_tiny_patch16_224"``).
        in_chans: Input channels (1 grey, 3 RGB).
        img_size: Input side. Passed only to models with a fixed input grid (ViTs and
            the like); convolutional networks take any size and do not need it.
        weights: Optional local weight file, loaded with :func:`load_weights`.
        **kwargs: Passed on to ``timm.create_model`` (e.g. ``drop_rate``); the model
            rejects names it does not know.

    Returns:
        The backbone, with no classifier (``num_classes == 0``).

    Raises:
        ValueError: For an unknown name (listing close timm names and cfer's models), or
            ``pretrained=True`` (cfer never downloads; pass ``weights=PATH``).

    Example:
        >>> vit = create_backbone("vit_tiny_patch16_224", img_size=64)
        >>> vit(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 192])
    """
    import timm

    import cfer.models  # noqa: F401 - registers cfer's models with timm

    if kwargs.pop("pretrained", False):
        raise ValueError("cfer never downloads weights: drop pretrained=True and pass weights=PATH to a local file "
                         "(see cfer.models.load_weights)")
    if "num_classes" in kwargs:
        raise ValueError("create_backbone builds a feature extractor (num_classes=0); use timm.create_model "
                         "for a classifier, or cfer.strategies.growing.GrowingClassifier for a growing head")
    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}; close timm names: {_suggestions(name)}; "
                         f"cfer's models: {list(CFER_MODELS)} (all timm names: timm.list_models())")
    args: dict[str, Any] = dict(pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
    cfg = timm.models.get_pretrained_cfg(name.split(".")[0])
    if img_size is not None:
        if cfg is not None and cfg.fixed_input_size:
            args["img_size"] = img_size
        else:
            logger.debug("%s takes any input size; img_size=%s not passed", name, img_size)
    model = timm.create_model(name, **args)
    if weights is not None:
        load_weights(model, weights)
    return model


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ValueError(f"{path} is a safetensors file but the safetensors package is not installed; "
                             "install it, or save the weights with torch.save(model.state_dict(), 'w.pt')") from None
        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():  # a class or function to import and call
            raise ValueError(f"{path} carries pickled Python objects and is refused for safety (it does not load "
                             "with weights_only=True); save a plain state dict instead: "
                             "torch.save(model.state_dict(), path)") from None
        raise ValueError(f"{path} is not a readable torch checkpoint ({exc})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors (expected a state dict, or one stored under "
                         "'state_dict' or 'model')")
    return state


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    prefixes: list[str] = list(_COMMON_HEADS)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    head = cfg.get("classifier") if isinstance(cfg, dict) else None
    prefixes += [head] if isinstance(head, str) else list(head or ())
    if hasattr(model, "get_classifier"):
        clf = model.get_classifier()
        prefixes += [n for n, m in model.named_modules() if m is clf and n]
    return tuple(p + "." for p in prefixes)


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = False) -> dict[str, list[str]]:
    """Load a local weight file into ``model``, refusing anything but tensors.

    ``.pt``/``.pth``/``.bin`` files are read with ``torch.load(..., map_location="cpu",
    weights_only=True)``: a file that carries pickled Python objects (code) is refused.
    ``.safetensors`` files are read with the ``safetensors`` package when installed. The
    file may hold a raw state dict or one under ``"state_dict"`` or ``"model"`` (a
    ``"module."`` prefix is stripped). Classifier tensors whose shapes differ from the
    model's (a 1000-class ImageNet head) are dropped and stay at initialisation; an RGB
    first convolution is adapted to a grey model (``in_chans=1``). Missing and unexpected
    keys are logged and returned.

    Args:
        model: The module to fill (any timm or cfer model, or a wrapper around one).
        path: The local file.
        strict: Refuse (before loading anything) a file with missing, unexpected or
            dropped keys.

    Returns:
        ``{"missing": [...], "unexpected": [...], "dropped": [...], "adapted": [...]}``:
        model keys the file did not fill, file keys the model lacks, classifier keys
        dropped for their shape, and input-convolution keys adapted to ``in_chans``.

    Raises:
        FileNotFoundError: If there is no such file.
        ValueError: If the file carries pickled objects, holds no tensors, has a
            non-classifier tensor of another shape, or (``strict``) does not match.

    Example:
        >>> net = timm.create_model("cfer_tiny", num_classes=7)                # doctest: +SKIP
        >>> torch.save(net.state_dict(), "tiny.pt")                            # doctest: +SKIP
        >>> load_weights(timm.create_model("cfer_tiny", num_classes=7), "tiny.pt")["missing"]  # doctest: +SKIP
        []
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    state = _read_state(path)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    heads = _classifier_prefixes(model)
    cfg = getattr(model, "pretrained_cfg", None)
    first_conv = cfg.get("first_conv") if isinstance(cfg, dict) else None
    dropped, adapted, wrong = [], [], []
    for key, value in list(state.items()):
        if key not in own or own[key].shape == value.shape:
            continue
        target = own[key].shape
        if key.startswith(heads):
            dropped.append(key)
            del state[key]
        elif (isinstance(first_conv, str) and key == f"{first_conv}.weight" and value.ndim == 4 and len(target) == 4
              and value.shape[0] == target[0] and value.shape[2:] == target[2:]):
            from timm.models import adapt_input_conv

            state[key] = adapt_input_conv(target[1], value.float()).to(value.dtype)
            adapted.append(key)
        else:
            wrong.append(f"{key}: file {tuple(value.shape)} vs model {tuple(target)}")
    if wrong:
        raise ValueError(f"{path} does not fit this model ({len(wrong)} tensors of other shapes, e.g. {wrong[:3]}); "
                         "was it saved from another architecture or width?")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected or dropped):
        raise ValueError(f"{path} does not match the model exactly (strict=True): missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, dropped {dropped[:5]}; pass strict=False to load the rest")
    model.load_state_dict(state, strict=False)
    if dropped:
        logger.info("dropped %d classifier tensors of another shape from %s: %s", len(dropped), path, dropped)
    if adapted:
        logger.info("adapted the input convolution of %s to %d channels: %s", path, own[adapted[0]].shape[1], adapted)
    if missing:
        logger.warning("%d model tensors not in %s (kept at initialisation): %s", len(missing), path, missing[:8])
    if unexpected:
        logger.warning("%d tensors in %s the model does not use (ignored): %s", len(unexpected), path, unexpected[:8])
    return {"missing": missing, "unexpected": unexpected, "dropped": dropped, "adapted": adapted}
