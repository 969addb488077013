"""Read one folder per class (``root/<class>/<file>``), the ImageFolder layout."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

from cfer.data.base import FaceDataset
from cfer.data.faces import FaceCropper
from cfer.data.readers.common import (
    _SPLITS,
    DatasetError,
    IgnoredFilesWarning,
    _build,
    _canonical,
    _decoding,
    _Item,
    _Problems,
    _require_dir,
)

__all__ = ["IMAGE_EXTENSIONS", "read_image_folder"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".gif",
)
"""File extensions :func:`read_image_folder` reads (case-insensitive; a GIF's first frame)."""


def _files_under(folder: Path) -> list[Path]:
    """Every file anywhere under ``folder``, sorted; hidden files and folders left out."""

    def fail(exc: OSError) -> None:
        raise DatasetError(f"cannot list folder {exc.filename}: {exc.strerror}; fix its permissions or move it "
                           "out of the data set") from exc

    files: list[Path] = []
    seen: set[str] = set()
    for here, dirs, names in os.walk(folder, onerror=fail, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a symbolic link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [p for n in names if not n.startswith(".") and (p := Path(here) / n).is_file()]
    return sorted(files)


def _warn_ignored(root: Path, ignored: Counter[str]) -> None:
    n = sum(ignored.values())
    per = ", ".join(f"{ext}: {k}" for ext, k in sorted(ignored.items(), key=lambda kv: (-kv[1], kv[0])))
    warnings.warn(IgnoredFilesWarning(
        f"read_image_folder({root}): ignored {n} file{'s' if n != 1 else ''} with unsupported extensions ({per}); "
        "if they are images, convert them to PNG/JPEG or pass extensions=..."), stacklevel=3)


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
    (``Happily_Surprised``, ``happiness``). Files anywhere under a class folder are
    read, in sub-folders too (``root/happy/session1/img.png``); hidden entries (names
    starting with ``.``) are left out. Files whose extension is not in
    ``extensions`` are ignored with one :class:`IgnoredFilesWarning` that counts them
    per extension, and are counted under ``"unsupported extension"`` in the
    dataset's :attr:`~cfer.data.FaceDataset.skipped`.

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
        extensions: File extensions to read (case-insensitive; default
            :data:`IMAGE_EXTENSIONS`).
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
    total = 0
    ignored: Counter[str] = Counter()
    seen: dict[str, Path] = {}
    for folder in folders:
        files = _files_under(folder)
        images = [p for p in files if p.suffix.lower() in exts]
        ignored.update(p.suffix.lower() or "(no extension)" for p in files if p.suffix.lower() not in exts)
        label, why = _canonical(folder.name)
        if label is None:
            split_hint = (
                f" ({folder.name!r} looks like a split folder: read each split folder on its own)"
                if folder.name.lower() in _SPLITS
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
        _warn_ignored(root, ignored)
        problems.note(reason="unsupported extension", n=sum(ignored.values()))
    return _build(items, problems=problems, total=total, decoding=decoding, with_subjects=pattern is not None,
                  with_splits=False)
