"""Grad-CAM of a late-fusion ensemble: one map per member, and their fused map.

Each member of a :class:`~cfer.models.ensemble.LateFusionEnsemble` is a classifier of its
own (backbone, projection, head, its own input size), so its map is
:func:`cfer.explain.gradcam.explain` of that member, at its target layer
(:func:`member_target_layers`: the member backbone's ``cam_layer``, a ViT's last block
with the token reshape, ...), for the member's own head. Every member is explained for
the same class per image: the given target, else the **ensemble's** prediction. The
fused map is the weighted average of the members' maps (each already min-max scaled to
[0, 1]) with the ensemble's fusion weights, min-max scaled again per image like every map
``explain`` returns; it is what ``explain(ensemble, images)`` gives.

Members at other input sizes are no problem: a member resizes its input inside its
forward, and pytorch-grad-cam scales each map to the image size.

Example:
    >>> import torch
    >>> from cfer.models.ensemble import LateFusionEnsemble
    >>> ens = LateFusionEnsemble(members=["cfer_tiny", "cfer_tiny"], img_sizes=[None, 24], num_classes=3)
    >>> maps = explain_ensemble(ens, torch.rand(2, 3, 32, 32), targets=[0, 2])   # doctest: +SKIP
    >>> {k: v.shape for k, v in maps.items()}                                   # doctest: +SKIP
    {'cfer_tiny': (2, 32, 32), 'cfer_tiny@24': (2, 32, 32), 'fused': (2, 32, 32)}
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from cfer.explain.gradcam import explain, find_target_layer
from cfer.models.ensemble import LateFusionEnsemble

__all__ = ["explain_ensemble", "member_target_layers"]


def _check(model: nn.Module) -> LateFusionEnsemble:
    if not isinstance(model, LateFusionEnsemble):
        raise TypeError(f"expected a cfer.models.ensemble.LateFusionEnsemble, got {type(model).__name__}; "
                        "explain a single model with cfer.explain.explain")
    if model.num_classes == 0:
        raise ValueError("the ensemble has no heads (num_classes=0: a feature extractor); give it heads with "
                         "reset_classifier(n) to explain a class")
    return model


def member_target_layers(model: LateFusionEnsemble) -> dict[str, tuple[nn.Module, Callable | None]]:
    """Each member's CAM target layer and reshape transform, by member name.

    Example:
        >>> from cfer.models.ensemble import LateFusionEnsemble
        >>> ens = LateFusionEnsemble(members=["cfer_tiny", "vit_tiny_patch16_224"], img_sizes=[None, 32])
        >>> {k: type(v[0]).__name__ for k, v in member_target_layers(ens).items()}
        {'cfer_tiny': 'ResidualBlock', 'vit_tiny_patch16_224@32': 'LayerNorm'}
    """
    if not isinstance(model, LateFusionEnsemble):
        raise TypeError(f"expected a LateFusionEnsemble, got {type(model).__name__}; use find_target_layer")
    return {name: find_target_layer(m) for name, m in zip(model.member_names, model.members)}


@torch.no_grad()
def _predicted(model: nn.Module, images: torch.Tensor, batch_size: int) -> list[int]:
    was = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        return [int(c) for i in range(0, len(images), batch_size)
                for c in model(images[i:i + batch_size].to(device)).argmax(1).tolist()]
    finally:
        model.train(was)


def explain_ensemble(model: LateFusionEnsemble, images: torch.Tensor, *, method: str = "gradcam",
                     targets: Sequence[int | Callable] | int | None = None,
                     batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-member and fused class activation maps of an ensemble.

    Args:
        model: A :class:`~cfer.models.ensemble.LateFusionEnsemble` with heads (a
            ``GrowingEnsemble`` too).
        images: ``(B, C, H, W)`` float tensor.
        method: A name from :data:`cfer.explain.methods.METHODS`.
        targets: Class per image (ints or pytorch-grad-cam target callables), one int for
            all, or None for the ensemble's predicted class of each image.
        batch_size: Images per CAM pass.

    Returns:
        ``{member name: maps, ..., "fused": maps}``, each float32 ``(B, H, W)`` in [0, 1].

    Raises:
        TypeError: If ``model`` is not an ensemble.
        ValueError: For an ensemble without heads, or what :func:`cfer.explain.explain` refuses.
    """
    model = _check(model)
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if targets is None:
        targets = _predicted(model, images, batch_size)
    maps = {name: explain(member, images, method=method, targets=targets, batch_size=batch_size)
            for name, member in zip(model.member_names, model.members)}
    w = model.fusion_weights.detach().cpu().numpy().astype(np.float32)
    fused = sum(wi * m for wi, m in zip(w, maps.values()))
    lo = fused.min(axis=(1, 2), keepdims=True)
    span = fused.max(axis=(1, 2), keepdims=True) - lo
    maps["fused"] = np.where(span > 0, (fused - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
    return maps
