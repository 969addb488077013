"""Readers on input a hostile user hands them (issue 15): wide bit depths, odd split
spellings, nested folders, unsupported files, huge sizes, Latin-1 files, bad and repeated
RAF-DB lines. Every case is a tiny real file written in tmp_path."""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cfer.data import (
    MAX_IMAGE_SIDE,
    DatasetError,
    IgnoredFilesWarning,
    SkippedItemsWarning,
    read_csv_manifest,
    read_dataset,
    read_fer2013,
    read_image_folder,
    read_rafdb,
)
from cfer.data.readers import common


def _gradient(h: int = 8, w: int = 64, top: float = 65535.0) -> np.ndarray:
    return np.tile(np.linspace(0.0, top, w), (h, 1))


# ----------------------------------------------------------------------------------------
# 1. images wider than 8 bits
# ----------------------------------------------------------------------------------------
def test_16bit_png_gradient_stays_a_gradient(tmp_path):
    raw = _gradient().round().astype(np.uint16)
    path = tmp_path / "happy" / "grad16.png"
    path.parent.mkdir()
    Image.fromarray(raw).save(path)
    with Image.open(path) as img:
        assert img.mode == "I;16"  # a real 16-bit PNG
    ds = read_image_folder(tmp_path, image_size=(8, 64), channels=1)
    out = ds.images[0, :, :, 0]
    np.testing.assert_array_equal(out, np.rint(raw / 257.0).astype(np.uint8))
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) > 50 and np.all(np.diff(out[0].astype(int)) >= 0)
    rgb = read_image_folder(tmp_path, image_size=(8, 64), channels=3).images[0]
    np.testing.assert_array_equal(rgb[..., 1], out)


@pytest.mark.parametrize("dtype,top,expect", [
    (np.uint16, 65535, lambda v: v / 257.0),        # 16-bit TIFF (I;16)
    (np.int32, 65535, lambda v: v / 257.0),         # 32-bit int TIFF (I) in the 16-bit range
    (np.float32, 1.0, lambda v: v * 255.0),         # float TIFF (F) in [0, 1]
    (np.float32, 200.0, lambda v: v),               # float TIFF (F) in [0, 255]
])
def test_wide_tiffs_are_scaled_to_8_bits(tmp_path, dtype, top, expect):
    raw = _gradient(top=top).astype(dtype)
    path = tmp_path / "sad" / "wide.tif"
    path.parent.mkdir()
    Image.fromarray(raw).save(path)
    out = read_image_folder(tmp_path, image_size=(8, 64), channels=1).images[0, :, :, 0].astype(int)
    want = np.rint(expect(raw.astype(np.float64)))
    assert np.abs(out - want).max() <= 1
    assert len(np.unique(out)) > 40


def test_out_of_range_values_are_min_max_scaled_with_a_logged_note(tmp_path, caplog):
    raw = _gradient(top=1.0).astype(np.float32) * 3000.0 - 1000.0  # -1000 .. 2000
    path = tmp_path / "sad" / "odd.tif"
    path.parent.mkdir()
    Image.fromarray(raw).save(path)
    with caplog.at_level(logging.WARNING, logger="cfer.data.readers.common"):
        out = read_image_folder(tmp_path, image_size=(8, 64), channels=1).images[0, :, :, 0]
    assert out.min() == 0 and out.max() == 255 and len(np.unique(out)) > 50
    assert "1 images had values outside the 8/16-bit range and were min-max scaled" in caplog.text
    assert "mode F values -1000..2000" in caplog.text


# ----------------------------------------------------------------------------------------
# 2a. split spellings in a manifest
# ----------------------------------------------------------------------------------------
def _manifest(tmp_path: Path, image_writer, splits: list[str]) -> Path:
    path = tmp_path / "m.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for k, split in enumerate(splits):
            image_writer(tmp_path / f"{k}.png", size=(8, 8))
            w.writerow([f"{k}.png", "happy", split])
    return path


def test_manifest_split_spellings_become_train_val_test(tmp_path, image_writer):
    spellings = ["Training", "train", "VALIDATION", "valid", "Dev", "val", "testing", "TEST"]
    ds = read_csv_manifest(_manifest(tmp_path, image_writer, spellings), image_size=8)
    assert ds.splits.tolist() == ["train", "train", "val", "val", "val", "val", "test", "test"]
    assert len(ds.select_split("val")) == 4


