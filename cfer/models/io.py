"""The one safe loader: model files, weight files and checkpoints, read with ``weights_only=True``.

Everything cfer reads back from disk with torch goes through :func:`safe_load`, which
calls ``torch.load(..., map_location="cpu", weights_only=True)``: a file carrying pickled
Python objects (code that would run on loading) is refused with :class:`UnsafeFileError`,
never executed. On top of it:

* **model files** (``teacher.pt``, ``students/*.pt``): :func:`save_model` writes the
  weights plus what rebuilds the model (architecture, classes, input channels);
  :func:`read_model_file` returns that payload (``cfer.continual.growing.load_model``
  rebuilds the classifier from it);
* **checkpoints** a killed run resumes from: :func:`save_checkpoint` /
  :func:`load_checkpoint`, a dict of tensors, numbers, strings, lists and dicts;
* **weight files** for a backbone: :func:`cfer.models.weights.load_weights`.

Files are written atomically (:mod:`cfer.atomic`), so a kill never leaves half a file.

Example:
    >>> import tempfile, pathlib, torch
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "ckpt.pt"
    >>> _ = save_checkpoint(p, {"step": 2, "weights": torch.zeros(3)})
    >>> load_checkpoint(p)["step"]
    2
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from cfer.atomic import torch_save

__all__ = ["CHECKPOINT_FORMAT", "MODEL_FORMAT", "UnsafeFileError", "safe_load", "save_model", "read_model_file",
           "save_checkpoint", "load_checkpoint", "input_channels"]

CHECKPOINT_FORMAT = "cfer-checkpoint/1"
MODEL_FORMAT = "cfer-model/1"


class UnsafeFileError(ValueError):
    """A file that cannot be loaded with ``weights_only=True`` (it carries pickled objects,
    or it is not a torch file at all)."""


def safe_load(path: str | os.PathLike, *, what: str = "file", fix: str = "") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with one clear refusal.

    Args:
        path: The file.
        what: What the file should be, for messages (``"checkpoint"``, ``"weight file"``).
        fix: What the user can do instead, appended to the refusal.

    Raises:
        FileNotFoundError: If there is no such file.
        UnsafeFileError: If the file carries pickled objects (refused: loading them could
            run code) or is not a torch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        pickled = "unsupported global" in text.lower()  # a class or function to import and call
        why = ("it carries pickled Python objects that could run code" if pickled
               else "it is not a readable torch file")
        detail = [ln.strip() for ln in text.splitlines() if ln.strip()]
        first = next((ln for ln in detail if "unsupported global" in ln.lower()), first) if pickled else first
        raise UnsafeFileError(
            f"{path} cannot be loaded with weights_only=True, so it is refused: {why} "
            f"({type(exc).__name__}: {first[:200]})" + (f". {fix}" if fix else "")
        ) from None


def input_channels(model: nn.Module) -> int:
    """Input channels of a model: those of its first convolution (3 if it has none)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return 3


def save_model(model: nn.Module, path: str | os.PathLike, *, arch: str, classes: Sequence[str],
               extra: dict | None = None) -> Path:
    """Save a classifier's weights and what rebuilds it, loadable with ``weights_only=True``.

    Args:
        model: A classifier with ``num_classes`` (e.g. a ``GrowingClassifier``).
        path: The file to write (atomically).
        arch: The backbone's architecture name.
        classes: The class of each output unit.
        extra: Plain data kept with the model (e.g. ``{"image_size": 48}``).

    Example:
        >>> save_model(teacher, "teacher.pt", arch="cfer_tiny", classes=("happy", "sad"))  # doctest: +SKIP
    """
    payload = {
        "format": MODEL_FORMAT, "arch": arch, "classes": list(classes),
        "num_classes": int(model.num_classes), "in_chans": input_channels(model),
        "state_dict": model.state_dict(), "extra": extra or {},
    }
    return torch_save(payload, path)


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The payload :func:`save_model` wrote: ``arch``, ``classes``, ``num_classes``,
    ``in_chans``, ``state_dict`` and ``extra``.

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeFileError: If it carries pickled objects or is not a torch file.
        ValueError: If it is a torch file but not a cfer model file.
    """
    payload = safe_load(path, what="model file",
                        fix="Only load model files that cfer wrote (cfer teacher, cfer run)")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a cfer model file (expected format {MODEL_FORMAT!r}); train one with "
                         "`cfer teacher --out FILE` or take teacher.pt from a run folder")
    return payload


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus a format tag) atomically with ``torch.save``."""
    return torch_save({"format": CHECKPOINT_FORMAT, **payload}, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, with ``weights_only=True``.

    Raises:
        FileNotFoundError: If there is no such file.
        UnsafeFileError: If the file carries pickled objects (refused: loading them could
            run code) or is not a torch file at all.
        ValueError: If it is a torch file but not a cfer checkpoint.
    """
    payload = safe_load(path, what="checkpoint",
                        fix="Only load checkpoints that cfer wrote; delete this one to start the run again")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a cfer checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return payload
