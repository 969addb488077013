"""Read the FER2013 CSV (``emotion,pixels,Usage``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cfer import taxonomy
from cfer.data.base import FaceDataset
from cfer.data.readers.common import (
    DatasetError,
    _build,
    _decoding,
    _Item,
    _parse_int,
    _Problems,
    _read_csv_header,
    _require_file,
)

__all__ = ["read_fer2013"]

_FER_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
_FER_SIDE = 48


def read_fer2013(
    path: str | os.PathLike,
    *,
    usage: str | None = None,
    image_size: int | tuple[int, int] = 48,
    channels: int = 1,
    skip_invalid: bool = False,
    progress: bool = False,
) -> FaceDataset:
    """Read the FER2013 CSV (``emotion,pixels,Usage``).

    Each row holds an emotion id (0-6, via :data:`cfer.taxonomy.FER2013_LABELS`) and
    2304 space-separated grey values (48x48). ``Usage`` gives the split:
    ``Training`` -> ``"train"``, ``PublicTest`` -> ``"val"``, ``PrivateTest`` -> ``"test"``.

    Note:
        FER2013 has no identities; ``subjects`` are row ids (``"0"``, ``"1"``, ...,
        data rows counted from 0), so re-splitting cannot keep people apart. Use the
        ``Usage`` split.

    Args:
        path: The CSV file (``fer2013.csv``).
        usage: Keep only rows of this split: ``"train"``/``"val"``/``"test"`` or
            FER2013's ``"Training"``/``"PublicTest"``/``"PrivateTest"``.
        image_size: Output size; 48 keeps the original pixels.
        channels: 1 for grey, 3 to repeat the grey values as RGB.
        skip_invalid: Skip bad rows (counted in one warning) instead of raising.
        progress: Show a tqdm progress bar.

    Returns:
        The images with labels, subjects (row ids) and splits (when ``Usage`` exists).

    Raises:
        DatasetNotFoundError: If the CSV does not exist.
        DatasetError: For a missing column, a row with the wrong pixel count or
            values outside 0-255, an unknown emotion id or an unknown ``Usage``.

    Example:
        >>> test = read_fer2013("fer2013.csv", usage="test")  # doctest: +SKIP
        >>> test.image_size  # doctest: +SKIP
        (48, 48)
    """
    decoding = _decoding(image_size=image_size, channels=channels, crop_faces=False, progress=progress)
    wanted: str | None = None
    if usage is not None:
        wanted = _FER_USAGE.get(usage, usage)
        if wanted not in _FER_USAGE.values():
            raise ValueError(
                f"usage must be one of 'train', 'val', 'test' (or {list(_FER_USAGE)}), got {usage!r}"
            )
    path = _require_file(Path(path), what="FER2013 CSV", fix="pass the path of fer2013.csv")
    columns, rows = _read_csv_header(
        path, ("emotion", "pixels"), "FER2013's header is 'emotion,pixels,Usage'"
    )
    has_usage = "usage" in columns
    if wanted is not None and not has_usage:
        raise DatasetError(
            f"{path}: no 'Usage' column (columns found: {columns}), so usage={usage!r} cannot filter; "
            "pass usage=None"
        )
    known = ", ".join(f"{k}={v}" for k, v in taxonomy.FER2013_LABELS.items())
    problems = _Problems(reader=f"read_fer2013({path})", skip_invalid=skip_invalid)
    items: list[_Item] = []
    total = 0
    n_pixels = _FER_SIDE * _FER_SIDE
    for row_id, (line, row) in enumerate(rows):
        where = f"{path} line {line}"
        split = None
        if has_usage:
            split = _FER_USAGE.get(row["usage"])
            if split is None:
                total += 1
                problems.report(
                    reason="unknown Usage",
                    where=where,
                    problem=f"unknown Usage {row['usage']!r}",
                    fix=f"use one of {list(_FER_USAGE)}",
                )
                continue
            if wanted is not None and split != wanted:
                continue
        total += 1
        raw_id = row["emotion"]
        label_id = _parse_int(raw_id)
        label = None if label_id is None else taxonomy.FER2013_LABELS.get(label_id)
        if label is None:
            problems.report(
                reason="unknown emotion id",
                where=where,
                problem=f"unknown emotion id {raw_id!r}; FER2013 ids are {known}",
                fix="fix the 'emotion' value or remove the row",
            )
            continue
        tokens = row["pixels"].split()
        if len(tokens) != n_pixels:
            problems.report(
                reason="wrong pixel count",
                where=where,
                problem=f"{len(tokens)} pixel values, expected {n_pixels} ({_FER_SIDE}x{_FER_SIDE})",
                fix="fix or remove the row",
            )
            continue
        try:
            values = np.array(tokens, dtype=np.int64)
        except ValueError:
            values = None
        if values is None or values.min() < 0 or values.max() > 255:
            problems.report(
                reason="bad pixel value",
                where=where,
                problem="pixel values must be whole numbers 0-255",
                fix="fix or remove the row",
            )
            continue
        items.append(
            _Item(
                where=where,
                label=label,
                pixels=values.astype(np.uint8).reshape(_FER_SIDE, _FER_SIDE),
                subject=str(row_id),
                split=split,
            )
        )
    return _build(items, problems=problems, total=total, decoding=decoding, with_subjects=True, with_splits=has_usage)
