"""Readers for real face-expression data: class folders, CSV manifests, RAF-DB and FER2013.

Every reader decodes all images eagerly, resizes them (Pillow, bilinear with
anti-aliasing) to one size, converts them to grey or RGB and returns a
:class:`cfer.data.FaceDataset`. Labels in any spelling go through
:func:`cfer.taxonomy.normalize`; the dataset's ``classes`` are the classes present,
in :data:`cfer.taxonomy.ALL_CLASSES` order.

Bad input raises :class:`DatasetError` (a ``ValueError``; missing files raise
:class:`DatasetNotFoundError`, also a ``FileNotFoundError``) whose message names the
file or CSV line and the fix. With ``skip_invalid=True`` bad items are skipped instead
and counted in one :class:`SkippedItemsWarning`.

Example:
    >>> from cfer.data import read_image_folder
    >>> ds = read_image_folder("faces/", image_size=64, subject_pattern=r"^(s\\d+)_")  # doctest: +SKIP
    >>> ds.counts()  # doctest: +SKIP
    {'happy': 120, 'sad': 118, 'happily_surprised': 40}
"""

from __future__ import annotations

import csv
import logging
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cfer import taxonomy
from cfer.data.base import FaceDataset
from cfer.data.faces import FaceCropper, NoFaceFoundError

__all__ = [
    "DatasetError",
    "DatasetNotFoundError",
    "SkippedItemsWarning",
    "IMAGE_EXTENSIONS",
    "read_image_folder",
    "read_csv_manifest",
    "read_rafdb",
    "read_fer2013",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
"""File extensions :func:`read_image_folder` reads (case-insensitive)."""

_SKIP_HINT = "or pass skip_invalid=True to skip such items"
_SPLIT_WORDS = {"train", "training", "val", "valid", "validation", "test", "testing"}
_FER_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
_FER_SIDE = 48


class DatasetError(ValueError):
    """A data set on disk is malformed; the message names the file or line and the fix."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A folder, CSV file or image a reader needs does not exist."""


class SkippedItemsWarning(UserWarning):
    """Some items were skipped because ``skip_invalid=True``."""


# --------------------------------------------------------------------------------------
# shared machinery
# --------------------------------------------------------------------------------------
@dataclass
class _Item:
    where: str  # "path/to/img.png" or "manifest.csv line 4": named in messages
    label: str  # canonical class name
    path: Path | None = None
    pixels: np.ndarray | None = None  # already decoded (FER2013): (H, W) uint8
    subject: str | None = None
    split: str | None = None


class _Problems:
    """Raise on the first bad item, or (skip_invalid) count bad items and warn once."""

    def __init__(self, *, reader: str, skip_invalid: bool) -> None:
        self.reader = reader
        self.skip_invalid = skip_invalid
        self.counts: Counter[str] = Counter()
        self.first: str | None = None

    def report(
        self,
        *,
        reason: str,
        where: str,
        problem: str,
        fix: str,
        not_found: bool = False,
        cause: BaseException | None = None,
    ) -> None:
        if not self.skip_invalid:
            cls = DatasetNotFoundError if not_found else DatasetError
            raise cls(f"{where}: {problem}; {fix}, {_SKIP_HINT}") from cause
        self.counts[reason] += 1
        if self.first is None:
            self.first = f"{where}: {problem}"

    def summary(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())

    def finish(self, *, total: int, kept: int) -> None:
        skipped = sum(self.counts.values())
        if total == 0:
            raise DatasetError(f"{self.reader}: found no items to read; check that the path points at the data set")
        if kept == 0:
            detail = f" (skipped {skipped} of {total}: {self.summary()}; first: {self.first})" if skipped else ""
            raise DatasetError(f"{self.reader}: no usable images{detail}; fix the data or point the reader at the right place")
        if skipped:
            msg = f"{self.reader}: skipped {skipped} of {total} items: {self.summary()}; first: {self.first}"
            warnings.warn(SkippedItemsWarning(msg), stacklevel=4)


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        h = w = int(image_size)
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in image_size
    ):
        h, w = (int(v) for v in image_size)
    else:
        raise ValueError(f"image_size must be an int or an (height, width) pair of ints, got {image_size!r}")
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return h, w


def _check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    return int(channels)


