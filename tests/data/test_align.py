"""Face alignment: the eye geometry exactly, and the Haar eye search on rendered faces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cfer.data.align import FaceAligner, align_by_eyes, eye_targets, face_cropper
from cfer.data.faces import FaceCropper


def _dots(shape: tuple[int, int], points: list[tuple[float, float]]) -> np.ndarray:
    img = np.zeros(shape, np.uint8)
    for x, y in points:
        img[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
    return img


def _centre(img: np.ndarray, half: str) -> tuple[float, float]:
    grey = img if img.ndim == 2 else img[:, :, 0]
    w = grey.shape[1]
    part = grey[:, : w // 2] if half == "left" else grey[:, w // 2:]
    ys, xs = np.nonzero(part > 100)
    return float(xs.mean()) + (0 if half == "left" else w // 2), float(ys.mean())


@pytest.mark.parametrize("roll", [-20.0, 0.0, 14.0])
def test_align_by_eyes_puts_the_eyes_level_at_their_targets(roll: float) -> None:
    cx, cy, half = 100.0, 90.0, 30.0
    t = math.radians(roll)
    left = (cx - half * math.cos(t), cy - half * math.sin(t))
    right = (cx + half * math.cos(t), cy + half * math.sin(t))
    out = align_by_eyes(_dots((200, 200), [left, right]), left=left, right=right, side=64)
    assert out.shape == (64, 64)
    (tlx, tly), (trx, try_) = eye_targets(64)
    (lx, ly), (rx, ry) = _centre(out, "left"), _centre(out, "right")
    assert abs(ly - ry) < 1.0
    assert abs(lx - tlx) < 1.0 and abs(rx - trx) < 1.0 and abs(ly - tly) < 1.0


def test_align_by_eyes_keeps_channels_and_refuses_bad_eyes() -> None:
    rgb = np.zeros((50, 50, 3), np.uint8)
    assert align_by_eyes(rgb, left=(15, 20), right=(35, 20), side=32).shape == (32, 32, 3)
    assert align_by_eyes(rgb[:, :, :1], left=(15, 20), right=(35, 20), side=32).shape == (32, 32, 1)
    with pytest.raises(ValueError, match="right"):
        align_by_eyes(rgb, left=(35, 20), right=(15, 20), side=32)
    with pytest.raises(ValueError, match="fractions"):
        align_by_eyes(rgb, left=(15, 20), right=(35, 20), side=32, eye_distance=1.5)
    with pytest.raises(ValueError, match="fractions"):
        FaceAligner(eye_height=0.0)


def test_the_aligner_levels_the_eyes_of_a_rolled_rendered_face() -> None:
    import cv2

    from cfer.data.synthetic import make_synthetic_splits

    faces = make_synthetic_splits(classes="basic", subjects=(2, 1, 1), per_class=1, image_size=128, channels=1,
                                  seed=0)["train"].images
    aligner = FaceAligner(detect_face=False)
    gaps_before, gaps_after = [], []
    for face in faces:
        m = cv2.getRotationMatrix2D((64, 64), 12, 1.0)
        rolled = cv2.warpAffine(face[:, :, 0], m, (128, 128), borderMode=cv2.BORDER_REPLICATE)
        before = aligner.eyes(rolled, (0, 0, 128, 128))
        out = aligner.crop(rolled)
        after = aligner.eyes(out, (0, 0, *out.shape[:2]))
        if before is not None and after is not None:
            gaps_before.append(abs(before[0][1] - before[1][1]))
            gaps_after.append(abs(after[0][1] - after[1][1]))
    assert len(gaps_after) >= len(faces) // 2, "the eye search should find most rendered eyes"
    assert np.mean(gaps_before) > 5  # a 12-degree roll puts one eye ~7 px above the other
    assert np.mean(gaps_after) < 0.4 * np.mean(gaps_before)
    assert aligner.stats["aligned"] >= len(gaps_after)


def test_no_eyes_falls_back_to_the_face_box_and_counts_it() -> None:
    aligner = FaceAligner(detect_face=False)
    flat = np.full((60, 60), 128, np.uint8)
    out = aligner.crop(flat)
    assert out.shape == (60, 60) and aligner.stats == {"aligned": 0, "fallback": 1}


def test_face_cropper_from_the_options() -> None:
    assert face_cropper(crop=False, align=False) is False
    assert type(face_cropper(crop=True, align=False)) is FaceCropper
    both = face_cropper(crop=True, align=True, margin=0.3)
    assert isinstance(both, FaceAligner) and both.detect_face and both.margin == 0.3
    assert face_cropper(crop=False, align=True).detect_face is False


def test_a_reader_aligns_through_crop_faces(tmp_path) -> None:
    from PIL import Image

    from cfer.data.readers import read_dataset
    from cfer.data.synthetic import make_synthetic_splits

    faces = make_synthetic_splits(classes="basic", subjects=(1, 1, 1), per_class=1, image_size=128, channels=1,
                                  seed=1)["train"]
    for i, (img, label) in enumerate(zip(faces.images, faces.labels)):
        folder = tmp_path / faces.classes[label]
        folder.mkdir(exist_ok=True)
        Image.fromarray(img[:, :, 0]).save(folder / f"s1_{i}.png")
    aligner = FaceAligner(detect_face=False)
    ds = read_dataset(tmp_path, format="imagefolder", image_size=48, channels=1, crop_faces=aligner)
    assert ds.images.shape == (len(faces), 48, 48, 1)
    assert sum(aligner.stats.values()) == len(faces)
