"""Read RAF-DB (basic or compound) in its distributed layout."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cfer import taxonomy
from cfer.data.base import FaceDataset
from cfer.data.faces import FaceCropper
from cfer.data.readers.common import (
    _build,
    _decoding,
    _Item,
    _not_utf8,
    _parse_int,
    _Problems,
    _require_dir,
    _require_file,
)

__all__ = ["read_rafdb"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    line: int
    label_id: int
    split: str


def read_rafdb(
    root: str | os.PathLike,
    *,
    subset: str = "basic",
    partition: str | None = None,
    aligned: bool = True,
    image_size: int | tuple[int, int] = 64,
    channels: int = 3,
    crop_faces: bool | FaceCropper = False,
    skip_invalid: bool = False,
    progress: bool = False,
) -> FaceDataset:
    """Read RAF-DB (basic or compound) in its distributed layout.

    Layout (the label file's misspelling is RAF-DB's own)::

        root/EmoLabel/list_patition_label.txt     lines "train_00001.jpg 5"
        root/Image/aligned/train_00001_aligned.jpg
        root/Image/original/train_00001.jpg

    Label ids map through :data:`cfer.taxonomy.RAFDB_BASIC_LABELS` (``subset="basic"``,
    ids 1-7) or :data:`cfer.taxonomy.RAFDB_COMPOUND_LABELS` (``subset="compound"``,
    ids 1-11); the split (``train``/``test``) comes from the file name's prefix.

    An image listed twice with the same label is read once; the repeat is dropped with
    a logged warning and counted under ``"duplicate entry"`` in
    :attr:`~cfer.data.FaceDataset.skipped`. Listed with two labels it is an error
    naming both lines (``skip_invalid=True`` skips every listing, ``"conflicting
    labels"``).

    Note:
        RAF-DB publishes no identities, so ``subjects`` are the image ids
        (``train_00001``). Splits made from them are image-disjoint only: the same
        person may appear in train and test. Use RAF-DB's own partition.

    Args:
        root: The RAF-DB folder holding ``EmoLabel/`` and ``Image/``.
        subset: ``"basic"`` or ``"compound"`` (which id table to use).
        partition: ``"train"`` or ``"test"`` to read one partition; ``None`` reads both.
        aligned: Read ``Image/aligned/*_aligned.jpg`` (100x100 face crops) instead of
            ``Image/original``.
        image_size: Output size, an int (square) or ``(height, width)``.
        channels: 1 for grey, 3 for RGB.
        crop_faces: Crop the largest face before resizing (useful with ``aligned=False``).
        skip_invalid: Skip bad lines and images (counted in one warning) instead of raising.
        progress: Show a tqdm progress bar.

    Returns:
        The images with labels, splits, subjects (= image ids) and paths.

    Raises:
        DatasetNotFoundError: If the label list or a listed image does not exist.
        DatasetError: For a malformed line, an unknown label id, a file name without
            a ``train_``/``test_`` prefix, an image listed with two labels, a label
            list that is not UTF-8, or an undecodable image.

    Example:
        >>> train = read_rafdb("RAF-DB/basic", partition="train")  # doctest: +SKIP
        >>> comp = read_rafdb("RAF-DB/compound", subset="compound")  # doctest: +SKIP
    """
    decoding = _decoding(image_size=image_size, channels=channels, crop_faces=crop_faces, progress=progress)
    tables = {"basic": taxonomy.RAFDB_BASIC_LABELS, "compound": taxonomy.RAFDB_COMPOUND_LABELS}
    if subset not in tables:
        raise ValueError(f"subset must be 'basic' or 'compound', got {subset!r}")
    if partition not in (None, "train", "test"):
        raise ValueError(f"partition must be None, 'train' or 'test', got {partition!r}")
    table = tables[subset]
    root = _require_dir(
        Path(root), what="RAF-DB folder", fix="pass the RAF-DB folder that holds EmoLabel/ and Image/"
    )
    labels_file = _require_file(
        root / "EmoLabel" / "list_patition_label.txt",
        what="RAF-DB label list",
        fix="root must be the RAF-DB folder that holds EmoLabel/list_patition_label.txt "
        "(RAF-DB's own spelling) and Image/",
    )
    image_dir = root / "Image" / ("aligned" if aligned else "original")
    _require_dir(
        image_dir,
        what="RAF-DB image folder",
        fix="unpack RAF-DB's Image archive there" + (", or pass aligned=False" if aligned
                                                     else ", or pass aligned=True"),
    )
    known = ", ".join(f"{k}={v}" for k, v in table.items())
    other = "compound" if subset == "basic" else "basic"
    problems = _Problems(reader=f"read_rafdb({root})", skip_invalid=skip_invalid)
    entries: dict[str, list[_Entry]] = {}
    total = 0
    try:
        with open(labels_file, encoding="utf-8") as f:
            lines = list(enumerate(f, start=1))
    except UnicodeDecodeError as exc:
        raise _not_utf8(labels_file, exc) from exc
    for line_no, text in lines:
        if not text.strip():
            continue
        where = f"{labels_file} line {line_no}"
        parts = text.split()
        name = parts[0]
        split = "train" if name.startswith("train_") else "test" if name.startswith("test_") else None
        if split is not None and partition is not None and split != partition:
            continue
        total += 1
        label_id = _parse_int(parts[1]) if len(parts) == 2 else None
        if label_id is None:
            problems.report(
                reason="malformed line",
                where=where,
                problem=f"expected '<file name> <label id>' with a whole-number id, got {text.strip()!r}",
                fix="fix or remove the line",
            )
            continue
        if split is None:
            problems.report(
                reason="malformed line",
                where=where,
                problem=f"file name {name!r} starts with neither 'train_' nor 'test_'",
                fix="use RAF-DB's file names, which give the partition",
            )
            continue
        if label_id not in table:
            problems.report(
                reason="unknown label id",
                where=where,
                problem=f"unknown RAF-DB {subset} label id {label_id}; known ids: {known}",
                fix=f"check the id, or pass subset={other!r} if this is the {other} set",
            )
            continue
        entries.setdefault(name, []).append(_Entry(line_no, label_id, split))
    items: list[_Item] = []
    repeats: list[str] = []
    for name, listed in entries.items():
        first = listed[0]
        if len({e.label_id for e in listed}) > 1:
            both = ", ".join(f"line {e.line} (label {e.label_id})" for e in listed)
            for e in listed:
                problems.report(
                    reason="conflicting labels",
                    where=f"{labels_file} line {e.line}",
                    problem=f"{name!r} is listed with different labels: {both}",
                    fix="keep the line with the right label and delete the others",
                )
            continue
        repeats += [f"line {e.line} repeats line {first.line} ({name!r})" for e in listed[1:]]
        stem = Path(name).stem
        image = image_dir / (f"{stem}_aligned.jpg" if aligned else name)
        where = f"{labels_file} line {first.line}"
        if not image.is_file():
            problems.report(
                reason="missing image",
                where=where,
                problem=f"image {image} does not exist",
                fix="unpack the full RAF-DB Image archive"
                + (" or pass aligned=False to read Image/original" if aligned else " or pass aligned=True"),
                not_found=True,
            )
            continue
        items.append(
            _Item(where=f"{image} ({where})", label=table[first.label_id], path=image, subject=stem,
                  split=first.split)
        )
    if repeats:
        total -= len(repeats)
        problems.note(reason="duplicate entry", n=len(repeats))
        logger.warning("read_rafdb(%s): %s lists %d image(s) again with the same label; each is read once "
                       "(first: %s); delete the repeated lines to silence this", root, labels_file, len(repeats),
                       repeats[0])
    return _build(items, problems=problems, total=total, decoding=decoding, with_subjects=True, with_splits=True)
