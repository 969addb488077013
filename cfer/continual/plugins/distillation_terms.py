"""The distillation plugin's feature term and the class counts it reads from an experience.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> exp = SimpleNamespace(previous_classes=[0, 1], classes_in_this_experience=[2])
    >>> feature_rows("memory", torch.tensor([0, 2, 1, 2]), exp).tolist()
    [True, False, True, False]
    >>> old_new_ratio(exp, n_old=2, width=3)
    2.0
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FEATURE_SAMPLES", "feature_distillation", "feature_rows", "old_new_ratio"]

FEATURE_SAMPLES = ("all", "memory", "new")
"""The items the feature term may cover (``feature_rows``)."""


def feature_distillation(student: torch.Tensor, teacher: torch.Tensor, *, kind: str = "mse") -> torch.Tensor:
    """MSE or ``1 - cosine`` between (projected) student and teacher features."""
    if kind == "mse":
        return nn.functional.mse_loss(student, teacher)
    if kind == "cosine":
        return (1.0 - nn.functional.cosine_similarity(student, teacher, dim=1)).mean()
    raise ValueError(f"feature loss must be 'mse' or 'cosine', got {kind!r}")


def feature_rows(samples: str, targets: torch.Tensor, experience) -> torch.Tensor | None:  # noqa: ANN001
    """Which rows of a mini-batch the feature term covers: ``None`` for ``"all"``, else a
    boolean mask of the items whose class was seen before ``experience`` (``"memory"``: in
    a class-incremental stream those come from the replay memory) or not (``"new"``).

    Raises:
        ValueError: For another ``samples``, or an experience without ``previous_classes``.
    """
    if samples == "all":
        return None
    if samples not in FEATURE_SAMPLES:
        raise ValueError(f"feature samples must be one of {list(FEATURE_SAMPLES)}, got {samples!r}")
    old = getattr(experience, "previous_classes", None)
    if old is None:
        raise ValueError(f"feature_samples={samples!r} reads experience.previous_classes (an Avalanche "
                         "class-incremental stream, e.g. cfer.continual.stream.make_stream); use 'all' otherwise")
    seen = torch.isin(targets, torch.as_tensor(sorted(int(c) for c in old), dtype=targets.dtype,
                                               device=targets.device))
    return seen if samples == "memory" else ~seen


def old_new_ratio(experience, *, n_old: int, width: int) -> float:  # noqa: ANN001
    """Classes seen before ``experience`` over its new ones (Avalanche's class lists; else the head's widths)."""
    old = set(getattr(experience, "previous_classes", None) or ())
    new = set(getattr(experience, "classes_in_this_experience", None) or ()) - old
    if old and new:
        return len(old) / len(new)
    return n_old / (width - n_old) if width > n_old else 1.0
