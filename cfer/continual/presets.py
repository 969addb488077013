"""The cfer strategy's two presets: ``published`` (the method as published, exactly) and ``cfer`` (the default).

=============  ========================================================================
preset         what it is
=============  ========================================================================
``published``  Maiden & Nakisa (2023): logit distillation from the frozen basic teacher
               with ``g_i = 0.1 * exp(-i / (1 + e))`` and ``T = 3``, no feature term;
               predictive-sorting replay (PSMR) in ``grow`` mode, half-memory
               mini-batches; the linear head predicts. Nothing else.
``cfer``       The best method the comparison in ``docs/benchmarks.md`` found on
               validation subjects: the published distillation plus feature
               distillation, distillation from the previous step's student, PSMR
               with the same budget at every step (``limit``) that herds a new
               class's items within its better-recognised half and gives a class the
               teacher knows half the items of a later class, training on new data
               and the whole memory, logit adjustment against the new-class prior,
               weight aligning of the head after each step, mirror images in half
               of the training faces, and prediction by nearest class mean over the
               memory items and their mirror images (see :data:`PRESETS` for the
               values).
=============  ========================================================================

``make_strategy("published")`` and ``make_strategy("cfer")`` build them;
``CferConfig()`` holds the ``cfer`` preset's values, so ``make_strategy("cfer",
cfer=CferConfig(...))`` starts from it. Both names are written into ``cfer run``'s
``metrics.json`` and report.

Example:
    >>> from cfer.continual.presets import PRESETS, preset_config
    >>> preset_config("published").feature_weight
    0.0
    >>> preset_config("cfer", logit_adjustment=0.5).logit_adjustment
    0.5
"""

from __future__ import annotations

import dataclasses
import difflib

from cfer.continual.factory import CferConfig

__all__ = ["PRESETS", "preset_config", "describe_preset"]

PRESETS: dict[str, CferConfig] = {
    "published": CferConfig(gamma0=0.1, temperature=3.0, first_step=1, t_squared=False, feature_weight=0.0,
                            feature_samples="all",
                            psmr_mode="grow", psmr_scorer="current", psmr_rescore_old=False,
                            psmr_new_class_selection="sorted", psmr_score="softmax", psmr_first_step_weight=1.0,
                            logit_adjustment=0.0,
                            nearest_mean="off", nearest_mean_mirror=False, nearest_mean_head_weight=0.0,
                            balanced_epochs=0, replay_batches="mixed", criterion="ce", previous_weight=0.0,
                            previous_weight_scale="constant", previous_feature_weight=0.0,
                            weight_aligning=False, mirror_training=False, shift_training=0),
    "cfer": CferConfig(),
}
"""The presets by name (``CferConfig()`` is the ``cfer`` preset)."""


def preset_config(name: str, **overrides: object) -> CferConfig:
    """A preset's :class:`~cfer.continual.factory.CferConfig`, with ``overrides`` on top.

    Args:
        name: ``"published"`` or ``"cfer"``.
        **overrides: ``CferConfig`` fields to change; ``None`` values are ignored. The
            ``published`` preset takes none: it is the method as published.

    Raises:
        ValueError: For an unknown preset, an unknown field, or an override of ``published``.
    """
    key = str(name).strip().lower()
    if key not in PRESETS:
        close = difflib.get_close_matches(key, PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown preset {name!r}{hint}; choose one of {list(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(CferConfig)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f"unknown cfer option(s) {unknown}; the options are {sorted(fields)}")
    base = PRESETS[key]
    real = {k: v for k, v in changes.items() if getattr(base, k) != v}
    if key == "published" and real:
        raise ValueError(f"the 'published' preset is the method as published and takes no options (got {real}); "
                         "use the 'cfer' strategy to change them")
    return dataclasses.replace(base, **changes)


def describe_preset(name: str, config: CferConfig) -> dict:
    """``{"preset": name, "options": {...}}``: what a run records of its strategy."""
    return {"preset": name, "options": dataclasses.asdict(config)}
