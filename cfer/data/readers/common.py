"""What every reader shares: the error types, the item record, one loop that decodes,
crops and resizes the images, and the bookkeeping of bad items.

Bad input raises :class:`DatasetError` (a ``ValueError``; missing files raise
:class:`DatasetNotFoundError`, also a ``FileNotFoundError``) whose message names the
file or CSV line and the fix. With ``skip_invalid=True`` bad items are skipped instead
and counted in one :class:`SkippedItemsWarning`; every reader records what it left out in
:attr:`cfer.data.FaceDataset.skipped`.

Images wider than 8 bits (16-bit PNG/TIFF, 32-bit integer and float TIFF) are scaled to
8 bits, not clipped (:mod:`cfer.data.readers.images`). Output sides are capped at
:data:`MAX_IMAGE_SIDE` and the decoded data at :data:`MAX_DECODED_BYTES`.
"""

from __future__ import annotations

import csv
import logging
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from cfer import taxonomy
from cfer.data.base import FaceDataset
from cfer.data.faces import FaceCropper, NoFaceFoundError
from cfer.data.readers.images import _decode, _finish_image

__all__ = [
    "DatasetError", "DatasetNotFoundError", "SkippedItemsWarning", "IgnoredFilesWarning", "MAX_IMAGE_SIDE",
    "MAX_DECODED_BYTES",
]

logger = logging.getLogger(__name__)

_SKIP_HINT = "or pass skip_invalid=True to skip such items"

MAX_IMAGE_SIDE = 1024
"""The largest output side (pixels) a reader accepts for ``image_size``."""

MAX_DECODED_BYTES = 8 * 2**30
"""The most memory (bytes, 8 GiB) the decoded images of one read may take; checked
before decoding, as ``images * height * width * channels``."""

_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
           "dev": "val", "test": "test", "testing": "test"}
"""Split spellings readers accept (lower-cased) -> cfer's split names."""

_INT = re.compile(r"[+-]?[0-9]+")


class DatasetError(ValueError):
    """A data set on disk is malformed; the message names the file or line and the fix."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A folder, CSV file or image a reader needs does not exist."""


class SkippedItemsWarning(UserWarning):
    """Some items were skipped because ``skip_invalid=True``."""


class IgnoredFilesWarning(UserWarning):
    """A reader ignored files whose extension it does not read (counted per extension)."""


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
        self.notes: Counter[str] = Counter()  # left out without being errors
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

    def note(self, *, reason: str, n: int = 1) -> None:
        """Count ``n`` items left out that are not errors (the caller tells the user)."""
        if n:
            self.notes[reason] += n

    @property
    def skipped(self) -> dict[str, int]:
        return dict(self.counts + self.notes)

    def summary(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())

    items, usable = "items", "images"  # the words of the final messages (clip readers say "clips")

    def finish(self, *, total: int, kept: int) -> None:
        skipped = sum(self.counts.values())
        if total == 0:
            raise DatasetError(f"{self.reader}: found no {self.items} to read; check that the path points at the "
                               "data set")
        if kept == 0:
            detail = f" (skipped {skipped} of {total}: {self.summary()}; first: {self.first})" if skipped else ""
            raise DatasetError(f"{self.reader}: no usable {self.usable}{detail}; fix the data or point the reader at "
                               "the right place")
        if skipped:
            msg = f"{self.reader}: skipped {skipped} of {total} {self.items}: {self.summary()}; first: {self.first}"
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
    if max(h, w) > MAX_IMAGE_SIDE:
        raise ValueError(f"image_size {image_size!r} is above the limit of {MAX_IMAGE_SIDE} pixels a side; pass "
                         f"image_size <= {MAX_IMAGE_SIDE} (faces are usually trained at 48-224)")
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


@dataclass(frozen=True)
class _Decoding:
    """How every image of one read is decoded: output size, channels, face crop, bar."""

    size: tuple[int, int]
    channels: int
    cropper: FaceCropper | None
    progress: bool


def _decoding(*, image_size: int | Sequence[int], channels: int, crop_faces: bool | FaceCropper,
              progress: bool) -> _Decoding:
    """Check a reader's decoding options once, at its door."""
    return _Decoding(size=_size(image_size), channels=_check_channels(channels), cropper=_cropper(crop_faces),
                     progress=progress)


