"""Atomic file writes: a kill leaves either the old file or the new one, never half of one.

Each writer puts the bytes into a temporary file in the destination folder, flushes and
``fsync``s it, then renames it over the destination (``os.replace`` is atomic on POSIX
and Windows when both names are on one file system) and syncs the folder. The file gets
the mode a plain ``open`` would give it (``0o666`` less the process's umask, so ``0644``
by default): a colleague or a web server can read a report cfer wrote.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
    >>> _ = write_json(p, {"accuracy": 0.5})
    >>> p.read_text()
    '{\\n  "accuracy": 0.5\\n}'
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_bytes", "write_text", "write_json", "jsonable", "save_figure", "torch_save"]


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created), with the
    umask's mode (``0644`` by default) rather than ``mkstemp``'s private ``0600``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (NaN is written as ``null``; see :func:`jsonable`)."""
    return write_text(path, json.dumps(jsonable(obj), indent=indent))


def jsonable(obj: Any) -> Any:
    """``obj`` as the values reading its JSON back would give: NaN and ±inf become
    ``None``, tuples lists, NumPy scalars Python numbers, mapping keys strings; anything
    else that JSON cannot hold becomes its ``str``.

    Example:
        >>> jsonable({"a": (1.5, float("nan")), 2: "x"})
        {'a': [1.5, None], '2': 'x'}
    """
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    item = getattr(obj, "item", None)  # NumPy and torch scalars
    if callable(item) and getattr(obj, "ndim", 1) == 0:
        return jsonable(item())
    return str(obj)


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``fig.savefig`` into memory, then an atomic write (format from the suffix)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    return write_bytes(path, buf.getvalue())


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` into memory, then an atomic write."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getvalue())
