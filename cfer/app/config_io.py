"""The run configuration as nested dicts and YAML: read, write, override, with clear errors.

The same keys are read from a YAML file (``cfer run --config FILE``), set from the
command line (``--epochs 3`` is ``continual.epochs: 3``) and printed back (``cfer run
--print-config``); unknown keys are refused with the closest known one.

Example:
    >>> cfg = config_from_dict({"continual": {"per_step": 5}, "seed": 3})
    >>> cfg.continual.per_step, cfg.seed, cfg.continual.epochs
    (5, 3, 4)
    >>> config_from_dict({"continual": {"epoch": 3}})
    Traceback (most recent call last):
    ...
    ValueError: unknown config key 'continual.epoch' (did you mean 'continual.epochs'?); ...
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from cfer.app.config import RunConfig

__all__ = ["config_from_dict", "config_to_dict", "load_config", "dump_config", "with_overrides"]


_SECTIONS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _known_keys() -> list[str]:
    keys = []
    for f in dataclasses.fields(RunConfig):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            keys += [f.name, *(f"{f.name}.{g.name}" for g in dataclasses.fields(f.default_factory))]
        else:
            keys.append(f.name)
    return keys


def _unknown(key: str) -> ValueError:
    close = difflib.get_close_matches(key, _known_keys(), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown config key {key!r}{hint}; print the known keys with `cfer run --print-config`")


_WORDS = {"true": True, "on": True, "yes": True, "false": False, "off": False, "no": False}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Turn a YAML/CLI value into the field's type; refuse what does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list, got {value!r}")
        item = args[0]
        if len(args) != 2 or args[1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{key} must have {len(args)} values, got {list(value)}")
        return tuple(_coerce(v, item, key) for v in value)
    if hint is bool:
        if isinstance(value, str) and value.strip().lower() in _WORDS:  # from the command line
            return _WORDS[value.strip().lower()]
        if isinstance(value, bool):
            return value
        raise ValueError(f"{key} must be true or false (on or off), got {value!r}")
    if hint in (int, float) and isinstance(value, str):  # from the command line
        try:
            value = hint(value)
        except ValueError:
            raise ValueError(f"{key} must be a {'whole number' if hint is int else 'number'}, got {value!r}") from None
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                return int(value)
            raise ValueError(f"{key} must be a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
        return value
    return value


def _section_from_dict(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in values.items():
        if k not in names:
            raise _unknown(f"{prefix}.{k}")
        kwargs[k] = _coerce(v, hints[k], f"{prefix}.{k}")
    return cls(**kwargs)


def config_from_dict(values: Mapping[str, Any] | None) -> RunConfig:
    """Build a :class:`RunConfig` from nested mappings (a parsed YAML file).

    Missing keys take their defaults; unknown keys and values of the wrong type raise
    ``ValueError`` naming the key.
    """
    values = dict(values or {})
    hints = typing.get_type_hints(RunConfig)
    kwargs: dict[str, Any] = {}
    for k, v in values.items():
        if k not in _SECTIONS:
            raise _unknown(k)
        cls = hints[k]
        if dataclasses.is_dataclass(cls):
            if v is None:
                continue
            if not isinstance(v, Mapping):
                raise ValueError(f"config section {k!r} must be a mapping of keys, got {v!r}")
            kwargs[k] = _section_from_dict(cls, v, k)
        else:
            kwargs[k] = _coerce(v, cls, k)
    return RunConfig(**kwargs)


def config_to_dict(config: RunConfig) -> dict:
    """Nested plain dict (lists for tuples), the inverse of :func:`config_from_dict`."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = ({g.name: plain(getattr(v, g.name)) for g in dataclasses.fields(v)}
                       if dataclasses.is_dataclass(v) else plain(v))
    return out


def with_overrides(config: RunConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> RunConfig:
    """``config`` with dotted keys replaced (``{"continual.epochs": 2}``), re-validated.

    Example:
        >>> with_overrides(RunConfig(), {"continual.epochs": 2}).continual.epochs
        2
    """
    base = config_to_dict(config) if isinstance(config, RunConfig) else dict(config or {})
    base = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in overrides.items():
        head, _, tail = key.partition(".")
        if tail:
            base.setdefault(head, {})
            if not isinstance(base[head], dict):
                raise _unknown(key)
            base[head][tail] = value
        else:
            base[head] = value
    return config_from_dict(base)


def load_config(path: str | Path) -> dict:
    """Read a YAML config file into nested dicts (validate with :func:`config_from_dict`).

    Raises:
        ValueError: If the file is missing, is not YAML, or is not a mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist; write one with `cfer run --print-config > {path.name}`")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path} is not valid YAML: {exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of sections (data:, continual:, ...), "
                         f"got {type(values).__name__}")
    return values


def dump_config(config: RunConfig) -> str:
    """The config as YAML text (what ``--print-config`` prints and a run folder keeps)."""
    import yaml

    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)
