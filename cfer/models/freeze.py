"""Freeze the early stages of a backbone: fine-tune a pretrained encoder from its later layers.

A backbone's parameters are split into ordered groups with timm's own ``group_matcher``
(``coarse=True``; what timm uses for layer-wise learning-rate decay): the **stem** (patch
embedding, class token and positions of a ViT; the first convolution of a CNN), then one
group per block or stage, then the final norm. ``freeze_stages(model, stages=n)`` stops the
gradients of the stem and the first ``n`` groups after it (``requires_grad=False``); the
rest trains. A model without a ``group_matcher`` (cfer's own CNNs) is split by its top-level
children in order (``stem``, ``se``, ``stages``, ...), the classifier left out.

Frozen batch-norm layers still update their running statistics in training mode (their
weights do not change); a ViT has none. ``frozen_copy(model)`` freezes a whole model
instead: an eval-mode copy without gradients (a distillation teacher, a previous student).

Example:
    >>> import timm, cfer.models
    >>> vit = timm.create_model("vit_face_micro", num_classes=0)
    >>> freeze_stages(vit, stages=1)[:3]
    ['cls_token', 'pos_embed', 'patch_embed.proj.weight']
    >>> vit.blocks[0].attn.qkv.weight.requires_grad, vit.blocks[1].attn.qkv.weight.requires_grad
    (False, True)
"""

from __future__ import annotations

import copy
import logging

from torch import nn

__all__ = ["freeze_stages", "stage_groups", "frozen_copy"]


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode whose parameters need no gradients."""
    frozen = copy.deepcopy(model)
    frozen.eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen

logger = logging.getLogger(__name__)


def _backbone(model: nn.Module) -> nn.Module:
    """The timm network inside a wrapper (a ``GrowingClassifier``'s ``backbone``), else the model."""
    inner = getattr(model, "backbone", None)
    return inner if isinstance(inner, nn.Module) else model


def stage_groups(model: nn.Module) -> list[list[str]]:
    """The backbone's parameter names in ordered groups: stem first, then each block or stage
    (names relative to ``model``; the classifier is not in any group)."""
    net = _backbone(model)
    prefix = "backbone." if net is not model else ""
    if hasattr(net, "group_matcher"):
        from timm.models import group_parameters

        groups = [list(v) for _, v in sorted(group_parameters(net, net.group_matcher(coarse=True)).items())]
    else:
        head = net.get_classifier() if hasattr(net, "get_classifier") else None
        groups = [[f"{name}.{p}" for p, _ in child.named_parameters()] for name, child in net.named_children()
                  if child is not head and any(True for _ in child.parameters())]
    heads = {n for n, m in net.named_modules() if hasattr(net, "get_classifier") and m is net.get_classifier() and n}
    groups = [[n for n in g if not any(n.startswith(h + ".") for h in heads)] for g in groups]
    return [[prefix + n for n in g] for g in groups if g]


def freeze_stages(model: nn.Module, *, stages: int) -> list[str]:
    """Freeze the stem and the first ``stages`` groups after it (``requires_grad=False``).

    Args:
        model: A timm or cfer backbone, or a wrapper with a ``backbone`` (``GrowingClassifier``).
        stages: Groups after the stem to freeze; ``0`` freezes nothing (not even the stem),
            ``1`` the stem and the first block.

    Returns:
        The names of the frozen parameters.

    Raises:
        ValueError: For a negative count, or one that would freeze every group (nothing
            left to fine-tune): the message gives the number of groups.

    Example:
        >>> frozen = freeze_stages(growing_classifier, stages=4)   # doctest: +SKIP
    """
    if stages < 0:
        raise ValueError(f"stages must be >= 0, got {stages}")
    if stages == 0:
        return []
    groups = stage_groups(model)
    if stages >= len(groups) - 1:
        raise ValueError(f"freezing {stages} stages after the stem would leave nothing of the "
                         f"{len(groups)} groups of {type(_backbone(model)).__name__} (the stem, then its blocks) to "
                         f"fine-tune; give at most {max(0, len(groups) - 2)}")
    names = {n for g in groups[:stages + 1] for n in g}
    frozen = []
    for name, p in model.named_parameters():
        if name in names:
            p.requires_grad_(False)
            frozen.append(name)
    logger.info("froze %d tensors (the stem and %d stages) of %s", len(frozen), stages, type(model).__name__)
    return frozen
