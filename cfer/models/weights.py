"""Load a local weight file into a backbone, refusing anything but tensors.

Example:
    >>> import timm, torch, cfer.models
    >>> net = timm.create_model("cfer_tiny", num_classes=7)          # doctest: +SKIP
    >>> torch.save(net.state_dict(), "tiny.pt")                      # doctest: +SKIP
    >>> load_weights(timm.create_model("cfer_tiny", num_classes=7), "tiny.pt")["missing"]  # doctest: +SKIP
    []
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from cfer.models.io import safe_load

__all__ = ["load_weights"]

logger = logging.getLogger(__name__)

# Classifier module names seen in timm models, for models without a pretrained_cfg.
_COMMON_HEADS = ("fc", "head", "head.fc", "classifier", "last_linear")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ValueError(f"{path} is a safetensors file but the safetensors package is not installed; "
                             "install it, or save the weights with torch.save(model.state_dict(), 'w.pt')") from None
        return load_file(str(path), device="cpu")
    state = safe_load(path, what="weight file",
                      fix="Save a plain state dict instead: torch.save(model.state_dict(), path)")
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


def _is_position_grid(model: nn.Module, key: str, value: torch.Tensor, target: torch.Size) -> bool:
    """Whether ``key`` is a timm ViT's absolute position embedding saved for another token grid."""
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    return (key == "pos_embed" and grid is not None and value.ndim == 3 and len(target) == 3
            and value.shape[0] == target[0] == 1 and value.shape[2] == target[2])


def _resample_positions(model: nn.Module, value: torch.Tensor, target: torch.Size) -> torch.Tensor:
    import math

    from timm.layers import resample_abs_pos_embed

    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 0))
    side = math.isqrt(value.shape[1] - prefix)
    if side * side != value.shape[1] - prefix:
        raise ValueError(f"pos_embed of {value.shape[1]} tokens is not a square grid plus {prefix} prefix tokens; "
                         "load it into a model built with the file's img_size")
    new = resample_abs_pos_embed(value.float(), new_size=list(model.patch_embed.grid_size), old_size=[side, side],
                                 num_prefix_tokens=prefix)
    if new.shape != target:
        raise ValueError(f"pos_embed resampled to {tuple(new.shape)}, the model has {tuple(target)}")
    return new.to(value.dtype)


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = False,
                 min_match: float = 0.5) -> dict[str, list[str]]:
    """Load a local weight file into ``model``, refusing anything but tensors.

    ``.pt``/``.pth``/``.bin`` files are read with ``torch.load(..., map_location="cpu",
    weights_only=True)``: a file that carries pickled Python objects (code) is refused.
    ``.safetensors`` files are read with the ``safetensors`` package when installed. The
    file may hold a raw state dict or one under ``"state_dict"`` or ``"model"`` (a
    ``"module."`` prefix is stripped). Classifier tensors whose shapes differ from the
    model's (a 1000-class ImageNet head) are dropped and stay at initialisation; an RGB
    first convolution is adapted to a grey model (``in_chans=1``) and a grey one to a colour
    model (the filter spread over the channels: a grey image gives the same response), and a
    ViT's position embedding saved at another input size (an encoder pretrained on 64-pixel
    faces, used at 48) is resampled to the model's token grid (timm's ``resample_abs_pos_embed``).
    Missing and unexpected keys are logged and returned.

    Args:
        model: The module to fill (any timm or cfer model, or a wrapper around one).
        path: The local file.
        strict: Refuse (before loading anything) a file with missing, unexpected or
            dropped keys.
        min_match: The share of the model's tensors outside its classifier that the file
            must fill (default half); below it the file is refused, listing what matched,
            instead of training "as if" the weights had been used. ``0`` loads any overlap.

    Returns:
        ``{"missing": [...], "unexpected": [...], "dropped": [...], "adapted": [...]}``:
        model keys the file did not fill, file keys the model lacks, classifier keys
        dropped for their shape, and input-convolution / position-embedding keys adapted to
        ``in_chans`` / the token grid.

    Raises:
        FileNotFoundError: If there is no such file.
        ValueError: If the file carries pickled objects, holds no tensors, has a
            non-classifier tensor of another shape, fills less than ``min_match`` of the
            model, or (``strict``) does not match.

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
    # One name, or several (a model with two encoders): each an input convolution.
    input_convs = {f"{c}.weight" for c in ([first_conv] if isinstance(first_conv, str) else list(first_conv or ()))}
    dropped, adapted, wrong = [], [], []
    for key, value in list(state.items()):
        if key not in own or own[key].shape == value.shape:
            continue
        target = own[key].shape
        if key.startswith(heads):
            dropped.append(key)
            del state[key]
        elif _is_position_grid(model, key, value, target):
            state[key] = _resample_positions(model, value, target)
            adapted.append(key)
        elif (key in input_convs and value.ndim == 4 and len(target) == 4
              and value.shape[0] == target[0] and value.shape[2:] == target[2:]):
            from timm.models import adapt_input_conv

            if value.shape[1] == 1:  # a grey file into a colour model: each channel sees a third of the grey filter
                state[key] = value.repeat(1, target[1], 1, 1) / target[1]
            else:
                state[key] = adapt_input_conv(target[1], value.float()).to(value.dtype)
            adapted.append(key)
        else:
            wrong.append(f"{key}: file {tuple(value.shape)} vs model {tuple(target)}")
    if wrong:
        raise ValueError(f"{path} does not fit this model ({len(wrong)} tensors of other shapes, e.g. {wrong[:3]}); "
                         "was it saved from another architecture or width?")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    body = [k for k in own if not k.startswith(heads)]
    filled = [k for k in body if k in state]
    if not 0 <= min_match <= 1:
        raise ValueError(f"min_match must lie in [0, 1], got {min_match!r}")
    if body and len(filled) < min_match * len(body):
        raise ValueError(f"{path} fills {len(filled)} of the model's {len(body)} tensors (outside the classifier; "
                         f"at least {min_match:.0%} needed), so it is refused: matched {filled[:5]}; the file has "
                         f"{list(state)[:3]}..., the model {body[:3]}... Was it saved from another architecture? "
                         "Give weights of this architecture (--arch), or pass min_match=0 to load the overlap")
    if strict and (missing or unexpected or dropped):
        raise ValueError(f"{path} does not match the model exactly (strict=True): missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, dropped {dropped[:5]}; pass strict=False to load the rest")
    model.load_state_dict(state, strict=False)
    if dropped:
        logger.info("dropped %d classifier tensors of another shape from %s: %s", len(dropped), path, dropped)
    if adapted:
        logger.info("adapted %s of %s to this model (input channels, token grid)", adapted, path)
    if missing:
        logger.warning("%d model tensors not in %s (kept at initialisation): %s", len(missing), path, missing[:8])
    if unexpected:
        logger.warning("%d tensors in %s the model does not use (ignored): %s", len(unexpected), path, unexpected[:8])
    return {"missing": missing, "unexpected": unexpected, "dropped": dropped, "adapted": adapted}
