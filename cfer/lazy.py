"""Package attributes imported on first use (PEP 562), for packages whose modules are heavy.

Example:
    >>> __getattr__ = lazy_attributes("cfer.continual", {"STRATEGIES": "factory"})
    >>> __getattr__("STRATEGIES")[0]
    'cfer'
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<names[name]>`` when ``name`` is first read."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the PEP 562 hook's own name
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
