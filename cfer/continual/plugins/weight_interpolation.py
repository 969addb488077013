"""Weight interpolation between the previous step's student and the new one (an Avalanche plugin).

Fine-tuning on a new class moves the student away from the weights that knew the old
classes. Averaging the two sets of weights after the step (mean-IMM, Lee et al. 2017;
weight interpolation with replay, Kozal et al. 2023) keeps part of what the step
learnt and part of what it overwrote:

    theta <- alpha * theta_prev + (1 - alpha) * theta_new

for every floating-point parameter and buffer (BatchNorm's running statistics included).
The growing head's rows of the classes this experience brought are kept as trained:
the previous student had no such class, its rows are their initialisation. A student
fine-tuned from the previous one for a few epochs stays in the same basin of the loss,
so the average is a model of its own, not a blend of two unrelated networks.

The plugin runs first in ``after_training_exp`` (put it at the head of the plugin list),
so weight aligning, the replay policy's scoring, the frozen copies and the class means
all see the interpolated student. The first experience (the basic classes) is left alone.

Example:
    >>> from cfer.continual.plugins.weight_interpolation import WeightInterpolationPlugin
    >>> plugin = WeightInterpolationPlugin(alpha=0.5)
    >>> plugin.alpha
    0.5
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from avalanche.core import SupervisedPlugin
from avalanche.models import IncrementalClassifier
from torch import nn

__all__ = ["WeightInterpolationPlugin", "interpolate_weights"]

logger = logging.getLogger(__name__)


def _head_keys(model: nn.Module) -> set[str]:
    """The state-dict keys of the weight and bias of every growing head of ``model``."""
    prefixes = [f"{name}." if name else "" for name, m in model.named_modules() if isinstance(m, IncrementalClassifier)]
    return {f"{p}classifier.{part}" for p in prefixes for part in ("weight", "bias")}


@torch.no_grad()
def interpolate_weights(model: nn.Module, previous: dict[str, torch.Tensor], *, alpha: float,
                        new_classes: Sequence[int] = ()) -> int:
    """Set every floating-point parameter and buffer of ``model`` to ``alpha * previous +
    (1 - alpha) * current`` in place; the rows ``new_classes`` of each growing head keep
    their current values. Returns how many tensors were interpolated.

    Args:
        model: The student after the step.
        previous: Its state dict before the step (same keys and shapes: taken after the head
            grew, e.g. in ``before_training_exp``).
        alpha: Weight of the previous weights, in [0, 1].
        new_classes: Head rows to keep as trained.

    Raises:
        ValueError: If ``alpha`` is outside [0, 1] or a tensor of ``model`` has no match of
            the same shape in ``previous``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heads = _head_keys(model)
    keep = torch.as_tensor(sorted({int(c) for c in new_classes}), dtype=torch.long)
    done = 0
    for key, current in model.state_dict(keep_vars=True).items():
        if not torch.is_floating_point(current):
            continue
        old = previous.get(key)
        if old is None or old.shape != current.shape:
            raise ValueError(f"{key}: no tensor of shape {tuple(current.shape)} in the previous weights; take them "
                             "after the head grew (before_training_exp)")
        mixed = torch.lerp(current.detach(), old.to(current.device, current.dtype), alpha)
        if key in heads and len(keep):
            rows = keep[keep < len(mixed)]
            mixed[rows] = current.detach()[rows]
        current.data.copy_(mixed)
        done += 1
    return done


class WeightInterpolationPlugin(SupervisedPlugin, supports_distributed=True):
    """After every experience but the first, average the student's weights with those it
    had before the experience (see the module docstring).

    Args:
        alpha: Weight of the previous step's weights (0: off; 0.5: the midpoint).

    Raises:
        ValueError: If ``alpha`` is outside [0, 1].
    """

    def __init__(self, *, alpha: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)
        self._previous: dict[str, torch.Tensor] | None = None

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        exp = strategy.experience
        self._previous = None
        if self.alpha == 0.0 or not list(getattr(exp, "previous_classes", [])):
            return
        self._previous = {k: v.detach().clone() for k, v in strategy.model.state_dict().items()
                          if torch.is_floating_point(v)}

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if self._previous is None:
            return
        exp = strategy.experience
        new = sorted({int(c) for c in exp.classes_in_this_experience} - {int(c) for c in exp.previous_classes})
        model = getattr(strategy.model, "module", strategy.model)  # a DDP wrapper's model
        previous = {k.removeprefix("module."): v for k, v in self._previous.items()}
        n = interpolate_weights(model, previous, alpha=self.alpha, new_classes=new)
        self._previous = None
        logger.info("weight interpolation: %d tensors set to %.2f x previous + %.2f x new (new classes %s kept)",
                    n, self.alpha, 1 - self.alpha, new)
