"""The student of ``cfer run``: how it starts, and what it learns before the stream.

Three starts (``model.student_arch``):

* none given: a copy of the teacher (what the published method does);
* an architecture name: a network of its own, which first learns the basic classes for
  ``continual.basic_epochs`` epochs with distillation from the teacher;
* ``member:NAME`` (or ``member:INDEX``; ``NAME#I`` for a repeated arch, as the report names
  it; ``member:best``, the member most accurate on the validation faces) under an ensemble
  teacher: a copy of that trained member
  (:func:`cfer.continual.growing.member_classifier`), which knows the basic classes already
  and distils the fused ensemble from the first compound step on.

With ``student.pool`` a member's copy first learns to match the fused ensemble's output on
unlabelled faces (:func:`cfer.continual.unlabelled_distillation.distil_unlabelled`):
the run's basic training faces plus rendered faces of other people (``synthetic``) or the
faces of a folder (cut out by the run's face cropper, when it has one).

Example:
    >>> from cfer.app.config import ModelSection, RunConfig
    >>> student_arch(RunConfig(model=ModelSection(arch="resemotenet_slim")), teacher=None)
    'resemotenet_slim'
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from cfer.app.config_checks import MEMBER_PREFIX
from cfer.app.config_student import SYNTHETIC_POOL

if TYPE_CHECKING:
    from cfer.app.config import RunConfig
    from cfer.app.prepare import RunData

__all__ = ["student_for_order", "student_arch", "student_member", "pool_faces", "BEST_MEMBER"]

BEST_MEMBER = "best"
"""``member:best``: the member most accurate on the validation faces."""

logger = logging.getLogger(__name__)


def _member(config: RunConfig) -> int | str | None:
    """The member ``model.student_arch`` names (an index or a name), None for another student."""
    own = config.model.student_arch
    if own is None or not own.startswith(MEMBER_PREFIX):
        return None
    name = own[len(MEMBER_PREFIX):].strip()
    _, sep, index = name.rpartition("#")  # "resemotenet_slim#1": a repeated arch, as the report names it
    return int(name) if name.isdigit() else int(index) if sep and index.isdigit() else name


def _member_index(config: RunConfig, teacher: Any, data: RunData | None) -> int:
    """The index of the member ``member:NAME`` names (a name picks the first member of that arch);
    ``member:best``, the member most accurate on the validation faces
    (:func:`cfer.continual.growing.best_member`)."""
    from cfer.continual.growing import best_member

    member = _member(config)
    if member == BEST_MEMBER:
        if data is None:
            raise ValueError("member:best picks a member on the validation faces; pass the run's data")
        return best_member(teacher, data=data.val, classes=tuple(data.basic))
    if isinstance(member, str):
        names = [m.name for m in teacher.members]
        if member not in names:
            raise ValueError(f"the ensemble has no member {member!r}; its members are {names}")
        return names.index(member)
    return member


def student_arch(config: RunConfig, *, teacher: Any, data: RunData | None = None) -> str:
    """The architecture the final student is saved under (what rebuilds it from its file):
    the member's own arch for ``member:NAME``, else ``model.student_arch`` or the teacher's
    (``data``: for ``member:best``, which is chosen on its validation faces)."""
    if _member(config) is None:
        return config.model.student_arch or config.model.arch
    return teacher.members[_member_index(config, teacher, data)].name


def student_member(config: RunConfig, *, teacher: Any, data: RunData) -> str | None:
    """The member the student copies, as the report names it (``resemotenet_slim#1`` for a
    repeated arch), or None when it copies no member."""
    if _member(config) is None:
        return None
    return teacher.member_names[_member_index(config, teacher, data)]


def pool_faces(config: RunConfig, data: RunData, *, progress: bool = False) -> torch.Tensor:
    """The faces of the pool distillation: the basic training faces and ``student.pool``'s.

    Args:
        config: The run's config (``student.pool`` set).
        data: The run's data (its training faces of the basic classes join the pool).
        progress: Show a bar while the pool is rendered or read.

    Returns:
        Float faces ``(N, C, S, S)`` in ``[0, 1]``, as the models see the run's faces.
    """
    from cfer.continual.evaluation import inputs_of

    d, s = config.data, config.student
    channels = 1 if d.grey else 3
    train = data.train
    basic = np.flatnonzero(np.isin(np.asarray(train.classes)[train.labels], data.basic))
    if s.pool == SYNTHETIC_POOL:  # people after the run's own (same seed): none of them is in the run
        from cfer.data.synthetic import render_faces

        first = sum(d.synthetic_subjects) if d.path is None else 0
        images = render_faces(classes="all", n_subjects=s.pool_subjects, per_class=1, image_size=d.image_size,
                              channels=channels, difficulty=d.synthetic_difficulty, seed=config.seed,
                              first_subject=first, progress=progress).images
    else:
        from cfer.data.align import face_cropper
        from cfer.pretrain.images import read_unlabelled

        cropper = face_cropper(crop=d.crop_faces, align=d.align_faces, margin=d.crop_margin,
                               min_neighbors=d.crop_min_neighbors, cascade=d.crop_cascade) or None
        images = read_unlabelled(s.pool, image_size=d.image_size, channels=channels, skip_invalid=d.skip_invalid,
                                 progress=progress, cropper=cropper)
    pool = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    logger.info("student pool: %d basic training faces and %d unlabelled faces (%s)", len(basic), len(pool), s.pool)
    return torch.cat([inputs_of(train, basic), pool])


def student_for_order(config: RunConfig, data: RunData, *, teacher: Any, seed: int,
                      pool: Callable[[], torch.Tensor] | None = None, progress: bool = False) -> dict:
    """``run_order``'s ``student`` and ``basic_epochs`` for one class order ({} for the teacher's copy).

    Args:
        config: The run's config.
        data: The run's data.
        teacher: The trained teacher (an ensemble for ``member:NAME``).
        seed: The order's seed (a student of its own is initialised from it; the pool
            distillation's shuffles and flips are drawn from it).
        pool: Gives the faces of the pool distillation (:func:`pool_faces`, read once for
            every order); None skips it (an order that resumes from its checkpoint, which
            holds the distilled student's weights already).
        progress: Show a bar over the pool distillation's epochs.

    Raises:
        ValueError: If ``member:NAME`` names no member of the teacher, or a member that
            cannot stand alone.
    """
    from cfer.continual.growing import build_model, member_classifier

    member = _member(config)
    if config.model.student_arch is None:
        return {}
    if member is not None:
        index = _member_index(config, teacher, data)
        logger.info("student: a copy of the teacher's member %s", teacher.member_names[index])
        student, basic_epochs = member_classifier(teacher, member=index), 0
    else:
        d = config.data
        student = build_model(arch=config.model.student_arch, num_classes=len(data.basic),
                              in_chans=1 if d.grey else 3, img_size=d.image_size, seed=seed)
        basic_epochs = config.continual.basic_epochs
    if config.student.pool is not None and pool is not None:
        from cfer.continual.unlabelled_distillation import distil_unlabelled

        s = config.student
        history = distil_unlabelled(student=student, teacher=teacher, images=pool(), epochs=s.pool_epochs,
                                    lr=s.pool_lr, temperature=s.pool_temperature, seed=seed, device=config.device,
                                    progress=progress)
        logger.info("student distilled on the pool for %d epochs: KL %.4f -> %.4f", s.pool_epochs, history[0],
                    history[-1])
    return {"student": student, "basic_epochs": basic_epochs}
