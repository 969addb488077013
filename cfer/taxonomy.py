"""Expression names, basic/compound sets, AU prototypes and the AU -> face-region map.

Everything in cfer that names a class goes through :func:`normalize`, so
``"Happily surprised"``, ``"happily_surprised"`` and ``"HAPPILY-SURPRISED"`` are one
class, spelled canonically as ``"happily_surprised"``.

The AU table (:data:`AU_PROFILES`) transcribes Table 1 of

    S. Du, Y. Tao and A. M. Martinez (2014). "Compound facial expressions of emotion".
    PNAS 111(15): E1454-E1462. doi:10.1073/pnas.1322355111

For each of the 6 basic and 15 compound categories the paper lists the AUs active in
more than 70% of its 230 subjects (``prototypical``) and, in brackets, AUs used by some
subjects only, with the share of subjects who used them (``optional``). Neutral has
no active AU by definition.

Example:
    >>> from cfer import taxonomy
    >>> taxonomy.normalize("Happily Surprised")
    'happily_surprised'
    >>> taxonomy.CONSTITUENTS["happily_surprised"]
    ('happy', 'surprised')
    >>> taxonomy.AU_PROFILES["happy"].prototypical
    (12, 25)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

__all__ = [
    "NEUTRAL",
    "BASIC",
    "COMPOUND",
    "ALL_CLASSES",
    "CONSTITUENTS",
    "AUProfile",
    "AU_PROFILES",
    "AU_NAMES",
    "AUS",
    "REGIONS",
    "AU_REGIONS",
    "RAFDB_BASIC_LABELS",
    "RAFDB_COMPOUND_LABELS",
    "FER2013_LABELS",
    "normalize",
    "normalize_many",
    "display_name",
    "is_basic",
    "is_compound",
    "class_index",
    "regions_of",
]

NEUTRAL = "neutral"
"""Canonical name of the neutral expression."""

BASIC: tuple[str, ...] = ("happy", "sad", "fearful", "angry", "surprised", "disgusted")
"""The six basic expressions, in the order of Du et al.'s Table 1."""

COMPOUND: tuple[str, ...] = (
    "happily_surprised",
    "happily_disgusted",
    "sadly_fearful",
    "sadly_angry",
    "sadly_surprised",
    "sadly_disgusted",
    "fearfully_angry",
    "fearfully_surprised",
    "fearfully_disgusted",
    "angrily_surprised",
    "angrily_disgusted",
    "disgustedly_surprised",
    "appalled",
    "hatred",
    "awed",
)
"""The fifteen compound expressions of the CFEE set (Du, Tao & Martinez 2014)."""

ALL_CLASSES: tuple[str, ...] = (NEUTRAL, *BASIC, *COMPOUND)
"""All 22 classes: neutral, then the basic, then the compound expressions."""

CONSTITUENTS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "happily_surprised": ("happy", "surprised"),
        "happily_disgusted": ("happy", "disgusted"),
        "sadly_fearful": ("sad", "fearful"),
        "sadly_angry": ("sad", "angry"),
        "sadly_surprised": ("sad", "surprised"),
        "sadly_disgusted": ("sad", "disgusted"),
        "fearfully_angry": ("fearful", "angry"),
        "fearfully_surprised": ("fearful", "surprised"),
        "fearfully_disgusted": ("fearful", "disgusted"),
        "angrily_surprised": ("angry", "surprised"),
        "angrily_disgusted": ("angry", "disgusted"),
        "disgustedly_surprised": ("disgusted", "surprised"),
        # Du et al. describe appalled and hatred as variants of angrily disgusted
        # (disgust first for appalled, anger first for hatred) and awe as a variant
        # of fearfully surprised.
        "appalled": ("disgusted", "angry"),
        "hatred": ("angry", "disgusted"),
        "awed": ("fearful", "surprised"),
    }
)
"""Each compound class's two constituent basic classes (the first is the adverb's)."""


