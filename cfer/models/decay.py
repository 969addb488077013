"""Weight-decay parameter groups: decay the weight matrices, never biases, norms or ViT tokens.

Decaying a LayerNorm's gain, a bias, a position embedding or a class token pulls it toward
zero for no gain in generalisation; AdamW recipes for ViTs leave them out. Shared by the MAE
pretraining loop and the teacher's photo recipe.

Example:
    >>> import torch
    >>> groups = decay_groups(torch.nn.Linear(4, 2), weight_decay=0.05)
    >>> [(len(g["params"]), g["weight_decay"]) for g in groups]
    [(1, 0.05), (1, 0.0)]
"""

from __future__ import annotations

from torch import nn

__all__ = ["decay_groups", "NO_DECAY_SUFFIXES"]

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