def test_manifest_unknown_split_names_the_line_and_the_spellings(tmp_path, image_writer):
    path = _manifest(tmp_path, image_writer, ["train", "holdout", "test"])
    with pytest.raises(DatasetError, match=r"m\.csv line 3: unknown split 'holdout'; accepted spellings \(any case\): "
                                           r"train: train/training; val: val/valid/validation/dev; test: test/testing; "
                                           r"use one of them in the 'split' column"):
        read_csv_manifest(path, image_size=8)
    with pytest.warns(SkippedItemsWarning, match=r"skipped 1 of 3 items: 1 unknown split"):
        ds = read_csv_manifest(path, image_size=8, skip_invalid=True)
    assert ds.splits.tolist() == ["train", "test"] and ds.skipped == {"unknown split": 1}


# ----------------------------------------------------------------------------------------
# 2c. nested folders and unsupported formats
# ----------------------------------------------------------------------------------------
def test_image_folder_reads_nested_sub_folders(tmp_path, image_writer):
    image_writer(tmp_path / "happy" / "s01_a.png")
    image_writer(tmp_path / "happy" / "session1" / "s02_a.png")
    image_writer(tmp_path / "happy" / "session1" / "deeper" / "s03_a.jpg")
    image_writer(tmp_path / "happy" / "session1" / ".s09_hidden.png")
    image_writer(tmp_path / "happy" / ".thumbs" / "s08_a.png")
    image_writer(tmp_path / "sad" / "day2" / "s01_b.png")
    ds = read_image_folder(tmp_path, image_size=8, subject_pattern=r"^(s\d+)_")
    got = sorted((Path(p).relative_to(tmp_path).as_posix(), c, s)
                 for p, c, s in zip(ds.paths, ds.class_names, ds.subjects))
    assert got == [("happy/s01_a.png", "happy", "s01"), ("happy/session1/deeper/s03_a.jpg", "happy", "s03"),
                   ("happy/session1/s02_a.png", "happy", "s02"), ("sad/day2/s01_b.png", "sad", "s01")]
    assert ds.skipped == {}