@dataclass(frozen=True)
class AUProfile:
    """The action units of one expression class.

    Attributes:
        prototypical: AUs used by more than 70% of subjects.
        optional: AUs used by some subjects only, mapped to the share of subjects
            (0-1) who used them.
    """

    prototypical: tuple[int, ...]
    optional: Mapping[int, float] = field(default_factory=dict)

    @property
    def all_aus(self) -> tuple[int, ...]:
        """Prototypical and optional AUs, sorted."""
        return tuple(sorted({*self.prototypical, *self.optional}))


def _profile(proto: tuple[int, ...], optional: dict[int, int]) -> AUProfile:
    return AUProfile(
        prototypical=proto,
        optional=MappingProxyType({au: pct / 100.0 for au, pct in optional.items()}),
    )


# Du, Tao & Martinez (2014), PNAS, Table 1: "Prototypical AUs and variants".
# Left: AUs active in >70% of subjects; right: {AU: % of subjects using it}.
AU_PROFILES: Mapping[str, AUProfile] = MappingProxyType(
    {
        NEUTRAL: _profile((), {}),
        "happy": _profile((12, 25), {6: 51}),
        "sad": _profile((4, 15), {1: 60, 6: 50, 11: 26, 17: 67}),
        "fearful": _profile((1, 4, 20, 25), {2: 57, 5: 63, 26: 33}),
        "angry": _profile((4, 7, 24), {10: 26, 17: 52, 23: 29}),
        "surprised": _profile((1, 2, 25, 26), {5: 66}),
        "disgusted": _profile((9, 10, 17), {4: 31, 24: 26}),
        "happily_surprised": _profile((1, 2, 12, 25), {5: 64, 26: 67}),
        "happily_disgusted": _profile((10, 12, 25), {4: 32, 6: 61, 9: 59}),
        "sadly_fearful": _profile((1, 4, 20, 25), {2: 46, 5: 24, 6: 34, 15: 30}),
        "sadly_angry": _profile((4, 15), {6: 26, 7: 48, 11: 20, 17: 50}),
        "sadly_surprised": _profile((1, 4, 25, 26), {2: 27, 6: 31}),
        "sadly_disgusted": _profile(
            (4, 10), {1: 49, 6: 61, 9: 20, 11: 35, 15: 54, 17: 47, 25: 43}
        ),
        "fearfully_angry": _profile((4, 20, 25), {5: 40, 7: 39, 10: 30, 11: 33}),
        "fearfully_surprised": _profile(
            (1, 2, 5, 20, 25), {4: 47, 10: 35, 11: 22, 26: 51}
        ),
        "fearfully_disgusted": _profile(
            (1, 4, 10, 20, 25), {2: 64, 5: 50, 6: 26, 9: 28, 15: 33}
        ),
        "angrily_surprised": _profile((4, 25, 26), {5: 35, 7: 50, 10: 34}),
        "angrily_disgusted": _profile((4, 10, 17), {7: 60, 9: 57, 24: 36}),
        "disgustedly_surprised": _profile((1, 2, 5, 10), {4: 45, 9: 37, 17: 66, 24: 33}),
        "appalled": _profile((4, 10), {6: 25, 9: 56, 17: 67, 24: 36}),
        "hatred": _profile((4, 10), {7: 57, 9: 27, 17: 63, 24: 37}),
        "awed": _profile((1, 2, 5, 25), {4: 21, 20: 62, 26: 56}),
    }
)
"""Prototypical and optional AUs of every class (Du, Tao & Martinez 2014, Table 1)."""

