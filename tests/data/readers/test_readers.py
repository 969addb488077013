"""Readers for class folders, CSV manifests, RAF-DB and FER2013, on tiny real files."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cfer import taxonomy
from cfer.data import (
    DatasetError,
    DatasetNotFoundError,
    FaceCropper,
    FaceDataset,
    SkippedItemsWarning,
    read_csv_manifest,
    read_fer2013,
    read_image_folder,
    read_rafdb,
)


# ----------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------
@pytest.fixture
def image_folder(tmp_path, image_writer):
    """root/<class>/<subject>_<n>.<ext>: 3 classes in odd spellings, PNG and JPEG, mixed sizes/modes."""
    root = tmp_path / "faces"
    image_writer(root / "Happily_Surprised" / "s01_1.jpg", size=(30, 40))
    image_writer(root / "Happily_Surprised" / "s02_1.png", size=(64, 64), mode="L")
    image_writer(root / "happiness" / "s01_2.png", size=(20, 20), mode="RGBA")
    image_writer(root / "happiness" / "s02_2.jpg", size=(50, 30))
    image_writer(root / "happiness" / "s03_1.jpeg", size=(16, 16))
    image_writer(root / "SAD" / "s03_2.PNG", size=(10, 12), value=30)
    (root / "SAD" / "notes.txt").write_text("ignored: not an image extension")
    (root / "README.md").write_text("a file next to the class folders is ignored")
    return root


def _truncated_jpeg(path: Path, image_writer) -> Path:
    image_writer(path, size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _catch_one_warning(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    skipped = [w for w in caught if issubclass(w.category, SkippedItemsWarning)]
    assert len(skipped) == 1, [str(w.message) for w in caught]
    return result, str(skipped[0].message)


# ----------------------------------------------------------------------------------------
# read_image_folder
# ----------------------------------------------------------------------------------------
def test_image_folder_reads_labels_subjects_and_shapes(image_folder):
    ds = read_image_folder(image_folder, image_size=32, subject_pattern=r"^(s\d+)_")
    assert isinstance(ds, FaceDataset)
    assert len(ds) == 6
    assert ds.classes == ("happy", "sad", "happily_surprised")  # ALL_CLASSES order
    assert ds.counts() == {"happy": 3, "sad": 1, "happily_surprised": 2}
    assert ds.images.shape == (6, 32, 32, 3) and ds.images.dtype == np.uint8
    by_name = {Path(p).name: (c, s) for p, c, s in zip(ds.paths, ds.class_names, ds.subjects)}
    assert by_name == {
        "s01_1.jpg": ("happily_surprised", "s01"),
        "s02_1.png": ("happily_surprised", "s02"),
        "s01_2.png": ("happy", "s01"),
        "s02_2.jpg": ("happy", "s02"),
        "s03_1.jpeg": ("happy", "s03"),
        "s03_2.PNG": ("sad", "s03"),
    }
    assert ds.splits is None
    # the dark "sad" image stays dark after resizing
    sad = ds.images[ds.class_names.index("sad")]
    assert sad.mean() < 60


def test_image_folder_grey_and_rectangular_size(image_folder):
    ds = read_image_folder(image_folder, image_size=(24, 16), channels=1)
    assert ds.images.shape == (6, 24, 16, 1)
    assert ds.subjects is None  # no subject_pattern given
    x, y = ds[0]
    assert tuple(x.shape) == (1, 24, 16) and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0


def test_image_folder_extensions_filter(image_folder):
    ds = read_image_folder(image_folder, extensions=("png",))
    assert sorted(Path(p).name for p in ds.paths) == ["s01_2.png", "s02_1.png", "s03_2.PNG"]


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"image folder .*nowhere does not exist; pass the folder"):
        read_image_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        read_image_folder(tmp_path / "nowhere")


def test_image_folder_without_class_folders(tmp_path, image_writer):
    image_writer(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match=r"has no class folders; put the images in one sub-folder per class"):
        read_image_folder(tmp_path)


def test_image_folder_empty_class_folder(image_folder):
    (image_folder / "fear").mkdir()
    with pytest.raises(DatasetError, match=r"class folder .*fear: no images with extensions .*add images, delete the folder"):
        read_image_folder(image_folder)


def test_image_folder_unknown_class_gives_closest_names(image_folder, image_writer):
    image_writer(image_folder / "hapy" / "s09_1.png")
    with pytest.raises(DatasetError, match=r"class folder .*hapy: unknown expression 'hapy'; closest known names: \['happy'") as info:
        read_image_folder(image_folder)
    assert "rename the folder" in str(info.value) and "skip_invalid=True" in str(info.value)


def test_image_folder_split_folders_get_a_hint(tmp_path, image_writer):
    image_writer(tmp_path / "train" / "happy" / "a.png")
    with pytest.raises(DatasetError, match=r"looks like a split folder: read each split folder on its own"):
        read_image_folder(tmp_path)


def test_image_folder_same_class_twice(image_folder, image_writer):
    image_writer(image_folder / "happy" / "s05_1.png")
    with pytest.raises(DatasetError, match=r"class folders .*happiness and .*happy are both class 'happy'; merge them"):
        read_image_folder(image_folder)


def test_image_folder_truncated_jpeg(image_folder, image_writer):
    _truncated_jpeg(image_folder / "SAD" / "s04_1.jpg", image_writer)
    with pytest.raises(DatasetError, match=r"s04_1\.jpg: cannot decode image .*replace or delete the file"):
        read_image_folder(image_folder)


def test_image_folder_text_file_named_png(image_folder):
    (image_folder / "SAD" / "s04_2.png").write_text("this is not a PNG")
    with pytest.raises(DatasetError, match=r"s04_2\.png: cannot decode image \(UnidentifiedImageError"):
        read_image_folder(image_folder)


def test_image_folder_subject_pattern_mismatch(image_folder, image_writer):
    image_writer(image_folder / "SAD" / "anonymous.png")
    with pytest.raises(DatasetError, match=r"anonymous\.png: file name does not match subject_pattern .*rename the file or fix the pattern"):
        read_image_folder(image_folder, subject_pattern=r"^(s\d+)_")


@pytest.mark.parametrize("pattern,match", [(r"^s\d+_", "has 0 groups"), (r"^(s)(\d+)_", "has 2 groups"), ("(", "not a valid regular")])
def test_image_folder_bad_subject_pattern(image_folder, pattern, match):
    with pytest.raises(ValueError, match=match):
        read_image_folder(image_folder, subject_pattern=pattern)


@pytest.mark.parametrize("kwargs,match", [({"image_size": 0}, "must be positive"), ({"image_size": (3, 4, 5)}, "int or an"), ({"channels": 2}, "channels must be 1")])
def test_image_folder_checks_arguments(image_folder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_image_folder(image_folder, **kwargs)


def test_image_folder_skip_invalid_counts_every_reason_in_one_warning(image_folder, image_writer):
    _truncated_jpeg(image_folder / "SAD" / "s04_1.jpg", image_writer)
    (image_folder / "SAD" / "s04_2.png").write_text("not an image")
    image_writer(image_folder / "sadly happy" / "s05_1.png")
    image_writer(image_folder / "SAD" / "nobody.png")
    ds, message = _catch_one_warning(
        read_image_folder, image_folder, skip_invalid=True, subject_pattern=r"^(s\d+)_"
    )
    assert len(ds) == 6
    assert re.search(r"skipped 4 of 10 items: 2 corrupt image, 1 (unknown label|no subject id), 1 (unknown label|no subject id); first: ", message), message
    assert "pass skip_invalid=True" not in message  # the fix hint is for errors, not for this warning


def test_image_folder_everything_invalid_raises(tmp_path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "a.png").write_text("no")
    with pytest.raises(DatasetError, match=r"no usable images \(skipped 1 of 1: 1 corrupt image; first: .*a\.png"):
        read_image_folder(tmp_path, skip_invalid=True)


def test_image_folder_crop_faces(tmp_path, face_drawer):
    (tmp_path / "happy").mkdir()
    Image.fromarray(face_drawer(rgb=True)).save(tmp_path / "happy" / "s1_face.png")
    ds = read_image_folder(tmp_path, crop_faces=True, image_size=40)
    assert ds.images.shape == (1, 40, 40, 3)
    # a tight crop is mostly bright skin, the uncropped frame mostly dark background
    tight = read_image_folder(tmp_path, crop_faces=FaceCropper(margin=0.0), image_size=40)
    full = read_image_folder(tmp_path, image_size=40)
    assert full.images.mean() < ds.images.mean() < tight.images.mean()
    assert tight.images.mean() > full.images.mean() + 30

    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(tmp_path / "happy" / "s2_wall.png")
    with pytest.raises(DatasetError, match=r"s2_wall\.png: no face found by the Haar cascade; crop this image by hand"):
        read_image_folder(tmp_path, crop_faces=True)
    ds, message = _catch_one_warning(read_image_folder, tmp_path, crop_faces=FaceCropper(margin=0.1), skip_invalid=True)
    assert len(ds) == 1 and "skipped 1 of 2 items: 1 no face found" in message


# ----------------------------------------------------------------------------------------
# read_csv_manifest
# ----------------------------------------------------------------------------------------
def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def manifest(tmp_path, image_writer):
    imgs = tmp_path / "data" / "imgs"
    for name in ("a.png", "b.jpg", "c.png", "d.jpg"):
        image_writer(imgs / name, size=(12, 10))
    absolute = image_writer(tmp_path / "elsewhere" / "e.png", size=(8, 8))
    return _write_csv(
        tmp_path / "data" / "manifest.csv",
        ["Path", "label", "subject", "split", "comment"],
        [
            ["imgs/a.png", "Happiness", "p1", "train", "x"],
            ["imgs/b.jpg", "sadly-angry", "p1", "train", ""],
            ["imgs/c.png", "fear", "p2", "test", ""],
            ["imgs/d.jpg", "Awe", "p3", "val", ""],
            [str(absolute), "neutral", "p3", "val", ""],
        ],
    )


def test_manifest_reads_columns_relative_to_csv(manifest):
    ds = read_csv_manifest(manifest, image_size=(10, 12), channels=1)
    assert len(ds) == 5
    assert ds.classes == ("neutral", "happy", "fearful", "sadly_angry", "awed")
    assert ds.class_names == ["happy", "sadly_angry", "fearful", "awed", "neutral"]
    assert ds.subjects.tolist() == ["p1", "p1", "p2", "p3", "p3"]
    assert ds.splits.tolist() == ["train", "train", "test", "val", "val"]
    assert ds.images.shape == (5, 10, 12, 1)
    assert Path(ds.paths[0]) == manifest.parent / "imgs" / "a.png"


def test_manifest_root_override_and_optional_columns(tmp_path, image_writer):
    image_writer(tmp_path / "pics" / "x.png")
    csv_path = _write_csv(tmp_path / "m.csv", ["path", "label"], [["x.png", "HAPPY"]])
    ds = read_csv_manifest(csv_path, root=tmp_path / "pics")
    assert len(ds) == 1 and ds.subjects is None and ds.splits is None and ds.classes == ("happy",)
    with pytest.raises(DatasetNotFoundError, match=r"line 2: image .*x\.png does not exist; fix the path \(relative paths resolve against"):
        read_csv_manifest(csv_path)


def test_manifest_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"CSV manifest .*nope\.csv does not exist"):
        read_csv_manifest(tmp_path / "nope.csv")


def test_manifest_missing_column_names_found_columns(tmp_path):
    csv_path = _write_csv(tmp_path / "m.csv", ["path", "emotion"], [["a.png", "happy"]])
    with pytest.raises(DatasetError, match=r"m\.csv: no 'label' column \(columns found: \['path', 'emotion'\]\); the header must name"):
        read_csv_manifest(csv_path)


def test_manifest_empty_file_and_header_only(tmp_path):
    (tmp_path / "m.csv").write_text("")
    with pytest.raises(DatasetError, match=r"m\.csv is empty"):
        read_csv_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,label\n")
    with pytest.raises(DatasetError, match=r"m\.csv\): found no items to read"):
        read_csv_manifest(tmp_path / "m.csv")


def test_manifest_duplicate_path_names_both_lines(manifest):
    with open(manifest, "a", newline="") as f:
        csv.writer(f).writerow(["imgs/./b.jpg", "sad", "p1", "train", ""])
    with pytest.raises(DatasetError, match=r"manifest\.csv line 7: path 'imgs/\./b\.jpg' is already listed on line 3 \(lines 3 and 7\); list each image once"):
        read_csv_manifest(manifest)


def test_manifest_unknown_label(manifest):
    with open(manifest, "a", newline="") as f:
        csv.writer(f).writerow(["imgs/a.png", "sadly happy", "p9", "train", ""])
    with pytest.raises(DatasetError, match=r"line 7: unknown expression 'sadly happy'; closest known names: .*use a class name from cfer\.taxonomy\.ALL_CLASSES"):
        read_csv_manifest(manifest)


def test_manifest_missing_image(manifest):
    with open(manifest, "a", newline="") as f:
        csv.writer(f).writerow(["imgs/zzz.png", "happy", "p9", "train", ""])
    with pytest.raises(DatasetNotFoundError, match=r"manifest\.csv line 7: image .*zzz\.png does not exist; fix the path"):
        read_csv_manifest(manifest)


def test_manifest_empty_cell(tmp_path, image_writer):
    image_writer(tmp_path / "a.png")
    csv_path = _write_csv(tmp_path / "m.csv", ["path", "label", "subject"], [["a.png", "happy", ""]])
    with pytest.raises(DatasetError, match=r"m\.csv line 2: empty 'subject' value; fill in the 'subject' column or remove the row"):
        read_csv_manifest(csv_path)


def test_manifest_corrupt_image(manifest):
    (manifest.parent / "imgs" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetError, match=r"c\.png \(.*manifest\.csv line 4\): cannot decode image"):
        read_csv_manifest(manifest)


def test_manifest_skip_invalid(manifest):
    with open(manifest, "a", newline="") as f:
        w = csv.writer(f)
        w.writerow(["imgs/a.png", "happy", "p1", "train", ""])  # duplicate
        w.writerow(["imgs/zzz.png", "happy", "p9", "train", ""])  # missing
        w.writerow(["imgs/c.png", "joyfully", "p9", "train", ""])  # unknown label (checked before duplicate)
    ds, message = _catch_one_warning(read_csv_manifest, manifest, skip_invalid=True)
    assert len(ds) == 5
    assert "skipped 3 of 8 items:" in message
    for part in ("1 duplicate path", "1 missing image", "1 unknown label"):
        assert part in message
    assert "first: " in message and "line 7" in message


# ----------------------------------------------------------------------------------------
# read_rafdb
# ----------------------------------------------------------------------------------------
def _rafdb(root: Path, rows: list[tuple[str, int]], image_writer, *, original: bool = True) -> Path:
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{n} {i}\n" for n, i in rows))
    for name, _ in rows:
        stem = Path(name).stem
        image_writer(root / "Image" / "aligned" / f"{stem}_aligned.jpg", size=(100, 100))
        if original:
            image_writer(root / "Image" / "original" / name, size=(160, 120))
    return root


@pytest.fixture
def rafdb_basic(tmp_path, image_writer):
    rows = [("train_00001.jpg", 5), ("train_00002.jpg", 4), ("train_00003.jpg", 7), ("test_0001.jpg", 1), ("test_0002.jpg", 4)]
    return _rafdb(tmp_path / "basic", rows, image_writer)


@pytest.fixture
def rafdb_compound(tmp_path, image_writer):
    rows = [("train_0001.jpg", 1), ("train_0002.jpg", 11), ("test_0001.jpg", 9)]
    return _rafdb(tmp_path / "compound", rows, image_writer, original=False)


def test_rafdb_basic(rafdb_basic):
    ds = read_rafdb(rafdb_basic, image_size=32)
    assert len(ds) == 5
    assert ds.class_names == ["sad", "happy", "neutral", "surprised", "happy"]
    assert ds.classes == ("neutral", "happy", "sad", "surprised")
    assert ds.splits.tolist() == ["train", "train", "train", "test", "test"]
    assert ds.subjects.tolist() == ["train_00001", "train_00002", "train_00003", "test_0001", "test_0002"]
    assert ds.paths[0].endswith("Image/aligned/train_00001_aligned.jpg")
    assert ds.images.shape == (5, 32, 32, 3)


def test_rafdb_partition_and_original(rafdb_basic):
    test = read_rafdb(rafdb_basic, partition="test", aligned=False, channels=1, image_size=(20, 30))
    assert len(test) == 2 and set(test.splits) == {"test"}
    assert test.paths[0].endswith("Image/original/test_0001.jpg")
    assert test.images.shape == (2, 20, 30, 1)


def test_rafdb_compound(rafdb_compound):
    ds = read_rafdb(rafdb_compound, subset="compound")
    assert ds.class_names == ["happily_surprised", "disgustedly_surprised", "angrily_surprised"]
    assert all(taxonomy.is_compound(c) for c in ds.classes)
    assert ds.splits.tolist() == ["train", "train", "test"]
    with pytest.raises(DatasetError, match=r"line 2: unknown RAF-DB basic label id 11; known ids: 1=surprised.*pass subset='compound'"):
        read_rafdb(rafdb_compound)  # wrong subset
    with pytest.raises(DatasetError, match=r"RAF-DB image folder .*original does not exist.*aligned=True"):
        read_rafdb(rafdb_compound, subset="compound", aligned=False)


def test_rafdb_missing_label_list(tmp_path):
    (tmp_path / "Image").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"RAF-DB label list .*EmoLabel/list_patition_label\.txt does not exist; root must be the RAF-DB folder"):
        read_rafdb(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"RAF-DB folder .*missing does not exist"):
        read_rafdb(tmp_path / "missing")


def test_rafdb_missing_image_and_malformed_line(rafdb_basic):
    (rafdb_basic / "Image" / "aligned" / "train_00002_aligned.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"list_patition_label\.txt line 2: image .*train_00002_aligned\.jpg does not exist; unpack the full RAF-DB Image archive or pass aligned=False"):
        read_rafdb(rafdb_basic)
    with open(rafdb_basic / "EmoLabel" / "list_patition_label.txt", "a") as f:
        f.write("val_0001.jpg 3\ntrain_00009.jpg\n")
    ds, message = _catch_one_warning(read_rafdb, rafdb_basic, skip_invalid=True)
    assert len(ds) == 4
    assert "skipped 3 of 7 items: 2 malformed line, 1 missing image; first: " in message


def test_rafdb_bad_arguments(rafdb_basic):
    with pytest.raises(ValueError, match="subset must be 'basic' or 'compound'"):
        read_rafdb(rafdb_basic, subset="both")
    with pytest.raises(ValueError, match="partition must be None, 'train' or 'test'"):
        read_rafdb(rafdb_basic, partition="val")


# ----------------------------------------------------------------------------------------
# read_fer2013
# ----------------------------------------------------------------------------------------
def _fer_row(emotion: object, value: int, usage: str, n: int = 2304) -> list[object]:
    rng = np.random.default_rng(value)
    pixels = np.clip(value + rng.integers(-3, 4, n), 0, 255)
    return [emotion, " ".join(str(int(v)) for v in pixels), usage]


@pytest.fixture
def fer_csv(tmp_path):
    rows = [
        _fer_row(0, 10, "Training"),
        _fer_row(3, 200, "Training"),
        _fer_row(6, 100, "PublicTest"),
        _fer_row(5, 150, "PrivateTest"),
        _fer_row(3, 60, "PrivateTest"),
    ]
    return _write_csv(tmp_path / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)


def test_fer2013_reads_rows(fer_csv):
    ds = read_fer2013(fer_csv)
    assert len(ds) == 5
    assert ds.images.shape == (5, 48, 48, 1)
    assert ds.class_names == ["angry", "happy", "neutral", "surprised", "happy"]
    assert ds.classes == ("neutral", "happy", "angry", "surprised")
    assert ds.splits.tolist() == ["train", "train", "val", "test", "test"]
    assert ds.subjects.tolist() == ["0", "1", "2", "3", "4"]
    assert ds.paths is None
    # the pixels are the CSV's values, unchanged at 48x48
    assert abs(float(ds.images[1].mean()) - 200) < 1.5
    assert int(ds.images[0].max()) <= 13


def test_fer2013_usage_filter_size_and_channels(fer_csv):
    test = read_fer2013(fer_csv, usage="test", image_size=24, channels=3)
    assert len(test) == 2 and set(test.splits) == {"test"}
    assert test.images.shape == (2, 24, 24, 3)
    np.testing.assert_array_equal(test.images[..., 0], test.images[..., 2])  # grey repeated
    assert len(read_fer2013(fer_csv, usage="PublicTest")) == 1
    with pytest.raises(ValueError, match="usage must be one of 'train', 'val', 'test'"):
        read_fer2013(fer_csv, usage="holdout")


def test_fer2013_wrong_pixel_count(fer_csv):
    with open(fer_csv, "a", newline="") as f:
        csv.writer(f).writerow(_fer_row(2, 50, "Training", n=2300))
    with pytest.raises(DatasetError, match=r"fer2013\.csv line 7: 2300 pixel values, expected 2304 \(48x48\); fix or remove the row"):
        read_fer2013(fer_csv)


def test_fer2013_unknown_emotion_id(fer_csv):
    with open(fer_csv, "a", newline="") as f:
        csv.writer(f).writerow(_fer_row(7, 50, "Training"))
    with pytest.raises(DatasetError, match=r"line 7: unknown emotion id '7'; FER2013 ids are 0=angry, 1=disgusted.*fix the 'emotion' value"):
        read_fer2013(fer_csv)


def test_fer2013_missing_file_and_column(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"FER2013 CSV .*fer\.csv does not exist"):
        read_fer2013(tmp_path / "fer.csv")
    bad = _write_csv(tmp_path / "bad.csv", ["label", "pixels", "Usage"], [_fer_row(0, 1, "Training")])
    with pytest.raises(DatasetError, match=r"no 'emotion' column \(columns found: \['label', 'pixels', 'usage'\]\); FER2013's header"):
        read_fer2013(bad)


def test_fer2013_without_usage_column(tmp_path):
    path = _write_csv(tmp_path / "x.csv", ["emotion", "pixels"], [_fer_row(1, 9, "")[:2]])
    ds = read_fer2013(path)
    assert ds.splits is None and ds.class_names == ["disgusted"]
    with pytest.raises(DatasetError, match=r"no 'Usage' column .*pass usage=None"):
        read_fer2013(path, usage="train")


def test_fer2013_skip_invalid(fer_csv):
    with open(fer_csv, "a", newline="") as f:
        w = csv.writer(f)
        w.writerow(_fer_row(2, 50, "Training", n=10))
        w.writerow(_fer_row(9, 50, "Training"))
        w.writerow(_fer_row(2, 50, "Training")[:1] + ["1 " * 2303 + "300", "Training"])
        w.writerow(_fer_row(2, 50, "Holdout"))
    ds, message = _catch_one_warning(read_fer2013, fer_csv, skip_invalid=True)
    assert len(ds) == 5
    assert message.startswith(f"read_fer2013({fer_csv}): skipped 4 of 9 items: ")
    for part in ("1 wrong pixel count", "1 unknown emotion id", "1 bad pixel value", "1 unknown Usage"):
        assert part in message
    assert "first: " in message and "line 7" in message
