"""Grad-CAM maps through pytorch-grad-cam, with the target layer found for you.

``explain(model, images)`` returns one map per image in [0, 1] at image size. Methods
come from pytorch-grad-cam by name (:data:`METHODS`); the target layer is chosen
automatically for timm CNNs (their last feature stage), ViTs (last block, with the
token-to-grid reshape) and cfer's models, or given by module or dotted name. Hooks are
released afterwards, the model's train/eval mode is restored and its parameters'
gradients are cleared, so training can go on right after.

Example:
    >>> import timm, torch
    >>> from cfer.explain.gradcam import explain
    >>> net = timm.create_model("resnet18", num_classes=7)
    >>> maps = explain(net, torch.rand(2, 3, 64, 64), method="gradcam++")   # doctest: +SKIP
    >>> maps.shape, float(maps.min()) >= 0, float(maps.max()) <= 1           # doctest: +SKIP
    ((2, 64, 64), True, True)
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from cfer.explain.methods import METHODS, method_class

__all__ = ["METHODS", "explain", "find_target_layer", "vit_reshape"]

logger = logging.getLogger(__name__)


def _unwrap(model: nn.Module) -> nn.Module:
    """The feature network inside cfer's wrappers (GrowingClassifier -> backbone)."""
    return getattr(model, "backbone", model)


def _is_vit(net: nn.Module) -> bool:
    return hasattr(net, "blocks") and hasattr(net, "patch_embed")


def vit_reshape(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Token sequence ``(B, prefix + h*w, C)`` -> feature map ``(B, C, h, w)`` for a timm ViT."""
    prefix = int(getattr(net, "num_prefix_tokens", 1))

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens[:, prefix:, :]
        side = int(round(grid.shape[1] ** 0.5))
        if side * side != grid.shape[1]:
            raise ValueError(f"cannot reshape {grid.shape[1]} patch tokens into a square grid")
        return grid.reshape(grid.shape[0], side, side, grid.shape[2]).permute(0, 3, 1, 2)

    return reshape


def find_target_layer(model: nn.Module) -> tuple[nn.Module, Callable | None]:
    """The layer a CAM should read, and the reshape transform it needs (or None).

    Order of preference: a ``cam_layer`` attribute (cfer models), the last block's
    ``norm1`` of a ViT (with :func:`vit_reshape`), the module of timm's last
    ``feature_info`` entry, and finally the last ``nn.Conv2d``.

    Raises:
        ValueError: If nothing suitable is found (pass ``target_layers=`` then).
    """
    net = _unwrap(model)
    cam_layer = getattr(net, "cam_layer", None)
    if isinstance(cam_layer, nn.Module):
        return cam_layer, None
    if _is_vit(net):
        return net.blocks[-1].norm1, vit_reshape(net)
    info = getattr(net, "feature_info", None)
    if info:
        try:
            name = info[-1]["module"] if isinstance(info, (list, tuple)) else info.module_name()[-1]
            return net.get_submodule(name), None
        except (AttributeError, KeyError, TypeError, IndexError):
            pass
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        return convs[-1], None
    raise ValueError(f"no convolution or ViT block found in {type(net).__name__}; pass target_layers=[module]")


def _resolve_layers(model: nn.Module, target_layers: Sequence[nn.Module | str]) -> list[nn.Module]:
    layers = []
    modules = dict(model.named_modules())
    ids = {id(m) for m in modules.values()}
    for layer in target_layers:
        if isinstance(layer, str):
            if layer not in modules:
                close = [n for n in modules if n and (layer in n or n in layer)][:5]
                raise ValueError(f"target layer {layer!r} is not in the model; names that look close: {close}; "
                                 "see [n for n, _ in model.named_modules()]")
            layers.append(modules[layer])
        elif isinstance(layer, nn.Module):
            if id(layer) not in ids:
                raise ValueError(f"target layer {type(layer).__name__} is not a submodule of this model; "
                                 "pass one of model.modules() (or its dotted name)")
            layers.append(layer)
        else:
            raise TypeError(f"target layers must be modules or dotted names, got {type(layer).__name__}")
    return layers


def explain(
    model: nn.Module,
    images: torch.Tensor,
    *,
    method: str = "gradcam",
    targets: Sequence[int | Callable] | int | None = None,
    target_layers: Sequence[nn.Module | str] | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Class activation maps for a batch of images.

    Args:
        model: A classifier (timm model, cfer model, GrowingClassifier, ...).
        images: ``(B, C, H, W)`` float tensor.
        method: A name from :data:`METHODS`.
        targets: Class per image (ints or pytorch-grad-cam target callables), one int for
            all images, or None for each image's predicted class.
        target_layers: Modules or dotted names; default: :func:`find_target_layer`.
        batch_size: Images per CAM pass.

    Returns:
        float32 array ``(B, H, W)``, each map min-max scaled to [0, 1].

    Raises:
        ValueError: Unknown method, a target layer not in the model, or bad targets.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = method_class(method)
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    reshape = None
    if target_layers is None:
        layer, reshape = find_target_layer(model)
        layers = [layer]
    else:
        layers = _resolve_layers(model, target_layers)
        if _is_vit(_unwrap(model)):
            reshape = vit_reshape(_unwrap(model))
    n = len(images)
    if isinstance(targets, (int, np.integer)):
        targets = [int(targets)] * n
    if targets is not None and len(targets) != n:
        raise ValueError(f"{n} images but {len(targets)} targets; give one target per image or one int")
    was_training = model.training
    requires = [p.requires_grad for p in model.parameters()]
    model.eval()
    out = np.empty((n, images.shape[-2], images.shape[-1]), np.float32)
    try:
        with cam_class(model=model, target_layers=layers, reshape_transform=reshape) as cam:
            for i in range(0, n, batch_size):
                chunk = targets[i:i + batch_size] if targets is not None else None
                tgt = None if chunk is None else [t if callable(t) else ClassifierOutputTarget(int(t)) for t in chunk]
                x = images[i:i + batch_size].detach().clone().requires_grad_(True)
                out[i:i + batch_size] = cam(input_tensor=x, targets=tgt)
    finally:
        model.train(was_training)
        for p, r in zip(model.parameters(), requires):
            p.grad = None
            p.requires_grad_(r)
    return np.clip(out, 0.0, 1.0)
