"""The value checks every section of the run config shares; each error names the key.

Example:
    >>> positive("continual", "epochs", 0)
    Traceback (most recent call last):
    ...
    ValueError: continual.epochs must be a positive whole number, got 0
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

__all__ = ["finite", "positive", "fraction", "run_level", "continual_method", "teacher_section"]

STRATEGIES = ("cfer", "published")
"""The presets ``continual.strategy`` names (:mod:`cfer.continual.presets`)."""

MEMBER_PREFIX = "member:"
"""``model.student_arch``'s prefix for a copy of an ensemble teacher's member (``member:NAME``)."""

METHOD_KEYS = ("psmr_mode", "gamma0", "temperature", "feature_weight", "logit_adjustment", "nearest_mean",
               "previous_weight", "previous_weight_scale", "head", "weight_aligning", "mirror_training",
               "psmr_first_step_weight", "shift_training")
"""``continual`` keys that change the ``cfer`` preset (None: the preset's value)."""


def finite(section: Any, prefix: str) -> None:
    """Refuse NaN and infinity in every number of a section (a run would train to the end
    and then fail writing its report, and every ``--resume`` the same way)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"{prefix}.{f.name} must be a finite number, got {value!r}")


MEMBER_TRAINING = ("joint", "one_by_one")
"""``teacher.member_training`` (:data:`cfer.continual.teacher.MEMBER_TRAINING`)."""


def resolve_recipe(recipe: str, *, user_data: bool) -> str:
    """``teacher.recipe`` with ``auto`` resolved: ``photo`` for a user's data, else ``fast``."""
    return recipe if recipe != "auto" else ("photo" if user_data else "fast")


def teacher_section(section: Any, *, recipes: tuple[str, ...]) -> None:
    """The ``teacher`` section's values: recipe, epochs, patience, batch size, lr, member training, precise BN,
    mixup, layer decay."""
    if section.recipe not in recipes:
        raise ValueError(f"teacher.recipe must be one of {list(recipes)}, got {section.recipe!r}")
    for name in ("epochs", "patience", "batch_size"):
        if getattr(section, name) is not None:
            positive("teacher", name, getattr(section, name))
    if section.lr is not None and not section.lr > 0:
        raise ValueError(f"teacher.lr must be > 0, got {section.lr}")
    if section.member_training not in MEMBER_TRAINING:
        raise ValueError(f"teacher.member_training must be one of {list(MEMBER_TRAINING)}, got "
                         f"{section.member_training!r}")
    if not isinstance(section.precise_bn, bool):
        raise ValueError(f"teacher.precise_bn must be true or false, got {section.precise_bn!r}")
    if isinstance(section.mixup, bool) or not isinstance(section.mixup, (int, float)) or section.mixup < 0:
        raise ValueError(f"teacher.mixup must be a number >= 0 (0: none; 0.2 to 1 are usual), got {section.mixup!r}")
    if isinstance(section.layer_decay, bool) or not isinstance(section.layer_decay, (int, float)):
        raise ValueError(f"teacher.layer_decay must be a number in (0, 1] (1: none), got {section.layer_decay!r}")
    fraction("teacher", "layer_decay", section.layer_decay)


def positive(section: str, name: str, value: Any) -> None:
    """Refuse anything but a whole number >= 1 (``True`` included)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{section}.{name} must be a positive whole number, got {value!r}")


def fraction(section: str, name: str, value: float, *, zero_ok: bool = False) -> None:
    """Refuse a value outside ``(0, 1]`` (``[0, 1]`` with ``zero_ok``)."""
    lo_ok = value >= 0 if zero_ok else value > 0
    if not (lo_ok and value <= 1):
        bound = "[0, 1]" if zero_ok else "(0, 1]"
        raise ValueError(f"{section}.{name} must lie in {bound}, got {value!r}")


def run_level(config: Any, *, max_seed: int) -> None:
    """The options of the run itself: ``seed``, ``threads``, ``workers``, ``device``, ``precision``; and the
    options that depend on other sections (the teacher's mixup on clips, layer decay's optimiser, one-by-one
    members; the compound order; a member's copy as the student, the student's pool)."""
    from cfer.distributed import DEVICES, PRECISIONS

    if isinstance(config.seed, bool) or not isinstance(config.seed, int):
        raise ValueError(f"seed must be a whole number, got {config.seed!r}")
    if not 0 <= config.seed <= max_seed:
        raise ValueError(f"seed must lie in [0, {max_seed}] (what NumPy and torch accept), got {config.seed}")
    positive("run", "threads", config.threads)
    if isinstance(config.workers, bool) or not isinstance(config.workers, int) or config.workers < 0:
        raise ValueError(f"workers must be a whole number >= 0 (0: load in the main process), got {config.workers!r}")
    if not isinstance(config.device, str) or not (config.device in DEVICES or re.fullmatch(r"cuda:\d+", config.device)):
        raise ValueError(f"device must be one of {list(DEVICES)} or cuda:N, got {config.device!r}")
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {config.precision!r} (fp16 needs a "
                         "CUDA device; bf16 works on CPUs too)")
    if config.teacher.mixup and config.data.format == "clips":
        raise ValueError("teacher.mixup blends images; it does not apply to clips (data.format: clips): set it to 0")
    recipe = resolve_recipe(config.teacher.recipe, user_data=config.data.path is not None)
    if config.teacher.layer_decay < 1 and recipe != "photo":
        raise ValueError(f"teacher.layer_decay needs AdamW, which the photo recipe uses and the {recipe} recipe does "
                         "not: add --teacher-recipe photo (teacher.recipe: photo), or set teacher.layer_decay to 1")
    if config.teacher.member_training == "one_by_one" and not config.model.arch.startswith("ensemble:"):
        raise ValueError(f"teacher.member_training 'one_by_one' needs an ensemble model.arch "
                         f"('ensemble:A+B'), got {config.model.arch!r}")
    _order(config)
    _student(config)


def _order(config: Any) -> None:
    """``continual.order``: a permutation of ``classes.compound``, no basic class in it."""
    order = config.continual.order
    if order is None:
        return
    if config.classes.compound is not None and sorted(order) != sorted(config.classes.compound):
        raise ValueError(f"continual.order {list(order)} must be a permutation of classes.compound "
                         f"{list(config.classes.compound)}")
    clash = sorted(set(order) & set(config.classes.basic))
    if clash:
        raise ValueError(f"continual.order lists basic classes {clash}; it orders compound classes only")


def _student(config: Any) -> None:
    """``model.student_arch: member:NAME`` needs an ensemble teacher; ``student.pool`` such a
    member's copy, and faces (not clips)."""
    own = config.model.student_arch
    if own is not None and own.startswith(MEMBER_PREFIX):
        if not own[len(MEMBER_PREFIX):].strip():
            raise ValueError(f"model.student_arch {own!r} names no member: write member:NAME (a member's name as "
                             "model.arch spells it) or member:INDEX (0 for the first)")
        if not config.model.arch.startswith("ensemble:"):
            raise ValueError(f"model.student_arch {own!r} copies a member of an ensemble teacher, but model.arch "
                             f"{config.model.arch!r} is not an ensemble ('ensemble:A+B'); give the student an "
                             "architecture of its own or leave student_arch out (a copy of the teacher)")
    if config.student.pool is None:
        return
    if own is None or not own.startswith(MEMBER_PREFIX):
        what = "the teacher's copy (it would learn nothing)" if own is None else f"a new {own!r}"
        raise ValueError(f"student.pool distils a copy of an ensemble teacher's member before the stream (its "
                         f"BatchNorm statistics stay those of the basic faces), but the student is {what}: set "
                         "model.student_arch to member:NAME (--student-arch member:0) under an ensemble model.arch, "
                         "or leave student.pool out")
    if config.data.format == "clips":
        raise ValueError("student.pool holds face images; it does not apply to clips (data.format: clips): leave it "
                         "out")


def continual_method(section: Any) -> None:
    """``continual.strategy`` and the keys that change the ``cfer`` preset: their values,
    and none of them with ``strategy: published`` (the method as published)."""
    if section.strategy not in STRATEGIES:
        raise ValueError(f"continual.strategy must be one of {list(STRATEGIES)}, got {section.strategy!r}")
    given = {k: getattr(section, k) for k in METHOD_KEYS if getattr(section, k) is not None}
    if section.strategy == "published" and given:
        from cfer.continual.presets import preset_config

        base = preset_config("published")
        changed = sorted(k for k, v in given.items() if getattr(base, k) != v)
        if changed:
            raise ValueError(f"continual.strategy 'published' is the method as published and takes no "
                             f"{', '.join('continual.' + k for k in changed)}; use --strategy cfer to change them")
    if given.get("psmr_mode", "grow") not in ("grow", "limit"):
        raise ValueError(f"continual.psmr_mode must be 'grow' or 'limit', got {section.psmr_mode!r}")
    if given.get("nearest_mean", "off") not in ("off", "memory", "memory+new"):
        raise ValueError("continual.nearest_mean must be 'off', 'memory' or 'memory+new', "
                         f"got {section.nearest_mean!r}")
    if "gamma0" in given:
        fraction("continual", "gamma0", section.gamma0, zero_ok=True)
    if not given.get("temperature", 1.0) > 0:
        raise ValueError(f"continual.temperature must be > 0, got {section.temperature}")
    if min(given.get(k, 0) for k in ("feature_weight", "logit_adjustment", "previous_weight")) < 0:
        raise ValueError("continual.feature_weight, continual.logit_adjustment and continual.previous_weight must "
                         "be >= 0 (0 switches off)")
    if not given.get("psmr_first_step_weight", 1.0) > 0:
        raise ValueError("continual.psmr_first_step_weight must be > 0 (1: every class alike in the memory), "
                         f"got {section.psmr_first_step_weight}")
    shift = given.get("shift_training", 0)
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(f"continual.shift_training must be a whole number of pixels >= 0 (0: off), got {shift!r}")
    if given.get("head", "cosine") not in ("cosine", "linear"):
        raise ValueError(f"continual.head must be 'cosine' or 'linear', got {section.head!r}")
    if given.get("previous_weight_scale", "constant") not in ("constant", "sqrt_ratio"):
        raise ValueError("continual.previous_weight_scale must be 'constant' or 'sqrt_ratio' (weight times "
                         f"sqrt(old / new classes)), got {section.previous_weight_scale!r}")
