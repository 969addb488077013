"""A cosine-normalised growing head: logits are a learnt scale times the cosine between the
features and each class's weight vector.

A linear head's logit for class ``c`` is ``w_c · f + b_c``: classes trained on many recent
faces get larger weight norms and biases, and the head leans to them (the bias towards the
newest classes that continual learning suffers). A cosine head (Hou et al. 2019, "Learning a
Unified Classifier Incrementally via Rebalancing"; Avalanche's ``CosineLinear``) normalises
both, ``logit_c = s · cos(f, w_c)``, so no class can win by norm or bias; ``s`` is one
learnt scale shared by every class, starting at :data:`INITIAL_SCALE` (with ``s = 1`` the
softmax of cosines in [-1, 1] is nearly flat and Adam takes many steps to raise it).

:class:`CosineLinear` is an ``nn.Linear`` whose bias is a zero buffer, so everything that
reads or widens a growing head's ``weight`` and ``bias`` (Avalanche's
``IncrementalClassifier.adaptation``, :func:`cfer.continual.growing.head_width`) works on it;
:class:`CosineIncrementalClassifier` grows it as Avalanche grows its linear head.
:func:`use_cosine_head` turns every growing head of a model into one, in place, keeping each
class's weight vector (its direction is what a cosine head uses). The ``cfer`` strategy
trains its student with one when :class:`~cfer.continual.factory.CferConfig`'s ``head`` is
``"cosine"`` (``cfer run --head cosine``); both presets keep the linear head, which tied
with it on validation subjects (``docs/benchmarks.md``).

Example:
    >>> import torch
    >>> from cfer.continual.growing import build_model
    >>> net = use_cosine_head(build_model(arch="cfer_tiny", num_classes=3, img_size=32))
    >>> type(net.head.classifier).__name__, net(torch.rand(2, 3, 32, 32)).abs().max().item() <= INITIAL_SCALE
    ('CosineLinear', True)
    >>> net.grow(5); net.head.classifier.weight.shape
    torch.Size([5, 16])
"""

from __future__ import annotations

import torch
from avalanche.models import IncrementalClassifier
from torch import nn

__all__ = ["INITIAL_SCALE", "CosineLinear", "CosineIncrementalClassifier", "use_cosine_head", "has_cosine_head"]

INITIAL_SCALE = 16.0
"""The scale ``s`` a new cosine head starts from (learnt afterwards)."""


class CosineLinear(nn.Linear):
    """``scale · cos(x, w_c)`` for every class ``c``; ``bias`` is a zero buffer, never used.

    Args:
        in_features: Feature width.
        out_features: Number of classes.
        scale: Initial value of the learnt scale.
    """

    def __init__(self, in_features: int, out_features: int, *, scale: float = INITIAL_SCALE) -> None:
        super().__init__(in_features, out_features, bias=False)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        # a zero bias kept as a buffer, not a parameter: code that copies a growing head's
        # weight and bias finds both, and no optimiser or DDP ever sees an unused parameter
        del self._parameters["bias"]
        self.register_buffer("bias", torch.zeros(out_features))
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unit = nn.functional.normalize
        return self.scale * nn.functional.linear(unit(x, dim=1), unit(self.weight, dim=1))

    @torch.no_grad()
    def widened(self, out_features: int) -> "CosineLinear":
        """A copy with ``out_features`` classes: the old rows and the scale kept, new rows fresh."""
        new = CosineLinear(self.in_features, out_features).to(self.weight.device)
        new.weight[: self.out_features] = self.weight
        new.scale.copy_(self.scale)
        return new


class CosineIncrementalClassifier(IncrementalClassifier):
    """Avalanche's :class:`~avalanche.models.IncrementalClassifier` with a :class:`CosineLinear`
    head: it grows (and masks classes not trained yet) the same way."""

    def __init__(self, in_features: int, initial_out_features: int = 2, **kwargs: object) -> None:
        super().__init__(in_features, initial_out_features=initial_out_features, **kwargs)
        self.classifier = CosineLinear(in_features, initial_out_features)

    @torch.no_grad()
    def adaptation(self, experience) -> None:  # noqa: ANN001 - an Avalanche experience
        old = self.classifier
        super().adaptation(experience)  # widens the mask, and the head as an nn.Linear
        if self.classifier is not old:  # the same head, cosine: new classes' rows as Avalanche drew them
            linear = self.classifier
            self.classifier = old.widened(linear.out_features)
            self.classifier.weight[old.out_features:] = linear.weight[old.out_features:]


@torch.no_grad()
def _convert(head: IncrementalClassifier) -> None:
    linear = head.classifier
    cosine = CosineLinear(linear.in_features, linear.out_features).to(linear.weight.device)
    cosine.weight.copy_(linear.weight)
    head.__class__ = CosineIncrementalClassifier
    head.classifier = cosine


def use_cosine_head(model: nn.Module) -> nn.Module:
    """Make every growing head of ``model`` (a :class:`~cfer.continual.growing.GrowingClassifier`'s,
    each member head of a :class:`~cfer.continual.growing.GrowingEnsemble`) cosine-normalised, in
    place; each class keeps its weight vector. Heads that already are stay as they are.

    Returns:
        ``model``.

    Raises:
        TypeError: If ``model`` has no growing head (build it with
            :func:`cfer.continual.growing.build_model`).
    """
    heads = [m for m in model.modules() if isinstance(m, IncrementalClassifier)]
    if not heads:
        raise TypeError(f"{type(model).__name__} has no growing head (avalanche IncrementalClassifier) to make "
                        "cosine; build the model with cfer.continual.growing.build_model")
    for head in heads:
        if not isinstance(head, CosineIncrementalClassifier):
            _convert(head)
    return model


def has_cosine_head(state_dict: dict) -> bool:
    """Whether a saved growing model's state holds a cosine head (its ``classifier.scale``)."""
    return any(k.endswith("head.classifier.scale") for k in state_dict)
