"""Synthetic faces in photo-like frames, and the Haar cropper finding them again."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cfer import taxonomy as tx
from cfer.data import FaceCropper, NoFaceFoundError, read_image_folder
from cfer.data.synthetic.framed import PHOTO_CROPPER, FramedFaces, box_iou, export_photo_folder, render_framed_faces

CLASSES = tx.BASIC + tx.COMPOUND  # the 21 expression classes


@pytest.fixture(scope="module")
def photos() -> FramedFaces:
    # 21 classes x 5 subjects = 105 frames.
    return render_framed_faces(classes=CLASSES, n_subjects=5, per_class=1, seed=0)


def test_frames_boxes_and_labels(photos):
    n = 5 * 21
    assert len(photos) == n and photos.images.shape == (n, 240, 320, 3) and photos.images.dtype == np.uint8
    assert photos.frame_size == (240, 320)
    assert photos.boxes.shape == (n, 4) and photos.labels.shape == (n,)
    assert photos.classes == CLASSES and sorted(set(photos.subjects)) == [f"s{k:04d}" for k in range(5)]
    assert np.bincount(photos.labels).tolist() == [5] * 21
    top, left, bottom, right = photos.boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (bottom <= 240).all() and (right <= 320).all()
    side = bottom - top
    assert (side == right - left).all()  # square: the face's own rendered frame
    assert side.min() >= round(96 * 0.85) and side.max() <= round(96 * 1.15)
    assert side.std() > 3  # mild random scale
    assert np.unique(top).size > n // 2 and np.unique(left).size > n // 2  # random positions
    # The faces are the renderer's faces, with their ground truth.
    assert photos.faces.images.shape == (n, 96, 96, 3) and photos.faces.labels.tolist() == photos.labels.tolist()


def test_deterministic_per_seed_and_global_rng_untouched():
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    a = render_framed_faces(classes="basic", n_subjects=2, per_class=1, seed=4)
    b = render_framed_faces(classes="basic", n_subjects=2, per_class=1, seed=4)
    c = render_framed_faces(classes="basic", n_subjects=2, per_class=1, seed=5)
    assert np.array_equal(np.random.get_state()[1], state)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.boxes, b.boxes)
    assert np.abs(a.images.astype(int) - c.images.astype(int)).mean() > 5
    assert not np.array_equal(a.boxes, c.boxes)


def test_a_subjects_frames_do_not_depend_on_the_call():
    both = render_framed_faces(classes="basic", n_subjects=2, per_class=1, seed=2)
    second = render_framed_faces(classes="basic", n_subjects=1, per_class=1, seed=2, first_subject=1)
    assert second.subjects == both.subjects[6:]
    assert np.array_equal(second.images, both.images[6:]) and np.array_equal(second.boxes, both.boxes[6:])


def test_square_frames_and_frame_size_int():
    p = render_framed_faces(classes=["happy"], n_subjects=1, per_class=2, face_size=48, frame_size=100, seed=0)
    assert p.images.shape == (2, 100, 100, 3) and p.boxes[:, 2:].max() <= 100


def test_cropper_finds_the_faces_with_the_documented_settings(photos):
    found, ious = [], []
    for image, box in zip(photos.images, photos.boxes):
        try:
            crop = PHOTO_CROPPER.box(image)
        except NoFaceFoundError:
            found.append(False)
            ious.append(0.0)
            continue
        found.append(True)
        ious.append(box_iou(crop, box))
    found, ious = np.array(found), np.array(ious)
    assert found.mean() >= 0.95, found.mean()
    assert (ious >= 0.5).mean() >= 0.95, (ious >= 0.5).mean()
    assert np.median(ious[found]) > 0.8
    basic = np.isin(photos.labels, [CLASSES.index(c) for c in tx.BASIC])
    assert found[basic].mean() >= 0.95 and found[~basic].mean() >= 0.95


def test_flat_faces_are_found_less_often(photos):
    """The photo shading is what makes the frames detectable: without it, rates drop."""
    flat = render_framed_faces(classes=CLASSES, n_subjects=3, per_class=1, seed=0, shading=0.0)
    n = len(flat)
    assert np.array_equal(flat.boxes, photos.boxes[:n])  # same faces, same places
    flat_rate = np.mean([bool(PHOTO_CROPPER.detect(im)) for im in flat.images])
    shaded_rate = np.mean([bool(PHOTO_CROPPER.detect(im)) for im in photos.images[:n]])
    assert flat_rate <= shaded_rate - 0.1, (flat_rate, shaded_rate)


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 10, 10), (0, 5, 10, 15)) == pytest.approx(1 / 3)


def test_export_and_read_back_with_face_cropping(tmp_path):
    photos = render_framed_faces(classes=CLASSES, n_subjects=2, per_class=1, seed=1)
    written = export_photo_folder(tmp_path, photos=photos, quality=90)
    assert written == 42
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(CLASSES)
    assert (tmp_path / "happy" / "s0000_000.jpg").is_file()
    with open(tmp_path / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 42 and rows[0].keys() == {"path", "label", "subject", "top", "left", "bottom", "right"}
    first = rows[0]
    assert (tmp_path / first["path"]).is_file() and first["subject"] in ("s0000", "s0001")
    assert [int(first[k]) for k in ("top", "left", "bottom", "right")] == photos.boxes[0].tolist()

    ds = read_image_folder(tmp_path, image_size=48, crop_faces=PHOTO_CROPPER, subject_pattern=r"^(s\d+)_")
    assert len(ds) == 42 and ds.images.shape == (42, 48, 48, 3)
    assert set(ds.classes) == set(CLASSES)
    assert sorted(set(ds.subjects)) == ["s0000", "s0001"]
    assert ds.counts() == {c: 2 for c in ds.classes}


def test_export_refuses_a_folder_that_is_not_empty(tmp_path):
    photos = render_framed_faces(classes=["happy", "sad"], n_subjects=1, per_class=2, seed=0)
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "old.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"is not empty; pass an empty or new folder, or overwrite=True"):
        export_photo_folder(tmp_path, photos=photos)
    assert export_photo_folder(tmp_path, photos=photos, overwrite=True) == 4
    assert sorted(p.name for p in (tmp_path / "sad").iterdir()) == ["s0000_000.jpg", "s0000_001.jpg"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"face_size": 128, "frame_size": (120, 320)}, r"larger than the frame.*frame_size of at least \(148, 148\)"),
        ({"face_size": 96, "frame_size": 100}, r"use a frame_size of at least \(111, 111\) or a smaller face_size"),
        ({"frame_size": (240,)}, r"frame_size must be an int or \(height, width\)"),
        ({"frame_size": (20, 320)}, r"frame_size must be whole pixels >= 32"),
        ({"face_size": 8}, r"face_size must be an int in \[32, 512\]"),
        ({"scale_jitter": 0.7}, r"scale_jitter must lie in \[0, 0.5\)"),
        ({"shading": -1.0}, r"shading must lie in \[0, 2\]"),
        ({"n_subjects": 0}, r"n_subjects must be a positive int"),
        ({"classes": ["sadly happy"]}, r"sadly happy"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_framed_faces(**{"classes": "basic", "n_subjects": 1, **kwargs})


def test_bad_export_arguments(tmp_path):
    photos = render_framed_faces(classes=["happy"], n_subjects=1, per_class=1, seed=0)
    with pytest.raises(ValueError, match=r"quality must be an int JPEG quality in \[1, 95\]"):
        export_photo_folder(tmp_path / "a", photos=photos, quality=100)
    with pytest.raises(ValueError, match=r"photos must be a FramedFaces from render_framed_faces"):
        export_photo_folder(tmp_path / "b", photos=photos.images)  # type: ignore[arg-type]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_default_cropper_is_weaker_on_these_frames(photos):
    """What ``crop_faces=True`` would give: documented, so users pick PHOTO_CROPPER."""
    default = FaceCropper()
    subset = photos.images[::5]
    rate = np.mean([bool(default.detect(im)) for im in subset])
    assert rate < np.mean([bool(PHOTO_CROPPER.detect(im)) for im in subset])
