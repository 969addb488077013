"""Per-class binary cross-entropy with the previous student's outputs as old-class targets.

iCaRL (Rebuffi et al. 2017) trains its network with one sigmoid per class instead of a
softmax over all of them: for a mini-batch item of class ``y`` the target of output ``c``
is 1 for ``c = y`` and 0 otherwise, except that the outputs of the classes the previous
step's network knew take that network's sigmoid outputs as targets,

    loss = mean_{items, c} BCE(sigmoid(s_c), t_c),
    t_c = sigmoid(p_c)       for c < n_old (p: the frozen previous student's logits),
    t_c = [c = y]            otherwise,

so distillation of the old classes is part of the classification loss, and a new class
does not push every old logit down through a shared softmax normaliser. This plugin
makes that loss the criterion of any strategy (a
:class:`~cfer.continual.plugins.criterion.CriterionAdjustment`, innermost in the chain:
distillation's ``1 - g_i`` scaling and logit adjustment wrap it as they wrap
cross-entropy). Evaluation keeps the strategy's own criterion.

Example:
    >>> from cfer.continual.plugins.sigmoid import SigmoidCriterionPlugin
    >>> plugin = SigmoidCriterionPlugin()
    >>> plugin.previous is None
    True
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from cfer.continual.plugins.criterion import CriterionAdjustment, adjust_criterion
from cfer.models.freeze import frozen_copy

__all__ = ["SigmoidCriterionPlugin", "sigmoid_targets"]


def sigmoid_targets(targets: torch.Tensor, width: int, previous_logits: torch.Tensor | None = None) -> torch.Tensor:
    """One-hot ``targets`` over ``width`` outputs, the first ``previous_logits.shape[1]``
    columns replaced by ``sigmoid(previous_logits)``.

    Example:
        >>> sigmoid_targets(torch.tensor([2]), 3, torch.zeros(1, 2)).tolist()
        [[0.5, 0.5, 1.0]]
    """
    n = 0 if previous_logits is None else previous_logits.shape[1]
    if n > width:
        raise ValueError(f"the previous student has {n} outputs, more than the student's {width}")
    t = nn.functional.one_hot(targets.long(), width).float()
    if previous_logits is not None:
        t[:, :n] = torch.sigmoid(previous_logits.float())
    return t


class SigmoidCriterionPlugin(SupervisedPlugin, CriterionAdjustment, supports_distributed=True):
    """Train with per-class sigmoids; old classes distilled from the previous student.

    It wraps the strategy's criterion at the first ``before_training``, before any
    plugin's ``before_training_exp``, so it is innermost in the chain (it replaces the
    cross-entropy it wraps). Place it after any plugin that copies the model at the end
    of an experience with hooks of its own on it (distillation's feature taps).

    Args:
        distil_old: Take the old classes' targets from a frozen copy of the model at the
            end of the previous experience (iCaRL); ``False``: plain one-hot targets.
    """

    def __init__(self, *, distil_old: bool = True) -> None:
        super().__init__()
        self.distil_old = bool(distil_old)
        self.previous: nn.Module | None = None
        self._previous_logits: torch.Tensor | None = None
        self._training = False

    def adjust(self, criterion, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        """Binary cross-entropy against :func:`sigmoid_targets` while training; else ``criterion``."""
        if not self._training:
            return criterion(logits, targets)
        old = self._previous_logits
        if old is not None and old.shape[0] != logits.shape[0]:
            raise RuntimeError("the previous student's logits belong to another mini-batch")
        t = sigmoid_targets(targets, logits.shape[1], old)
        return nn.functional.binary_cross_entropy_with_logits(logits, t)

    def before_training(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        adjust_criterion(strategy, self)

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._training = True
        if self.previous is not None:
            self.previous.to(strategy.device)

    def before_forward(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._previous_logits = None
        if self._training and self.previous is not None:
            with torch.no_grad():
                self._previous_logits = self.previous(strategy.mb_x)

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._training = False
        self._previous_logits = None
        if self.distil_old:
            self.previous = frozen_copy(strategy.model)
