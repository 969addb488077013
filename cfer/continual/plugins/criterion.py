"""How plugins that change the classification criterion compose, in any order.

Some of cfer's plugins change the strategy's criterion itself rather than adding a term
to the loss: distillation scales it by ``1 - g_i``, logit adjustment shifts the logits it
sees by ``tau * log(prior)``. Each such plugin is a :class:`CriterionAdjustment`; at the
start of a training experience it calls :func:`adjust_criterion`, which wraps the
strategy's criterion once (never twice for the same plugin). The wrappers stay in place
and pass the call through whenever their plugin is inactive (at evaluation, say).
Scaling and logit shifting commute, so the plugins give the same loss whatever their
order in the plugin list; terms of their own (distillation's KD and feature terms) are
added to ``strategy.loss`` in ``before_backward``, as Avalanche's own regularisers do.

Example:
    >>> import torch
    >>> class Half(CriterionAdjustment):
    ...     def adjust(self, criterion, logits, targets):
    ...         return 0.5 * criterion(logits, targets)
    >>> class S:  # a stand-in for a strategy
    ...     _criterion = torch.nn.CrossEntropyLoss()
    >>> s, half = S(), Half()
    >>> adjust_criterion(s, half); adjust_criterion(s, half)   # wrapped once
    >>> logits, y = torch.tensor([[2.0, 0.0]]), torch.tensor([1])
    >>> bool(torch.isclose(s._criterion(logits, y), 0.5 * torch.nn.functional.cross_entropy(logits, y)))
    True
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["CriterionAdjustment", "adjust_criterion"]

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class CriterionAdjustment:
    """A plugin that changes how the strategy's criterion is computed."""

    def adjust(self, criterion: Criterion, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The adjusted loss: call ``criterion`` (the rest of the chain) as the plugin needs."""
        raise NotImplementedError


class _Adjusted:
    """``strategy._criterion`` wrapped by one adjustment."""

    def __init__(self, inner: Criterion, adjustment: CriterionAdjustment) -> None:
        self.inner, self.adjustment = inner, adjustment

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.adjustment.adjust(self.inner, logits, targets)

    def chain(self) -> list[CriterionAdjustment]:
        inner = self.inner.chain() if isinstance(self.inner, _Adjusted) else []
        return [self.adjustment, *inner]


def adjust_criterion(strategy, adjustment: CriterionAdjustment) -> None:  # noqa: ANN001
    """Wrap ``strategy._criterion`` with ``adjustment``, unless it is wrapped already."""
    current = strategy._criterion
    if isinstance(current, _Adjusted) and any(a is adjustment for a in current.chain()):
        return
    strategy._criterion = _Adjusted(current, adjustment)