def _cropper(crop_faces: bool | FaceCropper) -> FaceCropper | None:
    if isinstance(crop_faces, FaceCropper):
        return crop_faces
    if crop_faces is True:
        return FaceCropper()
    if crop_faces is False or crop_faces is None:
        return None
    raise ValueError(f"crop_faces must be True, False or a FaceCropper, got {crop_faces!r}")


def _canonical(raw: str) -> tuple[str | None, str]:
    """(canonical name, "") or (None, the taxonomy's message with its closest-names hint)."""
    try:
        return taxonomy.normalize(raw), ""
    except (ValueError, TypeError) as exc:
        return None, str(exc)


def _progress(items: list, *, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="img")


def _decode(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")


def _finish_image(
    img: Image.Image, *, size: tuple[int, int], channels: int, cropper: FaceCropper | None, where: str
) -> np.ndarray:
    if cropper is not None:
        arr = cropper.crop(np.asarray(img), source=where)
        img = Image.fromarray(arr)
    img = img.convert("L" if channels == 1 else "RGB")
    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _build(
    items: list[_Item],
    *,
    problems: _Problems,
    total: int,
    size: tuple[int, int],
    channels: int,
    cropper: FaceCropper | None,
    progress: bool,
    with_subjects: bool,
    with_splits: bool,
) -> FaceDataset:
    images: list[np.ndarray] = []
    kept: list[_Item] = []
    for item in _progress(items, enabled=progress, desc=problems.reader):
        try:
            if item.pixels is not None:
                img = Image.fromarray(item.pixels)
            else:
                assert item.path is not None
                img = _decode(item.path)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            problems.report(
                reason="corrupt image",
                where=item.where,
                problem=f"cannot decode image ({type(exc).__name__}: {exc})",
                fix="replace or delete the file",
                cause=exc,
            )
            continue
        try:
            arr = _finish_image(img, size=size, channels=channels, cropper=cropper, where=item.where)
        except NoFaceFoundError as exc:
            problems.report(
                reason="no face found",
                where=item.where,
                problem="no face found by the Haar cascade",
                fix="crop this image by hand, use a FaceCropper with a smaller min_size, or read without crop_faces",
                cause=exc,
            )
            continue
        images.append(arr)
        kept.append(item)
    problems.finish(total=total, kept=len(kept))

    present = {it.label for it in kept}
    classes = [c for c in taxonomy.ALL_CLASSES if c in present]
    index = {c: i for i, c in enumerate(classes)}
    paths = [str(it.path) for it in kept] if all(it.path is not None for it in kept) else None
    ds = FaceDataset(
        images=np.stack(images),
        labels=[index[it.label] for it in kept],
        classes=classes,
        subjects=[it.subject for it in kept] if with_subjects else None,
        splits=[it.split for it in kept] if with_splits else None,
        paths=paths,
    )
    logger.info("%s: read %d images of %d classes", problems.reader, len(ds), len(classes))
    return ds


def _require_file(path: Path, *, what: str, fix: str) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(f"{what} {path} does not exist; {fix}")
    if not path.is_file():
        raise DatasetError(f"{what} {path} is not a file; {fix}")
    return path


def _require_dir(path: Path, *, what: str, fix: str) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(f"{what} {path} does not exist; {fix}")
    if not path.is_dir():
        raise DatasetError(f"{what} {path} is not a folder; {fix}")
    return path


# --------------------------------------------------------------------------------------
# one folder per class
# --------------------------------------------------------------------------------------
def read_image_folder(
    root: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] = 64,
    channels: int = 3,
    crop_faces: bool | FaceCropper = False,
    skip_invalid: bool = False,
    subject_pattern: str | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    progress: bool = False,
) -> FaceDataset:
    """Read images stored as one sub-folder per class (``root/<class>/<file>``).

    Folder names may use any spelling :func:`cfer.taxonomy.normalize` accepts
    (``Happily_Surprised``, ``happiness``). Files with other extensions and hidden
    entries (names starting with ``.``) are ignored; the count is logged.

    Args:
        root: The folder holding one sub-folder per class.
        image_size: Output size, an int (square) or ``(height, width)``; images are
            stretched to it (crop faces first if the aspect ratio matters).
        channels: 1 for grey, 3 for RGB.
        crop_faces: Crop the largest face (Haar cascade) before resizing; ``True``
            uses :class:`~cfer.data.faces.FaceCropper` defaults, or pass a cropper.
        skip_invalid: Skip bad items (counted in one warning) instead of raising.
        subject_pattern: Regular expression with one group, searched in each file
            name, that captures the subject id (e.g. ``r"^(s\\d+)_"``). Without it
            the dataset has no subjects.
        extensions: File extensions to read (case-insensitive).
        progress: Show a tqdm progress bar.

    Returns:
        The images with labels, subjects (with ``subject_pattern``) and paths.

    Raises:
        DatasetNotFoundError: If ``root`` does not exist.
        DatasetError: For a folder without class folders, an unknown class folder, an
            empty class folder, an undecodable image, a file name the subject pattern
            does not match, or no face (with ``crop_faces``).

    Example:
        >>> ds = read_image_folder("cfee/", subject_pattern=r"^(\\d+)_", crop_faces=True)  # doctest: +SKIP
        >>> ds.summary()  # doctest: +SKIP
    """
    size, channels, cropper = _size(image_size), _check_channels(channels), _cropper(crop_faces)
    root = _require_dir(
        Path(root), what="image folder", fix="pass the folder that holds one sub-folder per class"
    )
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not exts:
        raise ValueError("extensions is empty; pass file extensions such as ('.jpg', '.png')")
    pattern = None
    if subject_pattern is not None:
        try:
            pattern = re.compile(subject_pattern)
        except re.error as exc:
            raise ValueError(f"subject_pattern {subject_pattern!r} is not a valid regular expression: {exc}") from exc
        if pattern.groups != 1:
            raise ValueError(
                f"subject_pattern {subject_pattern!r} has {pattern.groups} groups; it needs exactly one "
                r"group that captures the subject id, e.g. r'^(s\d+)_'"
            )

    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(
            f"{root} has no class folders; put the images in one sub-folder per class, "
            f"e.g. {root / 'happy' / 'img_001.png'}"
        )
    problems = _Problems(reader=f"read_image_folder({root})", skip_invalid=skip_invalid)
    items: list[_Item] = []
    total = ignored = 0
    seen: dict[str, Path] = {}
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in exts]
        ignored += len(files) - len(images)
        label, why = _canonical(folder.name)
        if label is None:
            split_hint = (
                f" ({folder.name!r} looks like a split folder: read each split folder on its own)"
                if folder.name.lower() in _SPLIT_WORDS
                else ""
            )
            total += max(len(images), 1)
            for _ in range(max(len(images), 1)):
                problems.report(
                    reason="unknown label",
                    where=f"class folder {folder}",
                    problem=why + split_hint,
                    fix="rename the folder to a class name from cfer.taxonomy.ALL_CLASSES",
                )
            continue
        if label in seen:
            raise DatasetError(
                f"class folders {seen[label]} and {folder} are both class {label!r}; "
                "merge them into one folder"
            )
        seen[label] = folder
        if not images:
            total += 1
            problems.report(
                reason="empty class folder",
                where=f"class folder {folder}",
                problem=f"no images with extensions {list(exts)}",
                fix="add images, delete the folder, or pass extensions=...",
            )
            continue
        for path in images:
            total += 1
            subject = None
            if pattern is not None:
                m = pattern.search(path.name)
                if m is None or not m.group(1):
                    problems.report(
                        reason="no subject id",
                        where=str(path),
                        problem=f"file name does not match subject_pattern {pattern.pattern!r}",
                        fix="rename the file or fix the pattern",
                    )
                    continue
                subject = m.group(1)
            items.append(_Item(where=str(path), label=label, path=path, subject=subject))
    if ignored:
        logger.info("read_image_folder(%s): ignored %d files whose extension is not in %s", root, ignored, exts)
    return _build(
        items,
        problems=problems,
        total=total,
        size=size,
        channels=channels,
        cropper=cropper,
        progress=progress,
        with_subjects=pattern is not None,
        with_splits=False,
    )