def test_image_folder_warns_once_with_counts_per_unsupported_extension(tmp_path, image_writer):
    image_writer(tmp_path / "happy" / "a.png")
    image_writer(tmp_path / "happy" / "b.gif")  # read: Pillow decodes GIF
    for name in ("happy/c.heic", "sad/d.HEIC", "sad/sub/e.xyz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not read")
    image_writer(tmp_path / "sad" / "f.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = read_image_folder(tmp_path, image_size=8)
    ignored = [w for w in caught if issubclass(w.category, IgnoredFilesWarning)]
    assert [str(w.message) for w in ignored] == [f"read_image_folder({tmp_path}): ignored 3 files with unsupported extensions "
                       "(.heic: 2, .xyz: 1); if they are images, convert them to PNG/JPEG or pass extensions=..."]
    assert ignored[0].filename == __file__  # points at the caller
    assert sorted(Path(p).name for p in ds.paths) == ["a.png", "b.gif", "f.png"]
    assert ds.skipped == {"unsupported extension": 3}


# ----------------------------------------------------------------------------------------
# 3b. the image-size cap and the memory estimate
# ----------------------------------------------------------------------------------------
def test_image_size_above_the_cap_is_refused(tmp_path, image_writer, monkeypatch):
    image_writer(tmp_path / "happy" / "a.png")
    assert MAX_IMAGE_SIDE == 1024
    for size in (5000, (64, 1025)):
        with pytest.raises(ValueError, match=r"image_size .* is above the limit of 1024 pixels a side; pass "
                                             r"image_size <= 1024 \(faces are usually trained at 48-224\)"):
            read_image_folder(tmp_path, image_size=size)
    monkeypatch.setattr(common, "MAX_IMAGE_SIDE", 16)
    assert read_image_folder(tmp_path, image_size=16).image_size == (16, 16)
    with pytest.raises(ValueError, match="above the limit of 16 pixels"):
        read_dataset(tmp_path, format="imagefolder", image_size=17)


def test_decoded_size_is_estimated_before_decoding(tmp_path, image_writer, monkeypatch):
    for k in range(4):
        image_writer(tmp_path / "happy" / f"{k}.png")
    monkeypatch.setattr(common, "MAX_DECODED_BYTES", 4 * 32 * 32 * 3 - 1)

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the read is refused")

    monkeypatch.setattr(common, "_decode", no_decoding)
    with pytest.raises(DatasetError, match=r"read_image_folder\(.*\): 4 images of 32x32x3 would take 0\.0 GiB of "
                                           r"memory once decoded, above the limit of 0\.0 GiB; pass a smaller "
                                           r"image_size"):
        read_image_folder(tmp_path, image_size=32)
    monkeypatch.undo()
    monkeypatch.setattr(common, "MAX_DECODED_BYTES", 4 * 32 * 32 * 1)
    assert len(read_image_folder(tmp_path, image_size=32, channels=1)) == 4  # exactly at the limit


# ----------------------------------------------------------------------------------------
# 5. messages that name the file and line
# ----------------------------------------------------------------------------------------
def test_latin1_manifest_names_the_line_and_iconv(tmp_path, image_writer):
    image_writer(tmp_path / "a.png")
    (tmp_path / "m.csv").write_bytes(b"path,label\na.png,happy\ncaf\xe9.png,sad\n")
    with pytest.raises(DatasetError, match=r"m\.csv line 3: not UTF-8 text \(byte 0xe9 at column 4, b'caf\\xe9'\); "
                                           r"save the file as UTF-8, e.g\. iconv -f latin1 -t utf-8 m\.csv"):
        read_csv_manifest(tmp_path / "m.csv")
    (tmp_path / "fer.csv").write_bytes(b"emotion,pixels,Usage\n3,1 2,Training\xff\n")
    with pytest.raises(DatasetError, match=r"fer\.csv line 2: not UTF-8 text \(byte 0xff at column 15"):
        read_fer2013(tmp_path / "fer.csv")


def _rafdb(root: Path, lines: list[str], image_writer) -> Path:
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{t}\n" for t in lines))
    for t in lines:
        stem = Path(t.split()[0]).stem
        image_writer(root / "Image" / "aligned" / f"{stem}_aligned.jpg", size=(16, 16))
    return root


_LINES = ["train_00001.jpg 5", "train_00002.jpg 4", "test_0001.jpg 1"]


def test_rafdb_non_numeric_label_is_a_reported_problem(tmp_path, image_writer):
    root = _rafdb(tmp_path, [*_LINES, "train_00009.jpg --5", "train_00010.jpg ５"], image_writer)
    with pytest.raises(DatasetError, match=r"list_patition_label\.txt line 4: expected '<file name> <label id>' with a "
                                           r"whole-number id, got 'train_00009\.jpg --5'; fix or remove the line"):
        read_rafdb(root, image_size=8)
    with pytest.warns(SkippedItemsWarning, match="skipped 2 of 5 items: 2 malformed line"):
        ds = read_rafdb(root, image_size=8, skip_invalid=True)
    assert len(ds) == 3 and ds.skipped == {"malformed line": 2}


def test_rafdb_latin1_label_list(tmp_path, image_writer):
    root = _rafdb(tmp_path, _LINES, image_writer)
    (root / "EmoLabel" / "list_patition_label.txt").write_bytes(b"train_00001.jpg 5\ntrain_\xe9.jpg 4\n")
    with pytest.raises(DatasetError, match=r"list_patition_label\.txt line 2: not UTF-8 text \(byte 0xe9 at column 7"):
        read_rafdb(root)


def test_rafdb_repeated_line_with_the_same_label_is_read_once(tmp_path, image_writer, caplog):
    root = _rafdb(tmp_path, [*_LINES, "train_00002.jpg 4"], image_writer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedItemsWarning)  # a repeat is not a skipped bad item
        with caplog.at_level(logging.WARNING, logger="cfer.data.readers.rafdb"):
            ds = read_rafdb(root, image_size=8)
    assert ds.subjects.tolist() == ["train_00001", "train_00002", "test_0001"]
    assert ds.skipped == {"duplicate entry": 1}
    assert "lists 1 image(s) again with the same label; each is read once (first: line 4 repeats line 2" in caplog.text


def test_rafdb_image_listed_with_two_labels(tmp_path, image_writer):
    root = _rafdb(tmp_path, [*_LINES, "train_00001.jpg 3"], image_writer)
    with pytest.raises(DatasetError, match=r"line 1: 'train_00001\.jpg' is listed with different labels: line 1 "
                                           r"\(label 5\), line 4 \(label 3\); keep the line with the right label"):
        read_rafdb(root)
    with pytest.warns(SkippedItemsWarning, match="skipped 2 of 4 items: 2 conflicting labels"):
        ds = read_rafdb(root, image_size=8, skip_invalid=True)
    assert ds.subjects.tolist() == ["train_00002", "test_0001"] and ds.skipped == {"conflicting labels": 2}


@pytest.mark.parametrize("emotion", ["²", "-1", "3.0"])
def test_fer2013_emotion_that_is_no_plain_number(tmp_path, emotion):
    path = tmp_path / "fer.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["emotion", "pixels", "Usage"], [emotion, " ".join(["9"] * 2304), "Training"],
                                 ["3", " ".join(["9"] * 2304), "Training"]])
    with pytest.raises(DatasetError, match=rf"fer\.csv line 2: unknown emotion id '{emotion}'; FER2013 ids are"):
        read_fer2013(path)
    with pytest.warns(SkippedItemsWarning):
        ds = read_fer2013(path, skip_invalid=True)
    assert len(ds) == 1 and ds.skipped == {"unknown emotion id": 1}
