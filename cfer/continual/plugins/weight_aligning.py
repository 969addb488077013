"""Weight aligning of the growing head after each step (an Avalanche plugin).

A head trained on many items of the new classes and few of each old one grows larger
weight vectors for the new classes, so their logits win. Weight aligning (Zhao et al.
2020, "Maintaining discrimination and fairness in class incremental learning") rescales
the new classes' rows after each experience so that their mean norm equals the old
classes':

    gamma = mean_{c old} ||w_c|| / mean_{c new} ||w_c||,   w_c <- gamma * w_c,  b_c <- gamma * b_c  (c new)

The new classes' logits are multiplied by ``gamma``. It runs after training and before
the other plugins' ``after_training_exp`` (put it first in the plugin list), so the
replay memory is scored and the previous-step student is frozen with the aligned head.
Every linear head that grows (Avalanche's ``IncrementalClassifier``, one per ensemble
member) is aligned; a cosine head has no norm to align.

Example:
    >>> import torch
    >>> from avalanche.models import IncrementalClassifier
    >>> head = IncrementalClassifier(4, initial_out_features=3)
    >>> with torch.no_grad():
    ...     _ = head.classifier.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 4.0, 0]]))
    ...     _ = head.classifier.bias.zero_()
    >>> align_new_classes(head, old=[0, 1], new=[2])
    0.25
    >>> head.classifier.weight[2].norm().item()
    1.0
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from avalanche.core import SupervisedPlugin
from avalanche.models import IncrementalClassifier

from cfer.continual.cosine_head import CosineIncrementalClassifier

__all__ = ["WeightAligningPlugin", "align_new_classes"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def align_new_classes(head: IncrementalClassifier, *, old: Sequence[int], new: Sequence[int]) -> float | None:
    """Scale the ``new`` classes' weights and biases of ``head`` so that their mean weight
    norm equals the ``old`` classes'; returns the factor (``None`` when there is nothing
    to align: no old or no new class, or a head without a weight matrix).

    Raises:
        ValueError: If a class index is beyond the head's width.
    """
    linear = getattr(head, "classifier", None)
    weight = getattr(linear, "weight", None)
    if not old or not new or not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return None
    width = weight.shape[0]
    if max(*old, *new) >= width:
        raise ValueError(f"class {max(*old, *new)} is beyond the head's {width} outputs; grow the head "
                         "(model.grow / Avalanche's model adaptation) before aligning it")
    norms = weight.norm(dim=1)
    old_idx, new_idx = torch.as_tensor(list(old)), torch.as_tensor(list(new))
    new_mean = norms[new_idx].mean()
    if not new_mean > 0:
        return None
    gamma = float(norms[old_idx].mean() / new_mean)
    weight[new_idx] *= gamma
    bias = getattr(linear, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias[new_idx] *= gamma
    return gamma


class WeightAligningPlugin(SupervisedPlugin, supports_distributed=True):
    """Align the new classes' head weights with the old classes' after every experience
    but the first (see the module docstring).

    The old and new classes are read from the experience (Avalanche's
    ``previous_classes`` and ``classes_in_this_experience``), so the plugin keeps no state
    between experiences and a resumed stream aligns as an unbroken one. Under ``torchrun``
    every process holds the same weights after training and applies the same factor.

    Attributes:
        gammas: The factors of each aligned experience (one entry per growing head), for
            logs and tests.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gammas: list[list[float]] = []

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        exp = strategy.experience
        classes = getattr(exp, "classes_in_this_experience", None)
        if classes is None or not hasattr(exp, "previous_classes"):
            raise ValueError("weight aligning reads experience.classes_in_this_experience and previous_classes "
                             "(an Avalanche class-incremental stream, e.g. cfer.continual.stream.make_stream)")
        old = sorted({int(c) for c in exp.previous_classes})
        new = sorted({int(c) for c in classes} - set(old))
        heads = [m for m in strategy.model.modules()  # a DDP wrapper's modules() include its model's
                 if isinstance(m, IncrementalClassifier) and not isinstance(m, CosineIncrementalClassifier)]
        factors = [g for h in heads if (g := align_new_classes(h, old=old, new=new)) is not None]
        if factors:
            self.gammas.append(factors)
            logger.info("weight aligning: new classes %s scaled by %s", new, ", ".join(f"{g:.3f}" for g in factors))
