"""Logit adjustment against the new-class bias of replay training (an Avalanche plugin).

With replay, a mini-batch holds many samples of the few new classes and a handful of each
old class, so the classifier learns a prior that favours the new classes. Logit
adjustment (Menon et al. 2021, "Long-tail learning via logit adjustment") trains on

    CE(y, s + tau * log pi)

where ``pi`` is the class frequency seen in training so far in this experience (current
data and replayed memory together, add-one smoothed), and predicts with the raw logits
``s``. The plugin swaps the strategy's plain cross-entropy for the adjusted one in
``before_backward``; put it **before** :class:`BasicDistillationPlugin` in the plugin
list so distillation rescales the adjusted term.

Example:
    >>> plugin = LogitAdjustmentPlugin(tau=1.0)
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from torch import nn

__all__ = ["LogitAdjustmentPlugin"]


class LogitAdjustmentPlugin(SupervisedPlugin):
    """Train with prior-adjusted logits (see module docstring).

    Args:
        tau: Strength of the adjustment (0 switches it off; 1 is the usual choice).
    """

    def __init__(self, *, tau: float = 1.0) -> None:
        super().__init__()
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        self.tau = tau
        self.counts: torch.Tensor | None = None

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self.counts = None

    def before_backward(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if self.tau == 0:
            return
        logits, y = strategy.mb_output, strategy.mb_y
        n = logits.shape[1]
        batch = torch.bincount(y.detach().cpu(), minlength=n).float()
        if self.counts is None or len(self.counts) < n:
            grown = torch.zeros(n)
            if self.counts is not None:
                grown[: len(self.counts)] = self.counts
            self.counts = grown
        self.counts[: len(batch)] += batch[:n]
        prior = (self.counts + 1.0) / (self.counts + 1.0).sum()
        adjusted = logits + self.tau * torch.log(prior).to(logits.device)
        plain = nn.functional.cross_entropy(logits, y)
        strategy.loss = strategy.loss - plain + nn.functional.cross_entropy(adjusted, y)
