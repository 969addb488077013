"""Readers for real face-expression data: class folders, CSV manifests, RAF-DB and FER2013.

Every reader decodes all images eagerly, resizes them (Pillow, bilinear with
anti-aliasing) to one size, converts them to grey or RGB and returns a
:class:`cfer.data.FaceDataset`. Labels in any spelling go through
:func:`cfer.taxonomy.normalize`; the dataset's ``classes`` are the classes present,
in :data:`cfer.taxonomy.ALL_CLASSES` order. Bad input raises :class:`DatasetError`
naming the file or CSV line and the fix (see :mod:`cfer.data.readers.common`).

:data:`READERS` is the one table of formats: the command line, the run preparation and
:func:`read_dataset` all dispatch through it, and a new format is one file here plus one
row in the table.

Example:
    >>> from cfer.data.readers import FORMATS, read_dataset
    >>> FORMATS
    ('imagefolder', 'csv', 'rafdb', 'fer2013')
    >>> ds = read_dataset("faces/", format="imagefolder", subject_pattern=r"^(s\\d+)_")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from cfer.data.base import FaceDataset
from cfer.data.faces import FaceCropper
from cfer.data.readers.common import (
    MAX_DECODED_BYTES,
    MAX_IMAGE_SIDE,
    DatasetError,
    DatasetNotFoundError,
    IgnoredFilesWarning,
    SkippedItemsWarning,
)
from cfer.data.readers.fer2013 import read_fer2013
from cfer.data.readers.folder import IMAGE_EXTENSIONS, read_image_folder
from cfer.data.readers.manifest import read_csv_manifest
from cfer.data.readers.rafdb import read_rafdb

__all__ = [
    "READERS", "FORMATS", "Reader", "read_dataset", "DatasetError", "DatasetNotFoundError", "SkippedItemsWarning",
    "IgnoredFilesWarning", "MAX_IMAGE_SIDE", "MAX_DECODED_BYTES",
    "IMAGE_EXTENSIONS", "read_image_folder", "read_csv_manifest", "read_rafdb", "read_fer2013",
]


@dataclass(frozen=True)
class Reader:
    """One data format.

    Attributes:
        read: The reader function (its first argument is the path).
        crop_faces: Whether face cropping applies (not to pre-aligned sets).
        subject_pattern: Whether subjects come from a file-name pattern (image folders).
        subsets: The label sets the format has (RAF-DB: basic and compound).
        notes: One line on what the format holds (the command line's help shows it).
    """

    read: Callable[..., FaceDataset]
    crop_faces: bool = True
    subject_pattern: bool = False
    subsets: tuple[str, ...] = ()
    notes: str = ""


READERS: dict[str, Reader] = {
    "imagefolder": Reader(read_image_folder, subject_pattern=True,
                          notes="one sub-folder per class; subjects from --subject-pattern"),
    "csv": Reader(read_csv_manifest, notes="path,label[,subject][,split] columns"),
    "rafdb": Reader(read_rafdb, crop_faces=False, subsets=("basic", "compound"),
                    notes="RAF-DB's EmoLabel/ and Image/aligned/ (already aligned faces)"),
    "fer2013": Reader(read_fer2013, crop_faces=False,
                      notes="fer2013.csv: 48x48 grey faces of the basic classes only"),
}
"""Every format cfer reads, by name."""

FORMATS: tuple[str, ...] = tuple(READERS)


def read_dataset(
    path: str | os.PathLike,
    *,
    format: str,  # noqa: A002 - the word users know from --format
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    crop_faces: bool | FaceCropper = False,
    subject_pattern: str | None = None,
    subset: str | None = None,
    skip_invalid: bool = False,
    progress: bool = False,
) -> FaceDataset:
    """Read ``path`` with the reader of ``format`` (see :data:`READERS`).

    Options a format does not take are refused with the reason, not ignored.

    Args:
        path: The data set's folder or file.
        format: One of :data:`FORMATS`.
        image_size: Output side, at most :data:`MAX_IMAGE_SIDE` (default: the reader's own).
        channels: 1 (grey) or 3 (RGB) (default: the reader's own).
        crop_faces: Detect and crop the face first (``True`` or a ``FaceCropper``).
        subject_pattern: Image folders: regex whose one group is the subject id.
        subset: RAF-DB: ``"basic"`` (default) or ``"compound"``.
        skip_invalid: Skip bad items (counted in one warning and in the dataset's
            ``skipped``) instead of raising.
        progress: Show a progress bar.

    Raises:
        ValueError: For an unknown format, or an option the format does not take.
    """
    if format not in READERS:
        import difflib

        close = difflib.get_close_matches(str(format), FORMATS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown data format {format!r}{hint}; choose one of {list(FORMATS)}")
    reader = READERS[format]
    kwargs: dict = {"skip_invalid": skip_invalid, "progress": progress}
    if image_size is not None:
        kwargs["image_size"] = image_size
    if channels is not None:
        kwargs["channels"] = channels
    if crop_faces:
        if not reader.crop_faces:
            raise ValueError(f"face cropping does not apply to {format}: its images are already aligned faces; "
                             "drop --crop-faces")
        kwargs["crop_faces"] = crop_faces
    if subject_pattern is not None:
        if not reader.subject_pattern:
            raise ValueError(f"--subject-pattern applies to imagefolder data only, not {format} (a CSV manifest "
                             "has a 'subject' column instead)")
        kwargs["subject_pattern"] = subject_pattern
    if subset is not None:
        if subset not in reader.subsets:
            raise ValueError(f"{format} has no label subset {subset!r}"
                             + (f"; choose one of {list(reader.subsets)}" if reader.subsets else ""))
        kwargs["subset"] = subset
    return reader.read(path, **kwargs)
