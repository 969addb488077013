"""Decoding one image file: orientation, bit depth, face crop, size and channels.

Pillow's ``convert("RGB")`` clips images wider than 8 bits (a 16-bit PNG turns white);
:func:`_to_8bit` scales them instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cfer.data.faces import FaceCropper

__all__ = ["read_image"]


def read_image(path: str | Path, *, image_size: int, channels: int = 3,
               cropper: FaceCropper | None = None) -> np.ndarray:
    """One image file as uint8 ``(S, S, C)``, decoded as every cfer reader decodes it
    (EXIF orientation, 16-bit and float images scaled to 8 bits, bilinear resize), the face
    cut out first by ``cropper`` where one is given (:func:`cfer.data.align.face_cropper`).

    Raises:
        OSError, ValueError: If the file cannot be decoded (Pillow's errors), or the cropper
            finds no face in it (:class:`cfer.data.faces.NoFaceFoundError`).

    Example:
        >>> read_image("face.png", image_size=48, channels=1).shape    # doctest: +SKIP
        (48, 48, 1)
    """
    img, _ = _decode(Path(path))
    return _finish_image(img, size=(image_size, image_size), channels=channels, cropper=cropper, where=str(path))


def _decode(path: Path) -> tuple[Image.Image, str | None]:
    """The image as RGB, and a note when its values had to be min-max scaled."""
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        img, note = _to_8bit(img)
        return img.convert("RGB"), note


def _to_8bit(img: Image.Image) -> tuple[Image.Image, str | None]:
    """Scale a wider-than-8-bit grey image to mode ``"L"`` (Pillow's ``convert`` clips).

    ``I;16*`` (16-bit PNG/TIFF): ``round(v / 257)``, so 0-65535 maps onto 0-255.
    ``I`` (32-bit int): the same when all values lie in 0-65535. ``F`` (float): values
    in [0, 1] times 255, values in [0, 255] as they are (rounded). Anything else
    (negative or larger values) is min-max scaled to 0-255 and the note says so;
    non-finite float values become 0. Other modes pass through unchanged.
    """
    mode = img.mode
    if not (mode.startswith("I;16") or mode in ("I", "F")):
        return img, None
    arr = np.asarray(img).astype(np.float64)
    note = None
    arr[~np.isfinite(arr)] = 0.0
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        arr = arr / 257.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        arr = arr * 255.0
    elif not (mode == "F" and lo >= 0 and hi <= 255):
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        note = f"mode {mode} values {lo:g}..{hi:g}"
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8)), note


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
