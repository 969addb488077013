"""Logit adjustment against the new-class bias of replay training (an Avalanche plugin).

With replay, a mini-batch holds many samples of the few new classes and a handful of each
old class, so the classifier learns a prior that favours the new classes. Logit
adjustment (Menon et al. 2021, "Long-tail learning via logit adjustment") trains on

    CE(y, s + tau * log pi)

where ``pi`` is the class frequency seen in training so far in this experience (current
data and replayed memory together, add-one smoothed, counted once per mini-batch after
its forward pass), and predicts with the raw logits ``s``. The plugin adjusts the logits
the strategy's criterion sees (:mod:`cfer.continual.plugins.criterion`), so it composes
with distillation's ``1 - g`` scaling in either plugin order.

Example:
    >>> plugin = LogitAdjustmentPlugin(tau=1.0)
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from cfer.continual.plugins.criterion import CriterionAdjustment, adjust_criterion

__all__ = ["LogitAdjustmentPlugin"]


class LogitAdjustmentPlugin(SupervisedPlugin, CriterionAdjustment, supports_distributed=True):
    """Train with prior-adjusted logits (see module docstring).

    Args:
        tau: Strength of the adjustment (0 switches it off; 1 is the usual choice).
    """

    def __init__(self, *, tau: float = 1.0) -> None:
        super().__init__()
        if not tau >= 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        self.tau = tau
        self.counts: torch.Tensor | None = None
        self._active = False

    def adjust(self, criterion, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        """``criterion(logits + tau * log prior, targets)`` while training."""
        if not self._active or self.tau == 0 or self.counts is None:
            return criterion(logits, targets)
        n = logits.shape[1]
        counts = self.counts[:n]
        prior = (counts + 1.0) / (counts + 1.0).sum()
        return criterion(logits + self.tau * torch.log(prior).to(logits.device), targets)

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self.counts = None
        self._active = True
        adjust_criterion(strategy, self)

    def after_forward(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if not self._active:
            return
        n = strategy.mb_output.shape[1]
        batch = torch.bincount(strategy.mb_y.detach().cpu(), minlength=n).float()[:n]
        if self.counts is None or len(self.counts) < n:
            grown = torch.zeros(n)
            if self.counts is not None:
                grown[: len(self.counts)] = self.counts
            self.counts = grown
        self.counts[:n] += batch

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._active = False
