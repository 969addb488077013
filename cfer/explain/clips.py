"""Grad-CAM on clips: one map per frame, and which regions light up when.

A temporal model (:mod:`cfer.models.temporal`) runs its frame encoder on the ``T``
frames of every clip as one batch, so a CAM of the frame encoder's target layer sees
``B * T`` activation maps: pytorch-grad-cam's CAM classes then return one map per frame,
each for the clip's class score (the gradient flows back through the temporal
aggregation and the fusion, so a frame that the clip's decision ignores gets a weak or
empty map). :func:`region_curves` turns the maps into the share of attention each facial
region gets in each frame: for a compound clip whose two constituents peak at different
times, the curves show the brows, then the mouth (or the reverse) lighting up.

Every method of :data:`cfer.explain.methods.METHODS` works: they all read only the
target layer's activations and gradients. pytorch-grad-cam reads a 5-D input as a 3-D
volume; :func:`clip_cam_class` gives each method a subclass that sizes the maps as frames.

Example:
    >>> import torch, cfer.models
    >>> from cfer.models import create_backbone
    >>> net = create_backbone("temporal_tiny", in_chans=1, img_size=32)   # doctest: +SKIP
    >>> maps = explain_clips(net, torch.rand(2, *net.clip_layout.shape))  # doctest: +SKIP
    >>> maps.shape                                                        # doctest: +SKIP
    (2, 8, 32, 32)
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from torch import nn

from cfer import taxonomy
from cfer.distributed import model_device
from cfer.explain.gradcam import _unwrap, cam_session, find_target_layer
from cfer.explain.methods import method_class
from cfer.explain.regions import region_attention

__all__ = ["clip_cam_class", "clip_target_layer", "explain_clips", "region_curves"]

logger = logging.getLogger(__name__)


def clip_target_layer(model: nn.Module) -> tuple[nn.Module, object]:
    """The frame encoder's target layer (and reshape transform) of a temporal model.

    Raises:
        ValueError: If the model has no ``frame_encoder`` (not a clip model).
    """
    net = _unwrap(model)
    encoder = getattr(net, "frame_encoder", None)
    if not isinstance(encoder, nn.Module) or not hasattr(net, "clip_layout"):
        raise ValueError(f"{type(net).__name__} is not a clip model (no frame_encoder / clip_layout); "
                         "use cfer.explain.explain(model, images) for image models")
    return find_target_layer(encoder)


def clip_cam_class(method: str) -> type:
    """The pytorch-grad-cam class of ``method``, sizing its maps as the clip's frames
    ``(S, S)`` (pytorch-grad-cam would read a packed clip ``(B, T + k, C, S, S)`` as a volume).

    Example:
        >>> clip_cam_class("gradcam").__name__                     # doctest: +SKIP
        'ClipGradCAM'
    """
    base = method_class(method)

    def get_target_width_height(self: object, input_tensor: torch.Tensor) -> tuple[int, int]:
        return int(input_tensor.size(-1)), int(input_tensor.size(-2))

    return type(f"Clip{base.__name__}", (base,), {"get_target_width_height": get_target_width_height})


def explain_clips(
    model: nn.Module,
    clips: torch.Tensor,
    *,
    method: str = "gradcam",
    targets: Sequence[int] | int | None = None,
) -> np.ndarray:
    """Per-frame class activation maps of packed clips.

    Args:
        model: A temporal clip model (or a :class:`~cfer.continual.growing.GrowingClassifier`
            around one).
        clips: Packed clips ``(B, T + k, C, S, S)`` (:class:`cfer.data.video.ClipLayout`).
        method: A name from :data:`cfer.explain.methods.METHODS`.
        targets: Class per clip, one int for all, or None for each clip's predicted class.

    Returns:
        float32 ``(B, T, S, S)``, each frame's map min-max scaled to [0, 1] (a frame with no
        positive evidence is all zero).

    Raises:
        ValueError: For a model that is not a clip model, clips of the wrong shape or
            targets outside the model's outputs.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = clip_cam_class(method)
    layer, reshape = clip_target_layer(model)
    layout = _unwrap(model).clip_layout
    if clips.ndim != 5 or tuple(clips.shape[1:]) != layout.shape:
        raise ValueError(f"clips must be packed as (B, {', '.join(map(str, layout.shape))}) for this model's "
                         f"ClipLayout, got {tuple(clips.shape)}")
    n, T = len(clips), layout.frames
    device = model_device(model)  # the CAM moves its own inputs
    with cam_session(model):
        if targets is None:
            with torch.no_grad():
                targets = model(clips.to(device)).argmax(1).tolist()
        elif isinstance(targets, (int, np.integer)):
            targets = [int(targets)] * n
        if len(targets) != n:
            raise ValueError(f"{n} clips but {len(targets)} targets; give one per clip or one int")
        with torch.no_grad():
            width = int(model(clips[:1].to(device)).shape[-1])
        bad = sorted({int(t) for t in targets if not 0 <= int(t) < width})
        if bad:
            raise ValueError(f"targets {bad} are outside the model's {width} outputs; give 0..{width - 1}")
        out = np.zeros((n, T, layout.image_size, layout.image_size), np.float32)
        cam = cam_class(model=model, target_layers=[layer], reshape_transform=reshape)
        try:
            for i in range(n):  # one clip a pass: its T frames are the CAM's batch
                x = clips[i:i + 1].detach().clone().requires_grad_(True)
                maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(targets[i]))])
                if maps.shape[0] != T:
                    raise ValueError(f"the target layer gave {maps.shape[0]} maps for a clip of {T} frames; "
                                     "the frame encoder must see the clip's frames as one batch")
                out[i] = maps
        finally:
            cam.activations_and_grads.release()
    return np.clip(out, 0.0, 1.0)


def region_curves(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Share of each frame's attention in each facial region.

    Args:
        maps: ``(T, S, S)`` or ``(B, T, S, S)`` per-frame maps from :func:`explain_clips`.
        regions: Region maps of the same frames, same shape (or ``(S, S)`` for one map
            for all frames, e.g. :func:`cfer.explain.regions.canonical_region_map`).

    Returns:
        ``(T, R)`` or ``(B, T, R)`` shares, ``R = len(taxonomy.REGIONS)``; a frame whose map
        is empty has all-zero shares.

    Example:
        >>> maps = np.zeros((2, 4, 4), np.float32); maps[1, 0, 0] = 1.0
        >>> reg = np.full((4, 4), 2, np.uint8)           # every pixel is "brows"
        >>> region_curves(maps, reg)[:, 1].tolist()
        [0.0, 1.0]
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim not in (3, 4):
        raise ValueError(f"maps must be (T, S, S) or (B, T, S, S), got shape {maps.shape}")
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, *maps.shape[-2:])
    reg = np.asarray(regions)
    reg = reg.reshape(-1, *reg.shape[-2:]) if reg.ndim > 2 else reg
    if reg.ndim == 3 and len(reg) != len(flat):
        raise ValueError(f"regions {np.asarray(regions).shape} do not match maps {maps.shape}")
    return region_attention(flat, reg).reshape(*lead, len(taxonomy.REGIONS))
