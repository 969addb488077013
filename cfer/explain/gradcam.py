"""Grad-CAM maps through pytorch-grad-cam, with the target layer found for you.

``explain(model, images)`` returns one map per image in [0, 1] at image size. Methods
come from pytorch-grad-cam by name (:data:`METHODS`); the target layer is chosen
automatically for timm CNNs (their last feature stage), timm ViTs (last block, with the
token-to-grid reshape) and cfer's models, or given by module or dotted name. For a
transformer cfer does not recognise (a torchvision ``vit_b_16``, your own), name a layer
whose output is the token sequence and pass ``reshape_transform=token_reshape()``
(tokens ``(B, 1 + h*w, C)`` -> map ``(B, C, h, w)``) or your own callable. Hooks are
released afterwards, the model's train/eval mode is restored and its parameters'
gradients are cleared, so training can go on right after.

Integer targets are checked against the model's number of outputs before any map is
computed. A map that comes back all zero (the target class gets no positive evidence
from the target layer: a Grad-CAM of that layer has nothing to show) stays all zero, is
logged as a warning naming the items, and :func:`empty_maps` flags such maps.

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
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from cfer.explain.methods import METHODS, method_class
from cfer.models.ensemble import LateFusionEnsemble

__all__ = ["METHODS", "cam_session", "empty_maps", "explain", "find_target_layer", "token_reshape", "vit_reshape"]

logger = logging.getLogger(__name__)


def _unwrap(model: nn.Module) -> nn.Module:
    """The feature network inside cfer's wrappers (GrowingClassifier -> backbone)."""
    return getattr(model, "backbone", model)


def _is_vit(net: nn.Module) -> bool:
    return hasattr(net, "blocks") and hasattr(net, "patch_embed")