def _check_memory(n: int, decoding: _Decoding, *, reader: str) -> None:
    (h, w), c = decoding.size, decoding.channels
    need = n * h * w * c
    if need > MAX_DECODED_BYTES:
        raise DatasetError(
            f"{reader}: {n} images of {h}x{w}x{c} would take {need / 2**30:.1f} GiB of memory once decoded, "
            f"above the limit of {MAX_DECODED_BYTES / 2**30:.1f} GiB; pass a smaller image_size (faces are usually "
            "trained at 48-224), grey images (channels=1) or fewer images, or raise "
            "cfer.data.readers.common.MAX_DECODED_BYTES if the machine has the memory"
        )


def _build(items: list[_Item], *, problems: _Problems, total: int, decoding: _Decoding, with_subjects: bool,
           with_splits: bool) -> FaceDataset:
    size, channels, cropper, progress = decoding.size, decoding.channels, decoding.cropper, decoding.progress
    _check_memory(len(items), decoding, reader=problems.reader)
    out = np.empty((len(items), *size, channels), np.uint8)
    kept: list[_Item] = []
    scaled: list[str] = []
    for item in _progress(items, enabled=progress, desc=problems.reader):
        try:
            if item.pixels is not None:
                img = Image.fromarray(item.pixels)
            else:
                assert item.path is not None
                img, note = _decode(item.path)
                if note is not None:
                    scaled.append(f"{item.where} ({note})")
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
        out[len(kept)] = arr
        kept.append(item)
    problems.finish(total=total, kept=len(kept))
    if scaled:
        logger.warning("%s: %d images had values outside the 8/16-bit range and were min-max scaled to 0-255 "
                       "(first: %s); save them as 8- or 16-bit images to keep their own brightness",
                       problems.reader, len(scaled), scaled[0])

    present = {it.label for it in kept}
    classes = [c for c in taxonomy.ALL_CLASSES if c in present]
    index = {c: i for i, c in enumerate(classes)}
    paths = [str(it.path) for it in kept] if all(it.path is not None for it in kept) else None
    ds = FaceDataset(
        images=out if len(kept) == len(out) else out[: len(kept)].copy(),
        labels=[index[it.label] for it in kept],
        classes=classes,
        subjects=[it.subject for it in kept] if with_subjects else None,
        splits=[it.split for it in kept] if with_splits else None,
        paths=paths,
        skipped=problems.skipped,
    )
    logger.info("%s: read %d images of %d classes", problems.reader, len(ds), len(classes))
    return ds


def _require(path: Path, *, folder: bool, what: str, fix: str) -> Path:
    """``path`` if it is an existing folder (``folder``) or file; else the error that says so."""
    if not path.exists():
        raise DatasetNotFoundError(f"{what} {path} does not exist; {fix}")
    if not (path.is_dir() if folder else path.is_file()):
        raise DatasetError(f"{what} {path} is not a {'folder' if folder else 'file'}; {fix}")
    return path


def _require_file(path: Path, *, what: str, fix: str) -> Path:
    return _require(path, folder=False, what=what, fix=fix)


def _require_dir(path: Path, *, what: str, fix: str) -> Path:
    return _require(path, folder=True, what=what, fix=fix)


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DatasetError:
    """The error for a text file that is not UTF-8, naming the first bad line and byte."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                return DatasetError(
                    f"{path} line {line_no}: not UTF-8 text (byte 0x{raw[bad.start]:02x} at column {bad.start + 1}, "
                    f"{raw[max(0, bad.start - 20):bad.start + 1]!r}); save the file as UTF-8, e.g. "
                    f"iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}"
                )
    return DatasetError(f"{path}: not UTF-8 text ({exc}); save the file as UTF-8, e.g. "
                        f"iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}")


def _parse_int(text: str) -> int | None:
    """``text`` as an int when it is ASCII digits with an optional sign, else None."""
    return int(text) if _INT.fullmatch(text) else None


def _read_csv_header(path: Path, required: Sequence[str], fix: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """Rows of a CSV with a header, keyed by lower-cased column names, with line numbers."""
    try:
        return _read_csv_rows(path, required, fix)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc


def _read_csv_rows(path: Path, required: Sequence[str], fix: str) -> tuple[list[str], list[tuple[int, dict]]]:
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
