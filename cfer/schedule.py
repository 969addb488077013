"""The learning-rate schedule every cfer training loop shares: linear warm-up, then cosine decay.

Example:
    >>> [round(lr_at(s, total=10, warmup=2, lr=1.0, min_lr=0.0), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.345, 0.0]
"""

from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(step: int, *, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """Linear warm-up over ``warmup`` steps to ``lr``, then cosine decay to ``min_lr`` at ``total``.

    Args:
        step: The optimiser step, from 0.
        total: Steps of the whole run.
        warmup: Steps of the linear warm-up (0: none).
        lr: Peak learning rate.
        min_lr: Learning rate at the end of the decay.

    Example:
        >>> round(lr_at(0, total=100, warmup=0, lr=1e-3, min_lr=0.0), 6)
        0.001
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))