def token_reshape(*, prefix_tokens: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """Token sequence ``(B, prefix_tokens + h*w, C)`` -> feature map ``(B, C, h, w)`` (square grid).

    The ``reshape_transform`` a CAM of a transformer block needs: drop the class (and any
    other prefix) tokens, lay the patch tokens out on their grid.

    Args:
        prefix_tokens: Tokens before the patch tokens (1: the class token of a ViT).

    Example:
        >>> token_reshape(prefix_tokens=1)(torch.rand(2, 1 + 16, 8)).shape
        torch.Size([2, 8, 4, 4])
    """
    if prefix_tokens < 0:
        raise ValueError(f"prefix_tokens must be >= 0, got {prefix_tokens}")

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3:
            raise ValueError(f"token_reshape expects tokens (B, N, C), got shape {tuple(tokens.shape)}")
        grid = tokens[:, prefix_tokens:, :]
        side = int(round(grid.shape[1] ** 0.5))
        if side * side != grid.shape[1]:
            raise ValueError(f"cannot reshape {grid.shape[1]} patch tokens into a square grid "
                             f"(prefix_tokens={prefix_tokens}); pass your own reshape_transform")
        return grid.reshape(grid.shape[0], side, side, grid.shape[2]).permute(0, 3, 1, 2)

    return reshape


def vit_reshape(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`token_reshape` for a timm ViT (its ``num_prefix_tokens``)."""
    return token_reshape(prefix_tokens=int(getattr(net, "num_prefix_tokens", 1)))


def empty_maps(maps: np.ndarray) -> np.ndarray:
    """Which maps are all zero (no positive evidence for the target), as a bool ``(B,)``.

    Example:
        >>> empty_maps(np.stack([np.zeros((2, 2)), np.eye(2)])).tolist()
        [True, False]
    """
    maps = np.asarray(maps)
    return ~(maps.reshape(len(maps), -1) > 0).any(1)


def find_target_layer(model: nn.Module) -> tuple[nn.Module, Callable | None]:
    """The layer a CAM should read, and the reshape transform it needs (or None).

    Order of preference: a ``cam_layer`` attribute (cfer models), the last block's
    ``norm1`` of a ViT (with :func:`vit_reshape`), the module of timm's last
    ``feature_info`` entry, and finally the last ``nn.Conv2d``.

    Raises:
        ValueError: If nothing suitable is found (pass ``target_layers=`` then).
    """
    if isinstance(model, LateFusionEnsemble):
        raise ValueError("an ensemble has one target layer per member: use cfer.explain.ensemble."
                         "member_target_layers(model), or explain(model, images), which fuses the members' maps")
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


@contextmanager
def cam_session(model: nn.Module) -> Iterator[None]:
    """Eval mode for a CAM pass; afterwards the model's train/eval mode and ``requires_grad``
    flags are as they were and its parameters hold no gradient (training can go on)."""
    was_training = model.training
    requires = [p.requires_grad for p in model.parameters()]
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
        for p, r in zip(model.parameters(), requires):
            p.grad = None
            p.requires_grad_(r)


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
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Class activation maps for a batch of images.

    A :class:`~cfer.models.ensemble.LateFusionEnsemble` (without ``target_layers``) gets
    the fused map of :func:`cfer.explain.ensemble.explain_ensemble`: its members' maps,
    each for its own head, averaged with the fusion weights.

    Args:
        model: A classifier (timm model, cfer model, GrowingClassifier, ensemble, ...).
        images: ``(B, C, H, W)`` float tensor.
        method: A name from :data:`METHODS`.
        targets: Class per image (ints or pytorch-grad-cam target callables), one int for
            all images, or None for each image's predicted class.
        target_layers: Modules or dotted names; default: :func:`find_target_layer`.
        reshape_transform: Turns the target layer's output into ``(B, C, h, w)``, passed
            to pytorch-grad-cam's CAM: needed when the output is a token sequence of a
            transformer cfer does not recognise (e.g. ``token_reshape(prefix_tokens=1)``
            for a torchvision ViT block). Default: :func:`vit_reshape` for a timm ViT,
            none otherwise.
        batch_size: Images per CAM pass.

    Returns:
        float32 array ``(B, H, W)``, each map min-max scaled to [0, 1]; a map with no
        positive evidence is all zero (logged; see :func:`empty_maps`).

    Raises:
        ValueError: Unknown method, a target layer not in the model, targets outside the
            model's outputs (the message gives their number), or token outputs without a
            ``reshape_transform``.

    Example:
        >>> from torchvision.models import VisionTransformer
        >>> vit = VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
        ...                         hidden_dim=16, mlp_dim=32, num_classes=3)
        >>> maps = explain(vit, torch.rand(2, 3, 32, 32), targets=[0, 2],
        ...                target_layers=["encoder.layers.encoder_layer_0.ln_1"],
        ...                reshape_transform=token_reshape(prefix_tokens=1))      # doctest: +SKIP
        >>> maps.shape                                                             # doctest: +SKIP
        (2, 32, 32)
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = method_class(method)
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if isinstance(model, LateFusionEnsemble) and target_layers is None and reshape_transform is None:
        from cfer.explain.ensemble import explain_ensemble

        return explain_ensemble(model, images, method=method, targets=targets, batch_size=batch_size)["fused"]
    reshape = None
    if target_layers is None:
        layer, reshape = find_target_layer(model)
        layers = [layer]
    else:
        layers = _resolve_layers(model, target_layers)
        if _is_vit(_unwrap(model)):
            reshape = vit_reshape(_unwrap(model))
    if reshape_transform is not None:
        if not callable(reshape_transform):
            raise TypeError(f"reshape_transform must be a callable, got {type(reshape_transform).__name__}")
        reshape = reshape_transform
    n = len(images)
    if isinstance(targets, (int, np.integer)):
        targets = [int(targets)] * n
    if targets is not None and len(targets) != n:
        raise ValueError(f"{n} images but {len(targets)} targets; give one target per image or one int")
    out = np.zeros((n, images.shape[-2], images.shape[-1]), np.float32)
    with cam_session(model):
        _check_request(model, images, layers, targets=targets, reshaped=reshape is not None)
        # Not `with cam:` - pytorch-grad-cam's __exit__ prints and swallows an IndexError,
        # which would leave maps uncomputed; hooks are released in `finally` instead.
        cam = cam_class(model=model, target_layers=layers, reshape_transform=reshape)
        try:
            for i in range(0, n, batch_size):
                chunk = targets[i:i + batch_size] if targets is not None else None
                tgt = None if chunk is None else [t if callable(t) else ClassifierOutputTarget(int(t)) for t in chunk]
                x = images[i:i + batch_size].detach().clone().requires_grad_(True)
                out[i:i + batch_size] = cam(input_tensor=x, targets=tgt)
        finally:
            cam.activations_and_grads.release()
    out = np.clip(out, 0.0, 1.0)
    empty = np.flatnonzero(empty_maps(out))
    if len(empty):
        shown = empty[:10].tolist()
        logger.warning("%d of %d %s maps are all zero (items %s%s): the target class gets no positive evidence from "
                       "the target layer; they are returned as zeros (empty_maps() flags them)", len(empty), n,
                       method, shown, ", ..." if len(empty) > 10 else "")
    return out


@torch.no_grad()
def _check_request(model: nn.Module, images: torch.Tensor, layers: list[nn.Module], *,
                   targets: Sequence[int | Callable] | None, reshaped: bool) -> None:
    """One forward of one image: integer targets must be outputs of the model (pytorch-grad-cam
    would swallow the IndexError), and the layers must give maps or have a reshape."""
    dims: list[int] = []
    keep = lambda _m, _i, o: dims.append(o.ndim if isinstance(o, torch.Tensor) else -1)  # noqa: E731
    handles = [layer.register_forward_hook(keep) for layer in layers]
    try:
        logits = model(images[:1].to(next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    width = int(logits.shape[-1])
    bad = sorted({int(t) for t in targets or () if not callable(t) and not 0 <= int(t) < width})
    if bad:
        raise ValueError(f"targets {bad} are outside the model's {width} outputs; "
                         f"give class indices in 0..{width - 1}")
    if not reshaped and any(d not in (4, 5) for d in dims):
        ranks = "/".join(map(str, sorted(set(dims))))
        shape = "(B, N, C) tokens" if 3 in dims else f"a {ranks}-dimensional output"
        raise ValueError(f"the target layer gives {shape}, not a (B, C, h, w) map; for a transformer block "
                         "pass reshape_transform=token_reshape(prefix_tokens=1) (cfer.explain.gradcam) or your "
                         "own callable to (B, C, h, w), or choose a convolutional target layer")
