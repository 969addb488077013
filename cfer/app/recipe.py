"""Which teacher recipe a run uses: ``teacher.recipe`` resolved against the data.

``auto`` picks the photo recipe (:func:`cfer.continual.teacher.photo_recipe`) for a user's
dataset (``data.path``) and the fast defaults of :class:`~cfer.continual.teacher.TeacherConfig`
for the synthetic faces, whose rendering already varies pose and lighting and whose runs
must stay quick. ``teacher.epochs``, ``patience`` and ``lr`` override the recipe's.

Example:
    >>> from cfer.app.config import RunConfig
    >>> name, tc = teacher_config(RunConfig())
    >>> name, tc.augment, tc.max_epochs
    ('fast', 'shift', 15)
"""

from __future__ import annotations

import dataclasses

from cfer.app.config import RunConfig
from cfer.continual.teacher import TeacherConfig, photo_recipe

__all__ = ["resolve_recipe", "recipe_config", "teacher_config"]


def resolve_recipe(recipe: str, *, user_data: bool) -> str:
    """``"photo"`` or ``"fast"``: ``recipe`` with ``auto`` resolved (photo for a user's data)."""
    if recipe != "auto":
        return recipe
    return "photo" if user_data else "fast"


def recipe_config(name: str) -> TeacherConfig:
    """The recipe's own :class:`TeacherConfig` (``"photo"`` or ``"fast"``)."""
    return photo_recipe() if name == "photo" else TeacherConfig()


def teacher_config(config: RunConfig, *, progress: bool = False) -> tuple[str, TeacherConfig]:
    """The recipe's name and the :class:`TeacherConfig` the run's teacher trains with."""
    name = resolve_recipe(config.teacher.recipe, user_data=config.data.path is not None)
    base = recipe_config(name)
    t, m = config.teacher, config.model
    return name, dataclasses.replace(
        base, arch=m.arch, batch_size=t.batch_size, seed=config.seed, progress=progress, weights=m.weights,
        freeze_stages=m.freeze_stages,
        max_epochs=base.max_epochs if t.epochs is None else t.epochs,
        patience=base.patience if t.patience is None else t.patience,
        lr=base.lr if t.lr is None else t.lr)