AU_NAMES: Mapping[int, str] = MappingProxyType(
    {
        1: "inner brow raiser",
        2: "outer brow raiser",
        4: "brow lowerer",
        5: "upper lid raiser",
        6: "cheek raiser",
        7: "lid tightener",
        9: "nose wrinkler",
        10: "upper lip raiser",
        11: "nasolabial deepener",
        12: "lip corner puller",
        15: "lip corner depressor",
        17: "chin raiser",
        20: "lip stretcher",
        23: "lip tightener",
        24: "lip pressor",
        25: "lips part",
        26: "jaw drop",
    }
)
"""FACS names of every AU that appears in :data:`AU_PROFILES`."""

AUS: tuple[int, ...] = tuple(sorted(AU_NAMES))
"""The AUs cfer models, in the order used by AU intensity vectors."""

REGIONS: tuple[str, ...] = ("forehead", "brows", "eyes", "nose", "cheeks", "mouth", "chin")
"""The facial regions used for masks and region attention, top to bottom."""

AU_REGIONS: Mapping[int, tuple[str, ...]] = MappingProxyType(
    {
        1: ("brows", "forehead"),  # inner brows up, horizontal forehead lines
        2: ("brows", "forehead"),  # outer brows up, forehead lines
        4: ("brows",),  # brows down and together, vertical furrows between them
        5: ("eyes",),  # upper lid up, eyes wide
        6: ("cheeks", "eyes"),  # cheeks up, lower lids pushed up, crow's feet
        7: ("eyes",),  # lids narrowed
        9: ("nose",),  # wrinkles across the nose bridge
        10: ("mouth", "nose"),  # upper lip up, nostril wings raised
        11: ("cheeks",),  # nasolabial furrow deepened
        12: ("mouth", "cheeks"),  # lip corners pulled up and out
        15: ("mouth",),  # lip corners pulled down
        17: ("chin", "mouth"),  # chin boss pushed up, lower lip pushed up
        20: ("mouth", "cheeks"),  # lips stretched sideways, skin beside the corners pulled
        23: ("mouth",),  # lips tightened, narrowed
        24: ("mouth",),  # lips pressed together
        25: ("mouth",),  # lips parted
        26: ("mouth", "chin"),  # jaw dropped
    }
)
"""Where each AU shows on the face (first entry: where it shows most)."""

# RAF-DB, EmoLabel/list_patition_label.txt ids (1-based).
RAFDB_BASIC_LABELS: Mapping[int, str] = MappingProxyType(
    {1: "surprised", 2: "fearful", 3: "disgusted", 4: "happy", 5: "sad", 6: "angry", 7: NEUTRAL}
)
"""RAF-DB basic label ids -> canonical names."""

RAFDB_COMPOUND_LABELS: Mapping[int, str] = MappingProxyType(
    {
        1: "happily_surprised",
        2: "happily_disgusted",
        3: "sadly_fearful",
        4: "sadly_angry",
        5: "sadly_surprised",
        6: "sadly_disgusted",
        7: "fearfully_angry",
        8: "fearfully_surprised",
        9: "angrily_surprised",
        10: "angrily_disgusted",
        11: "disgustedly_surprised",
    }
)
"""RAF-DB compound label ids (its 11-class compound set) -> canonical names."""

FER2013_LABELS: Mapping[int, str] = MappingProxyType(
    {0: "angry", 1: "disgusted", 2: "fearful", 3: "happy", 4: "sad", 5: "surprised", 6: NEUTRAL}
)
"""FER2013 ``emotion`` column ids -> canonical names."""

# Spellings seen in data sets and papers, after separator/case folding.
_ALIASES: dict[str, str] = {
    "neutrality": NEUTRAL,
    "calm": NEUTRAL,
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "fear": "fearful",
    "afraid": "fearful",
    "scared": "fearful",
    "anger": "angry",
    "mad": "angry",
    "surprise": "surprised",
    "disgust": "disgusted",
    "appall": "appalled",
    "appal": "appalled",
    "hate": "hatred",
    "hated": "hatred",
    "awe": "awed",
}
_ADVERBS = {"happily": "happy", "sadly": "sad", "fearfully": "fearful", "angrily": "angry",
            "disgustedly": "disgusted"}
