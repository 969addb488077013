"""Unlabelled faces: every image file under a folder, resized to one size.

Pretraining needs no labels, so a folder of face crops in any layout will do (class
folders, one flat folder, video frames in sub-folders). Labelled data in any of cfer's
formats can be used as well: read it with :func:`cfer.data.readers.read_dataset` and pass
the dataset (its labels are ignored).

Example:
    >>> faces = read_unlabelled("crops/", image_size=64, channels=1)   # doctest: +SKIP
    >>> faces.shape                                                    # doctest: +SKIP
    (2500, 64, 64, 1)
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from cfer.data.faces import FaceCropper
from cfer.data.readers import IMAGE_EXTENSIONS
from cfer.data.readers.images import read_image

__all__ = ["read_unlabelled"]

logger = logging.getLogger(__name__)


def read_unlabelled(path: str | Path, *, image_size: int = 64, channels: int = 3, skip_invalid: bool = False,
                    progress: bool = False, cropper: FaceCropper | None = None) -> np.ndarray:
    """Every image file under ``path`` (recursively, hidden files left out) as uint8 ``(N, S, S, C)``.

    Args:
        path: A folder of face images (:data:`cfer.data.readers.IMAGE_EXTENSIONS`).
        image_size: Side the images are resized to (decoded as cfer's readers decode:
            :func:`cfer.data.readers.images.read_image`; crop faces beforehand, or read with
            ``read_dataset(..., crop_faces=True)``).
        channels: 1 (grey) or 3 (RGB).
        skip_invalid: Skip unreadable files, and with a ``cropper`` files in which it finds no
            face (counted in one warning), instead of failing.
        progress: Show a tqdm bar.
        cropper: Cut the face out of each image first (:func:`cfer.data.align.face_cropper`;
            None: the images are face crops already).

    Raises:
        FileNotFoundError: If ``path`` is not a folder.
        ValueError: If it holds no image file, or (without ``skip_invalid``) one cannot be read.

    Example:
        >>> read_unlabelled("frames/", image_size=48, channels=1).dtype   # doctest: +SKIP
        dtype('uint8')
    """
    from tqdm.auto import tqdm

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {root}; give a folder of face images (or a labelled dataset with "
                                "--format)")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise ValueError(f"{root} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); give a folder of face crops")
    out, bad = [], []
    for f in tqdm(files, desc="reading faces", unit="img", disable=not progress):
        try:
            arr = read_image(f, image_size=image_size, channels=channels, cropper=cropper)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            if not skip_invalid:
                raise ValueError(f"cannot read {f} ({type(exc).__name__}: {exc}); remove it or pass "
                                 "skip_invalid=True") from None
            bad.append(f)
            continue
        out.append(arr)
    if bad:
        what = "unreadable or faceless" if cropper is not None else "unreadable"
        warnings.warn(f"skipped {len(bad)} {what} files of {len(files)} under {root}, e.g. {bad[0]}",
                      stacklevel=2)
    if not out:
        raise ValueError(f"no readable image under {root}")
    logger.info("read %d unlabelled faces from %s", len(out), root)
    return np.stack(out)
