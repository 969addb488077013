"""The ``student`` section of the run config: distilling the student on unlabelled faces first.

A student that starts as a copy of one member of an ensemble teacher (``model.student_arch:
member:NAME``) can first learn to match the fused ensemble's output on faces nobody labelled,
before the continual stream starts
(:func:`cfer.continual.unlabelled_distillation.distil_unlabelled`). Plain data, checked when
built; the pool folder is checked where the run starts (:func:`cfer.app.prepare.check_inputs`).

Example:
    >>> StudentSection(pool="synthetic").pool_epochs
    20
"""

from __future__ import annotations

from dataclasses import dataclass

from cfer.app import config_checks as _checks

__all__ = ["StudentSection", "SYNTHETIC_POOL"]

SYNTHETIC_POOL = "synthetic"
"""``student.pool``'s name for rendered faces of other people."""


@dataclass(frozen=True)
class StudentSection:
    """Distillation of the student on unlabelled faces before the stream.

    Attributes:
        pool: ``None`` (no such step), ``"synthetic"`` (one rendered face per class of
            ``pool_subjects`` people who are not in the run) or a folder of face images
            (labels, if any, unused; resized as the run's faces are, so give face crops).
            The run's basic training faces are added to the pool.
        pool_subjects: ``"synthetic"``: the people rendered.
        pool_epochs: Epochs over the pool.
        pool_lr: Adam learning rate of that distillation.
        pool_temperature: Temperature of the teacher's and the student's softmax.
    """

    pool: str | None = None
    pool_subjects: int = 100
    pool_epochs: int = 20
    pool_lr: float = 1e-4
    pool_temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.pool is not None and (not isinstance(self.pool, str) or not self.pool.strip()):
            raise ValueError(f"student.pool must be {SYNTHETIC_POOL!r}, a folder of face images or null (no "
                             f"distillation before the stream), got {self.pool!r}")
        _checks.finite(self, "student")
        for name in ("pool_subjects", "pool_epochs"):
            _checks.positive("student", name, getattr(self, name))
        for name in ("pool_lr", "pool_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"student.{name} must be > 0, got {getattr(self, name)!r}")