_CANONICAL = set(ALL_CLASSES)


def _fold(name: str) -> str:
    return re.sub(r"[\s_\-./]+", "_", name.strip().lower()).strip("_")


def normalize(name: str) -> str:
    """Return the canonical spelling of an expression name.

    Case, spaces, hyphens and underscores are ignored, and common noun forms
    ("happiness", "fear", "disgust") map to their class.

    Args:
        name: Any spelling of a class name.

    Returns:
        The canonical name, one of :data:`ALL_CLASSES`.

    Raises:
        ValueError: If the name is not a known class; the message lists the closest
            known names.

    Example:
        >>> normalize("HAPPILY-SURPRISED")
        'happily_surprised'
        >>> normalize("Fear")
        'fearful'
    """
    if not isinstance(name, str):
        raise TypeError(f"expression name must be a string, got {type(name).__name__}: {name!r}")
    folded = _fold(name)
    if folded in _CANONICAL:
        return folded
    if folded in _ALIASES:
        return _ALIASES[folded]
    # "surprised_happily" / "happy_surprised" style spellings of a compound.
    parts = folded.split("_")
    if len(parts) == 2:
        to_adverb = {adj: adv for adv, adj in _ADVERBS.items()}
        for first, second in (parts, parts[::-1]):
            first = _ALIASES.get(first, first)
            adverb = first if first in _ADVERBS else to_adverb.get(first)
            if adverb is not None:
                candidate = f"{adverb}_{_ALIASES.get(second, second)}"
                if candidate in _CANONICAL:
                    return candidate
    closest = difflib.get_close_matches(folded, ALL_CLASSES, n=3, cutoff=0.5)
    hint = f"closest known names: {closest}" if closest else f"known names: {list(ALL_CLASSES)}"
    raise ValueError(f"unknown expression {name!r}; {hint}")


def normalize_many(names: "list[str] | tuple[str, ...]") -> tuple[str, ...]:
    """Normalise several names and refuse duplicates.

    Args:
        names: Class names in any spelling.

    Returns:
        The canonical names, in the given order.

    Raises:
        ValueError: If a name is unknown or two names are the same class.

    Example:
        >>> normalize_many(["Happy", "sadly angry"])
        ('happy', 'sadly_angry')
    """
    out = tuple(normalize(n) for n in names)
    seen: dict[str, str] = {}
    for raw, canon in zip(names, out):
        if canon in seen:
            raise ValueError(
                f"{raw!r} and {seen[canon]!r} are the same class {canon!r}; list each class once"
            )
        seen[canon] = raw
    return out


def display_name(name: str) -> str:
    """Human-readable form of a class name.

    Example:
        >>> display_name("happily_surprised")
        'happily surprised'
    """
    return normalize(name).replace("_", " ")


def is_basic(name: str) -> bool:
    """True for the six basic expressions (neutral is neither basic nor compound)."""
    return normalize(name) in BASIC


def is_compound(name: str) -> bool:
    """True for the fifteen compound expressions."""
    return normalize(name) in COMPOUND


def class_index(name: str) -> int:
    """Position of a class in :data:`ALL_CLASSES` (a stable global id).

    Example:
        >>> class_index("neutral"), class_index("happy"), class_index("awed")
        (0, 1, 21)
    """
    return ALL_CLASSES.index(normalize(name))


def regions_of(name: str, *, include_optional: bool = False) -> tuple[str, ...]:
    """The facial regions where a class's AUs show, in :data:`REGIONS` order.

    Args:
        name: A class name.
        include_optional: Also count the class's optional AUs.

    Example:
        >>> regions_of("happy")
        ('cheeks', 'mouth')
    """
    profile = AU_PROFILES[normalize(name)]
    aus = profile.all_aus if include_optional else profile.prototypical
    hit = {r for au in aus for r in AU_REGIONS[au]}
    return tuple(r for r in REGIONS if r in hit)
