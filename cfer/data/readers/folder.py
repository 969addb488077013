"""Read one folder per class (``root/<class>/<file>``), the ImageFolder layout."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Sequence

from cfer.data.base import FaceDataset
from cfer.data.faces import FaceCropper
from cfer.data.readers.common import (
    DatasetError,
    _build,
    _canonical,
    _decoding,
    _Item,
    _Problems,
    _require_dir,
)

__all__ = ["IMAGE_EXTENSIONS", "read_image_folder"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
"""File extensions :func:`read_image_folder` reads (case-insensitive)."""

_SPLIT_WORDS = {"train", "training", "val", "valid", "validation", "test", "testing"}


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
    decoding = _decoding(image_size=image_size, channels=channels, crop_faces=crop_faces, progress=progress)
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
    return _build(items, problems=problems, total=total, decoding=decoding, with_subjects=pattern is not None,
                  with_splits=False)
