"""How the run report says, in words, what a run did: the teacher's recipe, the student's start
and the strategy it learnt the compound classes with.

Example:
    >>> recipe_words("fast").startswith("fast recipe")
    True
"""

from __future__ import annotations

import html

from cfer.app.config import RunConfig
from cfer.app.config_checks import MEMBER_PREFIX

__all__ = ["recipe_words", "student_start", "strategy_words"]


def recipe_words(recipe: str | None) -> str:
    """The teacher's recipe, in words, from ``metrics["teacher"]["recipe"]``."""
    if recipe == "photo":
        return ("photo recipe (face augmentation, AdamW, label smoothing 0.1, warm-up and cosine decay; "
                "<code>--teacher-recipe</code>)")
    if recipe == "fast":
        return "fast recipe (flips and shifts, Adam; <code>--teacher-recipe photo</code> for real photos)"
    return "recipe of an older run"


def student_start(config: RunConfig, *, member: str | None = None) -> str:
    """How the report says the student began: a copy of the teacher, a copy of one of its members
    (distilled on unlabelled faces first, where the run says so), or a network of its own;
    ``member``: the member it copied, as the run recorded it."""
    own, pool = config.model.student_arch, config.student.pool
    if own is None:
        return "the student starts as its copy and learns"
    if own.startswith(MEMBER_PREFIX):
        first = (f", first distilled from the fused ensemble for {config.student.pool_epochs} epochs on unlabelled "
                 f"faces ({html.escape(pool)}) and the basic training faces," if pool else "")
        name = own[len(MEMBER_PREFIX):].strip()
        chosen = f" ({html.escape(member)})" if member else ""
        which = (f"member most accurate on the validation faces{chosen}" if name == "best"
                 else f"member {html.escape(name)}")
        return f"the student starts as a copy of its {which}{first} and learns"
    return (f"the student, a {html.escape(own)} of its own, first learns the basic classes for "
            f"{config.continual.basic_epochs} epochs with distillation from the teacher, then")


def _first_step_share(options: dict) -> str:
    w = options.get("psmr_first_step_weight", 1.0)
    return "" if w == 1.0 else f"; a basic class keeps {w:g}× the memory items of a compound class"


def strategy_words(strategy: dict | None) -> str:
    """How the student learnt, in words, from ``metrics["continual"]["strategy"]``."""
    o = (strategy or {}).get("options")
    if not o:  # a run written before presets existed
        return "distillation from the frozen teacher and predictive-sorting replay"
    rule = "the head" if o["nearest_mean"] == "off" else "nearest class mean"
    shift = o.get("shift_training", 0)
    moved = f"shifts of up to {shift} pixel{'s' if shift > 1 else ''} in training, " if shift else ""
    head = ("weight aligning, " if o.get("weight_aligning") else "") + ("mirror images in training, " if o.get(
        "mirror_training") else "") + moved + f"prediction by {rule}"
    return (f"the <b>{html.escape(strategy['preset'])}</b> strategy: distillation from the frozen teacher (γ₀="
            f"{o['gamma0']}, T={o['temperature']}, feature weight {o['feature_weight']}), predictive-sorting replay ("
            f"{o['psmr_mode']} mode{_first_step_share(o)}), logit adjustment τ={o['logit_adjustment']}, {head}")