# --------------------------------------------------------------------------------------
# CSV manifest
# --------------------------------------------------------------------------------------
def _read_csv_header(path: Path, required: Sequence[str], fix: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """Rows of a CSV with a header, keyed by lower-cased column names, with line numbers."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"{path} is empty; {fix}") from None
        except csv.Error as exc:
            raise DatasetError(f"{path} line 1: not valid CSV ({exc}); {fix}") from exc
        columns = [c.strip().lower() for c in header]
        missing = [c for c in required if c not in columns]
        if missing:
            raise DatasetError(
                f"{path}: no {missing[0]!r} column (columns found: {columns}); {fix}"
            )
        rows: list[tuple[int, dict]] = []
        line = reader.line_num
        try:
            for values in reader:
                start, line = line + 1, reader.line_num
                if not values or all(not v.strip() for v in values):
                    continue
                rows.append((start, {c: (values[i].strip() if i < len(values) else "") for i, c in enumerate(columns)}))
        except csv.Error as exc:
            raise DatasetError(f"{path} line {reader.line_num}: not valid CSV ({exc}); fix the quoting") from exc
    return columns, rows


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
    and ``split`` (e.g. ``train``/``val``/``test``). Column names are case-insensitive;
    other columns are ignored.

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
            listed twice, an undecodable image, or no face (with ``crop_faces``).

    Example:
        >>> # manifest.csv:  path,label,subject
        >>> #                s01/happy_1.jpg,Happiness,s01
        >>> ds = read_csv_manifest("manifest.csv", image_size=(64, 64))  # doctest: +SKIP
    """
    size, channels, cropper = _size(image_size), _check_channels(channels), _cropper(crop_faces)
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
        image = Path(row["path"])
        image = image if image.is_absolute() else base / image
        key = os.path.normcase(os.path.normpath(os.path.abspath(image)))
        if key in first_line:
            problems.report(
                reason="duplicate path",
                where=where,
                problem=f"path {row['path']!r} is already listed on line {first_line[key]} (lines {first_line[key]} and {line})",
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
                split=row["split"] if has_split else None,
            )
        )
    return _build(
        items,
        problems=problems,
        total=len(rows),
        size=size,
        channels=channels,
        cropper=cropper,
        progress=progress,
        with_subjects=has_subject,
        with_splits=has_split,
    )


