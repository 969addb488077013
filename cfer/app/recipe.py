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
from cfer.app.config_checks import resolve_recipe
from cfer.continual.teacher import TeacherConfig, photo_recipe

__all__ = ["clip_model", "recipe_teacher", "teacher_config"]


def recipe_teacher(recipe: str, *, user_data: bool, epochs: int | None = None, patience: int | None = None,
                   lr: float | None = None, **fields: object) -> tuple[str, TeacherConfig]:
    """``recipe`` resolved (``auto``: photo for a user's data, else fast) and its
    :class:`TeacherConfig` with ``fields`` set and ``epochs``, ``patience``, ``lr`` overriding
    the recipe's where given.

    Example:
        >>> recipe_teacher("auto", user_data=True, epochs=5)[1].max_epochs
        5
    """
    name = resolve_recipe(recipe, user_data=user_data)
    base = photo_recipe() if name == "photo" else TeacherConfig()
    return name, dataclasses.replace(
        base, **fields,
        max_epochs=base.max_epochs if epochs is None else epochs,
        patience=base.patience if patience is None else patience,
        lr=base.lr if lr is None else lr)


def clip_model(config: RunConfig) -> tuple[str, dict]:
    """The model a run on clips (``data.format: clips``) trains: ``(arch, options)``.

    A temporal arch (``temporal_slim``, ``temporal_tiny``, ...) is used as given; an image
    arch (``resemotenet_slim``, a timm name, ...) becomes the frame encoder of
    ``temporal_slim``. The options carry the run's clip layout, and are saved with the model.

    Example:
        >>> from cfer.app.config import DataSection, ModelSection
        >>> arch, opts = clip_model(RunConfig(data=DataSection(path="c.csv", format="clips"),
        ...                                   model=ModelSection(arch="cfer_tiny")))
        >>> arch, opts["frame_encoder"], opts["layout"]["frames"]
        ('temporal_slim', 'cfer_tiny', 8)
    """
    from cfer.app.prepare import clip_layout

    arch, options = config.model.arch, {"layout": clip_layout(config).as_dict()}
    if not arch.startswith("temporal"):
        arch, options["frame_encoder"] = "temporal_slim", arch
    return arch, options


def teacher_config(config: RunConfig, *, progress: bool = False) -> tuple[str, TeacherConfig]:
    """The recipe's name and the :class:`TeacherConfig` the run's teacher trains with
    (on clips: :func:`clip_model`'s model, augmented by the clips' random temporal crops only)."""
    t, m = config.teacher, config.model
    clips = {}
    if config.data.format == "clips":
        arch, options = clip_model(config)
        clips = dict(arch=arch, arch_options=options, augment="none")
    return recipe_teacher(t.recipe, user_data=config.data.path is not None, epochs=t.epochs, patience=t.patience,
                          lr=t.lr, batch_size=t.batch_size, seed=config.seed, progress=progress,
                          weights=m.weights, freeze_stages=m.freeze_stages, device=config.device,
                          precision=config.precision, compile=config.compile,
                          member_training=t.member_training, precise_bn=t.precise_bn, mixup=t.mixup,
                          layer_decay=t.layer_decay,
                          **{"arch": m.arch, **clips})
