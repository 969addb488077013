"""A run's data fingerprint: which faces went to which split, so a resume on changed data
is refused instead of silently training on other splits.

:func:`fingerprint` records, for the train, validation and test faces of a run, every
item's source (its file path where the reader knows it), class and split, plus a SHA-256
digest of each split's decoded pixels. A run writes it to ``RUN/data.json`` when it
starts; ``--resume`` computes it again from the data as it is now and
:func:`check_same_data` refuses to go on when anything differs, naming what changed
(files added or removed, labels changed, faces moved to another split, pixels changed).

Example:
    >>> import numpy as np
    >>> from cfer.data.base import FaceDataset
    >>> ds = FaceDataset(images=np.zeros((2, 8, 8, 1), np.uint8), labels=[0, 1], classes=["happy", "sad"])
    >>> fp = fingerprint({"train": ds, "val": ds, "test": ds})
    >>> check_same_data(saved=fp, now=fp)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

import numpy as np

from cfer.data.base import FaceDataset

__all__ = ["FINGERPRINT_FORMAT", "DataChangedError", "fingerprint", "check_same_data"]

FINGERPRINT_FORMAT = "cfer-data-fingerprint/1"


class DataChangedError(ValueError):
    """The data of a run changed since it started; the message names what changed."""


def _items(split: str, ds: FaceDataset) -> list[list[str]]:
    sources = ds.paths if ds.paths is not None else [f"{split} item {i}" for i in range(len(ds))]
    return [[str(src), name, split] for src, name in zip(sources, ds.class_names)]


def fingerprint(splits: Mapping[str, FaceDataset]) -> dict:
    """The fingerprint of a run's splits (plain data, written as JSON).

    Args:
        splits: ``{"train": ..., "val": ..., "test": ...}``.

    Returns:
        ``{"format", "n", "items": [[source, class, split], ...], "pixels": {split: sha256}}``.
    """
    items, pixels = [], {}
    for name, ds in splits.items():
        items += _items(name, ds)
        digest = hashlib.sha256()
        if isinstance(ds, FaceDataset):
            digest.update(repr(ds.images.shape).encode())
            digest.update(np.ascontiguousarray(ds.images).tobytes())
        else:  # clips are decoded lazily: their files' names, sizes and times stand for their pixels
            for path in ds.paths or []:
                st = Path(path).stat() if Path(path).exists() else None
                digest.update(f"{path}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}".encode())
        pixels[name] = digest.hexdigest()
    items.sort()
    return {"format": FINGERPRINT_FORMAT, "n": len(items), "items": items, "pixels": pixels}


def _examples(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def check_same_data(*, saved: Mapping, now: Mapping) -> None:
    """Refuse to go on when ``now`` (the data as it is) differs from ``saved`` (the data
    the run started with).

    Raises:
        DataChangedError: Naming the files added or removed, the labels changed, the faces
            moved between splits, and the splits whose pixels changed.
    """
    if saved.get("format") != FINGERPRINT_FORMAT:
        raise DataChangedError(f"the run's data.json is not a cfer data fingerprint (format {saved.get('format')!r})")
    before = {src: (cls, split) for src, cls, split in saved["items"]}
    after = {src: (cls, split) for src, cls, split in now["items"]}
    changes = []
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    if added:
        changes.append(f"{len(added)} faces added ({_examples(added)})")
    if removed:
        changes.append(f"{len(removed)} faces removed ({_examples(removed)})")
    common = sorted(set(before) & set(after))
    relabelled = [s for s in common if before[s][0] != after[s][0]]
    moved = [s for s in common if before[s][1] != after[s][1]]
    if relabelled:
        changes.append(f"{len(relabelled)} labels changed ({_examples(relabelled)})")
    if moved:
        changes.append(f"{len(moved)} faces moved to another split ({_examples(moved)})")
    if not changes:
        differ = sorted(k for k in set(saved["pixels"]) | set(now["pixels"])
                        if saved["pixels"].get(k) != now["pixels"].get(k))
        if differ:
            changes.append(f"the pixels of the {', '.join(differ)} faces changed (edited images, or other "
                           "--image-size/--grey/--crop-faces options)")
    if changes:
        raise DataChangedError("the data changed since this run started: " + "; ".join(changes) + ". A resumed "
                               "run must see the faces it started with: restore the data, or start a new run "
                               "with another --out")
