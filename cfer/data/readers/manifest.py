"""Read a CSV manifest: ``path,label`` plus optional ``subject`` and ``split`` columns."""

from __future__ import annotations

import os
from pathlib import Path

from cfer.data.base import FaceDataset
from cfer.data.faces import FaceCropper
from cfer.data.readers.common import (
    _SPLITS,
    _build,
    _canonical,
    _decoding,
    _Item,
    _Problems,
    _read_csv_header,
    _require_dir,
    _require_file,
)

__all__ = ["read_csv_manifest"]

_SPELLINGS = "; ".join(f"{name}: {'/'.join(k for k, v in _SPLITS.items() if v == name)}"
                       for name in dict.fromkeys(_SPLITS.values()))


def read_csv_manifest(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] = 64,
    channels: int = 3,
    crop_faces: bool | FaceCropper = False,
    skip_invalid: bool = False,
    progress: bool = False,
) -> FaceDataset:
    """Read images listed in a CSV manifest.

    The CSV has a header line. Required columns: ``path`` and ``label`` (a class name
    in any spelling). Optional: ``subject`` (identity, for subject-disjoint splits)
    and ``split``. Column names are case-insensitive; other columns are ignored.

    A ``split`` value becomes one of cfer's split names, in any case: ``train``
    (``train``, ``training``), ``val`` (``val``, ``valid``, ``validation``, ``dev``) or
    ``test`` (``test``, ``testing``). Any other value is an error (``"unknown split"``),
    never silently dropped.

    Args:
        path: The CSV file.
        root: Folder that relative image paths resolve against (default: the CSV's folder).
        image_size: Output size, an int (square) or ``(height, width)``.
        channels: 1 for grey, 3 for RGB.
        crop_faces: Crop the largest face before resizing (``True`` or a ``FaceCropper``).
        skip_invalid: Skip bad rows (counted in one warning) instead of raising.
        progress: Show a tqdm progress bar.

    Returns:
        The images with labels, and subjects/splits when the columns exist.

    Raises:
        DatasetNotFoundError: If the CSV, or an image it lists, does not exist.
        DatasetError: For a missing column, an empty cell, an unknown label, a path
            listed twice, an unknown split, a file that is not UTF-8, an undecodable
            image, or no face (with ``crop_faces``).

    Example:
        >>> # manifest.csv:  path,label,subject
        >>> #                s01/happy_1.jpg,Happiness,s01
        >>> ds = read_csv_manifest("manifest.csv", image_size=(64, 64))  # doctest: +SKIP
    """
    decoding = _decoding(image_size=image_size, channels=channels, crop_faces=crop_faces, progress=progress)
    path = _require_file(Path(path), what="CSV manifest", fix="pass the path of an existing CSV file")
    base = Path(root) if root is not None else path.parent
    _require_dir(base, what="image root", fix="pass root= the folder the manifest's relative paths start from")
    fix = "the header must name the columns 'path' and 'label' (optional: 'subject', 'split')"
    columns, rows = _read_csv_header(path, ("path", "label"), fix)
    has_subject, has_split = "subject" in columns, "split" in columns
    problems = _Problems(reader=f"read_csv_manifest({path})", skip_invalid=skip_invalid)
    items: list[_Item] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        where = f"{path} line {line}"
        empty = [c for c in ("path", "label", "subject", "split") if c in columns and not row[c]]
        if empty:
            problems.report(
                reason="empty cell",
                where=where,
                problem=f"empty {empty[0]!r} value",
                fix=f"fill in the {empty[0]!r} column or remove the row",
            )
            continue
        label, why = _canonical(row["label"])
        if label is None:
            problems.report(
                reason="unknown label",
                where=where,
                problem=why,
                fix="use a class name from cfer.taxonomy.ALL_CLASSES in the 'label' column",
            )
            continue
        split = None
        if has_split:
            split = _SPLITS.get(row["split"].lower())
            if split is None:
                problems.report(
                    reason="unknown split",
                    where=where,
                    problem=f"unknown split {row['split']!r}; accepted spellings (any case): {_SPELLINGS}",
                    fix="use one of them in the 'split' column",
                )
                continue
        image = Path(row["path"])
        image = image if image.is_absolute() else base / image
        key = os.path.normcase(os.path.normpath(os.path.abspath(image)))
        if key in first_line:
            problems.report(
                reason="duplicate path",
                where=where,
                problem=(f"path {row['path']!r} is already listed on line {first_line[key]} "
                         f"(lines {first_line[key]} and {line})"),
                fix="list each image once",
            )
            continue
        first_line[key] = line
        if not image.is_file():
            problems.report(
                reason="missing image",
                where=where,
                problem=f"image {image} does not exist",
                fix=f"fix the path (relative paths resolve against {base}; set root= to change that)",
                not_found=True,
            )
            continue
        items.append(
            _Item(
                where=f"{image} ({where})",
                label=label,
                path=image,
                subject=row["subject"] if has_subject else None,
                split=split,
            )
        )
    return _build(items, problems=problems, total=len(rows), decoding=decoding, with_subjects=has_subject,
                  with_splits=has_split)
