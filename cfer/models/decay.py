"""Weight-decay parameter groups: decay the weight matrices, never biases, norms or ViT tokens.

Decaying a LayerNorm's gain, a bias, a position embedding or a class token pulls it toward
zero for no gain in generalisation; AdamW recipes for ViTs leave them out. Shared by the MAE
pretraining loop and the teacher's photo recipe.

:func:`layer_decay_groups` adds layer-wise learning-rate decay, the usual way to fine-tune a
pretrained encoder (the MAE recipe): the classifier and the last layers learn at the full rate,
each earlier block or stage at ``layer_decay`` times the rate of the one after it, so the
pretrained early layers move least. Each group carries an ``lr_scale`` that the teacher's
schedule multiplies its rate by.

Example:
    >>> import torch
    >>> groups = decay_groups(torch.nn.Linear(4, 2), weight_decay=0.05)
    >>> [(len(g["params"]), g["weight_decay"]) for g in groups]
    [(1, 0.05), (1, 0.0)]
"""

from __future__ import annotations

import logging

from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["decay_groups", "layer_decay_groups", "NO_DECAY_SUFFIXES"]

NO_DECAY_SUFFIXES = ("pos_embed", "cls_token", "reg_token", "mask_token")
"""Parameter names (their ends) that are never decayed, besides every 1-D parameter."""


def decay_groups(model: nn.Module, *, weight_decay: float) -> list[dict]:
    """The trainable parameters of ``model`` as two optimiser groups: decayed and not.

    Args:
        model: Any module; frozen parameters (``requires_grad=False``) are left out.
        weight_decay: Decay of the first group.

    Example:
        >>> import torch
        >>> opt = torch.optim.AdamW(decay_groups(torch.nn.Linear(4, 2), weight_decay=0.05), lr=1e-3)
    """
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if p.ndim <= 1 or name.endswith(NO_DECAY_SUFFIXES) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def layer_decay_groups(model: nn.Module, *, weight_decay: float, layer_decay: float) -> list[dict]:
    """:func:`decay_groups` per layer, each with ``lr_scale = layer_decay ** depth``.

    The layers are the backbone's ordered groups of :func:`cfer.models.freeze.stage_groups`
    (timm's ``group_matcher``: stem, each block or stage, final norm); ``depth`` counts from
    the last group (0) back to the stem; the classifier (in no group) has depth 0.

    Args:
        model: A timm or cfer backbone, or a ``GrowingClassifier`` around one.
        weight_decay: Decay of the weight matrices (none on biases, norms, tokens).
        layer_decay: In ``(0, 1]``; 1 gives every group the full rate.

    Example:
        >>> import timm, cfer.models
        >>> vit = timm.create_model("vit_face_micro", num_classes=3)
        >>> scales = sorted({g["lr_scale"] for g in layer_decay_groups(vit, weight_decay=0.05, layer_decay=0.5)})
        >>> scales                 # the stem (under 2 blocks), the first block, the last block and the head
        [0.25, 0.5, 1.0]
    """
    from cfer.models.freeze import stage_groups

    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must lie in (0, 1], got {layer_decay}")
    groups = stage_groups(model)
    if layer_decay < 1 and len(groups) < 2:
        logger.warning("layer decay %g changes nothing on %s: it has no ordered layer groups (timm's "
                       "group_matcher), so every parameter learns at the full rate", layer_decay,
                       type(model).__name__)
    depth = {name: len(groups) - 1 - i for i, names in enumerate(groups) for name in names}
    out: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        d = depth.get(name, 0)
        plain = p.ndim <= 1 or name.endswith(NO_DECAY_SUFFIXES)
        group = out.setdefault((d, plain), {"params": [], "weight_decay": 0.0 if plain else weight_decay,
                                            "lr_scale": layer_decay ** d})
        group["params"].append(p)
    return [out[k] for k in sorted(out)]