# --------------------------------------------------------------------------------------
# RAF-DB
# --------------------------------------------------------------------------------------
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
            a ``train_``/``test_`` prefix, or an undecodable image.

    Example:
        >>> train = read_rafdb("RAF-DB/basic", partition="train")  # doctest: +SKIP
        >>> comp = read_rafdb("RAF-DB/compound", subset="compound")  # doctest: +SKIP
    """
    size, channels, cropper = _size(image_size), _check_channels(channels), _cropper(crop_faces)
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
        fix="unpack RAF-DB's Image archive there" + (", or pass aligned=False" if aligned else ", or pass aligned=True"),
    )
    known = ", ".join(f"{k}={v}" for k, v in table.items())
    other = "compound" if subset == "basic" else "basic"
    problems = _Problems(reader=f"read_rafdb({root})", skip_invalid=skip_invalid)
    items: list[_Item] = []
    total = 0
    with open(labels_file, encoding="utf-8") as f:
        for line_no, text in enumerate(f, start=1):
            if not text.strip():
                continue
            where = f"{labels_file} line {line_no}"
            parts = text.split()
            name = parts[0]
            split = "train" if name.startswith("train_") else "test" if name.startswith("test_") else None
            if split is not None and partition is not None and split != partition:
                continue
            total += 1
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                problems.report(
                    reason="malformed line",
                    where=where,
                    problem=f"expected '<file name> <label id>', got {text.strip()!r}",
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
            label_id = int(parts[1])
            if label_id not in table:
                problems.report(
                    reason="unknown label id",
                    where=where,
                    problem=f"unknown RAF-DB {subset} label id {label_id}; known ids: {known}",
                    fix=f"check the id, or pass subset={other!r} if this is the {other} set",
                )
                continue
            stem = Path(name).stem
            image = image_dir / (f"{stem}_aligned.jpg" if aligned else name)
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
                _Item(where=f"{image} ({where})", label=table[label_id], path=image, subject=stem, split=split)
            )
    return _build(
        items,
        problems=problems,
        total=total,
        size=size,
        channels=channels,
        cropper=cropper,
        progress=progress,
        with_subjects=True,
        with_splits=True,
    )


# --------------------------------------------------------------------------------------
# FER2013
# --------------------------------------------------------------------------------------
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
    size, channels = _size(image_size), _check_channels(channels)
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
        label = taxonomy.FER2013_LABELS.get(int(raw_id)) if raw_id.isdigit() else None
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
    return _build(
        items,
        problems=problems,
        total=total,
        size=size,
        channels=channels,
        cropper=None,
        progress=progress,
        with_subjects=True,
        with_splits=has_usage,
    )
