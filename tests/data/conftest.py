"""Shared fixtures for the cfer.data tests: tiny real image files and a drawn face."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def draw_face(
    *, height: int = 300, width: int = 400, cx: int = 200, cy: int = 150, size: int = 140,
    background: int = 60, skin: int = 200, rgb: bool = False,
) -> np.ndarray:
    """A cartoon frontal face (bright oval, dark brows/eyes/mouth, nose shadow) the
    OpenCV frontal-face Haar cascade detects; ``size`` is the face's width scale in px."""
    import cv2

    img = np.full((height, width), background, np.uint8)
    s = size / 2
    cv2.ellipse(img, (cx, cy), (int(s * 0.80), int(s * 1.05)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    eye_y, eye_dx = int(cy - s * 0.20), int(s * 0.36)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        cv2.ellipse(img, (ex, int(cy - s * 0.42)), (int(s * 0.24), int(s * 0.06)), 0, 0, 360, 50, -1, cv2.LINE_AA)
        cv2.ellipse(img, (ex, eye_y), (int(s * 0.20), int(s * 0.10)), 0, 0, 360, 70, -1, cv2.LINE_AA)
        cv2.circle(img, (ex, eye_y), int(s * 0.06), 20, -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, int(cy + s * 0.18)), (int(s * 0.14), int(s * 0.06)), 0, 0, 360, 120, -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, int(cy + s * 0.50)), (int(s * 0.30), int(s * 0.08)), 0, 0, 360, 60, -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), max(1.0, size / 80))
    if rgb:
        tint = np.array([1.0, 0.85, 0.75])  # skin-ish colour, still bright on dark
        img = np.clip(img[:, :, None] * tint[None, None, :], 0, 255).astype(np.uint8)
    return img


def write_image(path: Path, *, size: tuple[int, int] = (20, 16), value: int = 128, mode: str = "RGB") -> Path:
    """Write a real image file (format from the extension) of ``size`` = (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    w, h = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    arr = np.clip(value + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)
    Image.fromarray(arr, mode=None).convert(mode).save(path)
    return path


@pytest.fixture
def face_drawer():
    return draw_face


@pytest.fixture
def image_writer():
    return write_image
