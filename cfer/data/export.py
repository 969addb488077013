"""Write faces to disk as an ImageFolder with a CSV manifest: the one export loop.

Files go to ``root/<class>/<subject>_<k>.<ext>`` (``k`` counts a subject's faces of that
class from 0, three digits), so both
``read_image_folder(root, subject_pattern=r"^(s\\d+)_")`` and
``read_csv_manifest(root / "manifest.csv")`` read them back with their subjects. The
manifest lists ``path`` (relative to ``root``), ``label``, ``subject`` and any extra
columns the caller gives (the framed photos add their true face boxes).

Example:
    >>> import tempfile
    >>> from cfer.data.synthetic import render_faces
    >>> faces = render_faces(classes=["happy", "awed"], n_subjects=2, per_class=1, image_size=32)
    >>> root = tempfile.mkdtemp()
    >>> export_image_folder(root, images=faces.images, labels=faces.class_names, subjects=faces.subjects)
    4
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cfer.atomic import write_text

__all__ = ["export_image_folder", "MANIFEST"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
"""File name of the manifest :func:`export_image_folder` writes next to the class folders."""

_FORMATS = {"png": "PNG", "jpg": "JPEG"}


def export_image_folder(
    root: str | os.PathLike,
    *,
    images: np.ndarray,
    labels: Sequence[str],
    subjects: Sequence[str],
    image_format: str = "png",
    quality: int = 90,
    extra_columns: Mapping[str, Sequence[object]] | None = None,
    overwrite: bool = False,
) -> int:
    """Write ``images`` as ``root/<label>/<subject>_<k>.<ext>`` plus ``root/manifest.csv``.

    Args:
        root: Output folder; created if missing.
        images: uint8 ``(N, H, W, C)`` with ``C`` 1 or 3.
        labels: Class name of every image (its folder).
        subjects: Subject id of every image (the file name's prefix).
        image_format: ``"png"`` (lossless) or ``"jpg"``.
        quality: JPEG quality, 1-95 (``"jpg"`` only).
        extra_columns: More manifest columns, one value per image (e.g. face boxes).
        overwrite: Write into a folder that is not empty (files of the same names are
            replaced; other files stay and would be read with the new ones).

    Returns:
        The number of image files written.

    Raises:
        ValueError: If ``root`` is a file, or not empty without ``overwrite``; if the
            lengths disagree; for an unknown format or a bad quality.
    """
    from PIL import Image

    images = np.asarray(images)
    n = len(images)
    extra = dict(extra_columns or {})
    if image_format not in _FORMATS:
        raise ValueError(f"image_format must be one of {list(_FORMATS)}, got {image_format!r}")
    if not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 95:
        raise ValueError(f"quality must be an int JPEG quality in [1, 95] (90 is the default), got {quality!r}")
    lengths = {"labels": len(labels), "subjects": len(subjects), **{k: len(v) for k, v in extra.items()}}
    wrong = {k: v for k, v in lengths.items() if v != n}
    if wrong:
        raise ValueError(f"{n} images but {wrong}; give one value per image")
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, C) with C 1 or 3, got {images.dtype} {images.shape}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is a file; pass a folder to write the class folders into")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise ValueError(f"{root} is not empty; pass an empty or new folder, or overwrite=True to write into it "
                         "(old images there would be read together with the new ones)")
    root.mkdir(parents=True, exist_ok=True)
    counter: dict[tuple[str, str], int] = {}
    rows = []
    options = {"quality": int(quality)} if image_format == "jpg" else {}
    for i in range(n):
        label, subject = str(labels[i]), str(subjects[i])
        k = counter.get((label, subject), 0)
        counter[(label, subject)] = k + 1
        rel = Path(label) / f"{subject}_{k:03d}.{image_format}"
        (root / label).mkdir(exist_ok=True)
        img = images[i]
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(root / rel, _FORMATS[image_format],
                                                                          **options)
        rows.append([rel.as_posix(), label, subject, *(extra[c][i] for c in extra)])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "subject", *extra])
    writer.writerows(rows)
    write_text(root / MANIFEST, buf.getvalue())
    logger.info("wrote %d images of %d classes to %s", n, len(set(labels)), root)
    return n
