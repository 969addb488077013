"""Face detection and cropping with OpenCV's Haar cascade."""

from __future__ import annotations

import numpy as np
import pytest

from cfer.data import FaceCropper, NoFaceFoundError, crop_face
from cfer.data import faces as faces_mod


@pytest.mark.parametrize(
    "size,cx,cy",
    [(100, 200, 150), (120, 150, 130), (140, 260, 170), (160, 200, 150), (110, 130, 190)],
)
def test_drawn_face_is_found_and_crop_is_centred(face_drawer, size, cx, cy):
    image = face_drawer(cx=cx, cy=cy, size=size)
    cropper = FaceCropper(margin=0.2)
    boxes = cropper.detect(image)
    assert boxes, "the Haar cascade should find the drawn face"
    x, y, w, h = boxes[0]
    assert abs(x + w / 2 - cx) < 0.15 * size and abs(y + h / 2 - cy) < 0.25 * size
    top, left, bottom, right = cropper.box(image)
    assert bottom - top == right - left  # square
    assert 0 <= top and 0 <= left and bottom <= image.shape[0] and right <= image.shape[1]
    # The crop is the detected box widened by the margin (unless clipped by the frame).
    assert bottom - top == min(round(max(w, h) * 1.4), *image.shape[:2])
    assert abs((left + right) / 2 - cx) < 0.15 * size
    assert abs((top + bottom) / 2 - cy) < 0.25 * size
    crop = cropper.crop(image)
    assert crop.shape == (bottom - top, right - left)
    np.testing.assert_array_equal(crop, image[top:bottom, left:right])


def test_rgb_and_single_channel_inputs_keep_their_channels(face_drawer):
    rgb = face_drawer(rgb=True)
    crop = crop_face(rgb, margin=0.1)
    assert crop.ndim == 3 and crop.shape[2] == 3 and crop.shape[0] == crop.shape[1]
    grey1 = face_drawer()[:, :, None]
    crop1 = crop_face(grey1)
    assert crop1.shape[2] == 1 and crop1.shape[0] == crop1.shape[1]


def test_margin_widens_crop(face_drawer):
    image = face_drawer(size=100)
    small = crop_face(image, margin=0.0)
    large = crop_face(image, margin=0.3)
    assert large.shape[0] > small.shape[0]
    assert large.shape[0] == pytest.approx(small.shape[0] * 1.6, abs=2)


def test_crop_near_border_is_shifted_inside_and_stays_square(face_drawer):
    image = face_drawer(cx=95, cy=110, size=120)  # face close to the top-left corner
    top, left, bottom, right = FaceCropper(margin=0.5).box(image)
    assert top == 0 and left == 0 and bottom - top == right - left


def test_largest_face_wins(face_drawer):
    image = np.maximum(face_drawer(width=600, cx=140, size=100), face_drawer(width=600, cx=420, size=160))
    x, y, w, h = FaceCropper().detect(image)[0]
    assert abs(x + w / 2 - 420) < 30


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_face_raises_naming_the_source(kind):
    rng = np.random.default_rng(0)
    image = np.full((300, 400, 3), 128, np.uint8) if kind == "blank" else rng.integers(0, 256, (300, 400, 3)).astype(np.uint8)
    assert FaceCropper().detect(image) == []
    with pytest.raises(NoFaceFoundError, match=r"no face found in photos/empty\.jpg.*lower min_size"):
        crop_face(image, source="photos/empty.jpg")
    assert issubclass(NoFaceFoundError, ValueError)


def test_min_size_larger_than_face_finds_nothing(face_drawer):
    image = face_drawer(size=100)
    with pytest.raises(NoFaceFoundError, match="min_size=250"):
        crop_face(image, min_size=250, source="x.png")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"margin": -0.1}, "margin must be >= 0"),
        ({"min_size": 0}, "min_size must be a positive"),
        ({"scale_factor": 1.0}, "scale_factor must be > 1"),
        ({"min_neighbors": -1}, "min_neighbors must be"),
    ],
)
def test_config_is_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FaceCropper(**kwargs)


def test_config_is_frozen():
    cropper = FaceCropper()
    with pytest.raises(AttributeError):
        cropper.margin = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    "image,match",
    [
        (np.zeros((10, 10), np.float32), "must be uint8"),
        (np.zeros((10, 10, 4), np.uint8), r"alpha channel"),
        (np.zeros((2, 10, 10, 3), np.uint8), r"got shape \(2, 10, 10, 3\)"),
    ],
)
def test_bad_images_are_refused(image, match):
    with pytest.raises(ValueError, match=match):
        crop_face(image, source="bad.png")


def test_missing_cascades_name_the_opencv_pin(monkeypatch):
    import cv2

    class FakeData:
        haarcascades = ""

    faces_mod._load_cascade.cache_clear()
    monkeypatch.setattr(cv2, "data", FakeData, raising=False)
    try:
        with pytest.raises(faces_mod.FaceDetectorUnavailableError, match=r'opencv-python-headless<5'):
            FaceCropper().detect(np.zeros((50, 50), np.uint8))
    finally:
        faces_mod._load_cascade.cache_clear()


def test_missing_cascade_file_names_the_opencv_pin():
    with pytest.raises(faces_mod.FaceDetectorUnavailableError, match=r"no_such\.xml.*opencv-python-headless<5"):
        FaceCropper(cascade="no_such.xml").detect(np.zeros((50, 50), np.uint8))
