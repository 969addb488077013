"""Herding (Welling 2009; iCaRL's exemplar rule): pick items whose running feature mean stays
closest to the mean of them all, so a few items cover a class instead of repeating its most
typical face. PSMR's ``new_class_selection="sorted_herding"`` herds within the
better-recognised half of a new class (:mod:`cfer.continual.plugins.psmr`).

Example:
    >>> import torch
    >>> herding_order(torch.eye(3), n=3)
    [0, 1, 2]
"""

from __future__ import annotations

import torch

__all__ = ["herding_order"]


def herding_order(features: torch.Tensor, *, n: int) -> list[int]:
    """Greedy herding: ``n`` row indices of ``features`` whose running mean stays closest
    to the mean of all rows, in the order chosen.

    Example:
        >>> herding_order(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]), n=2)
        [2, 0]
    """
    target = features.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(target)
    free = torch.ones(len(features), dtype=torch.bool)
    for k in range(min(n, len(features))):
        dist = ((target - (total + features) / (k + 1)) ** 2).sum(1)
        dist[~free] = float("inf")
        i = int(torch.argmin(dist))
        chosen.append(i)
        total += features[i]
        free[i] = False
    return chosen
