"""Ensemble arch strings: ``ensemble:NAME[@SIZE]+NAME[@SIZE]...[,option=value...]``.

What :func:`cfer.models.io.save_model` stores as the arch of a
:class:`~cfer.models.ensemble.LateFusionEnsemble`, what ``create_backbone``,
``cfer.continual.growing.build_model`` and ``--arch`` take. Members are timm names (cfer's
models included); ``@SIZE`` resizes a member's input to ``SIZE`` px (and builds a fixed-grid
member such as a ViT at that size). Options: ``fusion=prob|logit``, ``learn_weights=true``,
``proj_dim=N`` (each member's features projected to ``N``), ``lam=X`` (the KL weight of the
ensemble loss). Weight files are not part of the arch (give them as ``weights=``).

Example:
    >>> parse_ensemble_arch("ensemble:cfer_tiny+vit_tiny_patch16_224@32,fusion=logit")["img_sizes"]
    (None, 32)
    >>> ensemble_arch(members=["cfer_tiny", "resemotenet_slim"], img_sizes=[None, 48], fusion="logit")
    'ensemble:cfer_tiny+resemotenet_slim@48,fusion=logit'
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

from cfer.models.backbones import CFER_MODELS, ENSEMBLE_PREFIX, is_ensemble_arch, suggestions

__all__ = ["ENSEMBLE_PREFIX", "FUSIONS", "is_ensemble_arch", "parse_ensemble_arch", "ensemble_arch"]

FUSIONS = ("prob", "logit")
"""How member outputs are fused: probabilities (returned as their log) or logits."""

_GRAMMAR = "ensemble:NAME[@SIZE]+NAME[@SIZE]...[,fusion=prob|logit][,learn_weights=true][,proj_dim=N][,lam=X]"
_DEFAULTS: dict[str, Any] = {"fusion": "prob", "learn_weights": False, "proj_dim": None, "lam": 1.0}


def _flag(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("", "1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"ensemble option {key}={value!r} must be true or false")


def parse_ensemble_arch(arch: str) -> dict[str, Any]:
    """The :class:`LateFusionEnsemble` options an arch string names, member names checked.

    Raises:
        ValueError: For a malformed string (the message gives the grammar), an unknown
            option, or an unknown member name (with close timm names).

    Example:
        >>> parse_ensemble_arch("ensemble:cfer_tiny+vit_tiny_patch16_224@32,fusion=logit")["img_sizes"]
        (None, 32)
    """
    import timm

    if not is_ensemble_arch(arch):
        raise ValueError(f"{arch!r} is not an ensemble arch; write {_GRAMMAR}")
    head, *opts = arch.strip()[len(ENSEMBLE_PREFIX):].split(",")
    members, sizes = [], []
    for item in head.split("+"):
        name, _, size = item.strip().partition("@")
        if not name or (size and not size.isdigit()) or (size and int(size) < 1):
            raise ValueError(f"bad ensemble member {item!r} in {arch!r}; write {_GRAMMAR}")
        members.append(name)
        sizes.append(int(size) if size else None)
    out: dict[str, Any] = {"members": tuple(members), "img_sizes": tuple(sizes)}
    for opt in opts:
        key, _, value = opt.strip().partition("=")
        if key not in _DEFAULTS:
            close = difflib.get_close_matches(key, list(_DEFAULTS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown ensemble option {key!r}{hint} in {arch!r}; options: {list(_DEFAULTS)}")
        try:
            out[key] = (_flag(key, value) if key == "learn_weights" else int(value) if key == "proj_dim"
                        else float(value) if key == "lam" else value.strip())
        except ValueError as exc:
            raise ValueError(f"ensemble option {opt!r} in {arch!r}: {exc}") from None
    bad = [why for wrong, why in ((out.get("fusion", "prob") not in FUSIONS, f"fusion must be one of {list(FUSIONS)}"),
                                  (out.get("proj_dim", 1) < 1, "proj_dim must be >= 1"),
                                  (out.get("lam", 0.0) < 0, "lam must be >= 0")) if wrong]
    if bad:
        raise ValueError(f"ensemble arch {arch!r}: {'; '.join(bad)}")
    import cfer.models  # noqa: F401 - registers cfer's models with timm

    for name in members:
        if not timm.is_model(name):
            raise ValueError(f"unknown ensemble member {name!r} in {arch!r}; close timm names: {suggestions(name)}; "
                             f"cfer's models: {list(CFER_MODELS)}")
    return out


def ensemble_arch(*, members: Sequence[str], img_sizes: Sequence[int | None] | None = None,
                  **options: Any) -> str:
    """The canonical arch string of an ensemble (options at their default are left out).

    Example:
        >>> ensemble_arch(members=["cfer_tiny", "resemotenet_slim"], img_sizes=[None, 48], fusion="logit")
        'ensemble:cfer_tiny+resemotenet_slim@48,fusion=logit'
    """
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown ensemble options {unknown}; options: {list(_DEFAULTS)}")
    sizes = list(img_sizes or [None] * len(members))
    text = ENSEMBLE_PREFIX + "+".join(n if s is None else f"{n}@{int(s)}" for n, s in zip(members, sizes))
    for key, default in _DEFAULTS.items():
        value = options.get(key, default)
        if value != default:
            text += f",{key}={str(value).lower() if isinstance(value, bool) else value}"
    return text


