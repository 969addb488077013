"""Clip readers on tiny files: the CSV manifest, DFEW's two layouts, FileClipSource."""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cfer.data.readers import DatasetError, DatasetNotFoundError, SkippedItemsWarning
from cfer.data.video.decode import ClipError, ClipNotFoundError
from cfer.data.video.dfew import DFEW_LABELS, read_dfew
from cfer.data.video.files import FileClipSource
from cfer.data.video.layout import ClipLayout
from cfer.data.video.readers import read_clip_manifest

av = pytest.importorskip("av")

LAYOUT = ClipLayout(frames=4, image_size=16, channels=3, mel_bins=8, mel_steps=8, landmarks=4)


def write_mp4(path: Path, *, frames: int = 6, audio: bool = True) -> Path:
    """A tiny H.264 MP4 (moving square, 10 fps), with a 1 kHz AAC track when ``audio``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), "w")
    vs = container.add_stream("libx264", rate=10)
    vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
    astream = None
    if audio:
        astream = container.add_stream("aac", rate=16000)
        astream.layout = "mono"
    for i in range(frames):
        img = np.zeros((32, 32, 3), np.uint8)
        img[8:20, 2 + 2 * i:14 + 2 * i] = 255
        for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in vs.encode():
        container.mux(packet)
    if astream is not None:
        wav = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(1600 * frames) / 16000)).astype(np.float32)
        for start in range(0, len(wav), 1024):
            frame = av.AudioFrame.from_ndarray(wav[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in astream.encode(frame):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
    container.close()
    return path


def write_folder(folder: Path, *, frames: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        Image.fromarray(np.full((20, 20, 3), 15 * i, np.uint8)).save(folder / f"{i + 1}.jpg")
    return folder


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A folder with two videos (one silent), a frame folder, and bad clips."""
    root = tmp_path_factory.mktemp("clips")
    write_mp4(root / "s01" / "happy.mp4")
    write_mp4(root / "s02" / "awed.mp4", audio=False)
    write_folder(root / "s02" / "sad_frames")
    (root / "bad.mp4").write_bytes(b"\x00garbage" * 300)
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not a clip")
    return root


GOOD = [["path", "label", "subject", "split"],
        ["s01/happy.mp4", "Happiness", "s01", "train"],
        ["s02/awed.mp4", "awe", "s02", "Test"],
        ["s02/sad_frames", "sad", "s02", "training"]]


# -- manifest ------------------------------------------------------------------------
def test_manifest_reads_videos_and_frame_folders_lazily(clips, caplog):
    ds = read_clip_manifest(write_csv(clips / "m.csv", GOOD), layout=LAYOUT)
    assert len(ds) == 3 and ds.classes == ("happy", "sad", "awed")
    assert ds.class_names == ["happy", "awed", "sad"]
    assert ds.splits.tolist() == ["train", "test", "train"] and ds.subjects.tolist() == ["s01", "s02", "s02"]
    assert ds.paths == [str(clips / "s01/happy.mp4"), str(clips / "s02/awed.mp4"), str(clips / "s02/sad_frames")]
    assert ds.cache_info().misses == 0  # nothing decoded yet
    with caplog.at_level(logging.WARNING, logger="cfer.data.video.store"):
        flags = [bool(LAYOUT.unpack(ds[i][0][None]).has_audio) for i in range(3)]
    assert flags == [True, False, False] and ds.missing_audio == 2
    assert caplog.text.count("has no audio") == 1
    assert ds.skipped == {}
    assert ds.frames_at(2)[0].shape == (4, 16, 16, 3)


def test_manifest_bad_rows_raise_naming_the_line_and_the_fix(clips):
    cases = [
        (["missing.mp4", "happy"], DatasetNotFoundError, r"m.csv line 2: clip .*missing.mp4 does not exist; fix the path "
                                                         r"\(relative paths resolve against"),
        (["bad.mp4", "happy"], DatasetError, r"line 2: .*bad.mp4: cannot open the video .*replace or delete the clip"),
        (["notes.txt", "happy"], DatasetError, r"line 2: notes.txt: .txt extension is not a video extension"),
        (["empty", "happy"], DatasetError, r"line 2: frame folder .*empty holds no frame images"),
        (["s01/happy.mp4", "sadly happy"], DatasetError, r"line 2: unknown expression 'sadly happy'"),
        (["s01/happy.mp4", ""], DatasetError, r"line 2: empty 'label' value"),
    ]
    for row, cls, message in cases:
        with pytest.raises(cls, match=message):
            read_clip_manifest(write_csv(clips / "m.csv", [["path", "label"], row]), layout=LAYOUT)
    dup = [["path", "label"], ["s01/happy.mp4", "happy"], ["./s01/happy.mp4", "happy"]]
    with pytest.raises(DatasetError, match="line 3: path './s01/happy.mp4' is already listed on line 2"):
        read_clip_manifest(write_csv(clips / "m.csv", dup), layout=LAYOUT)
    with pytest.raises(DatasetError, match="no 'label' column"):
        read_clip_manifest(write_csv(clips / "m.csv", [["path"], ["a.mp4"]]), layout=LAYOUT)
    with pytest.raises(ValueError, match="layout must be a cfer.data.video.ClipLayout"):
        read_clip_manifest(clips / "m.csv", layout=None)


def test_manifest_skip_invalid_counts_and_check_files_off_defers_errors(clips):
    rows = GOOD[:2] + [["missing.mp4", "sad", "s03", "train"], ["bad.mp4", "sad", "s03", "train"],
                       ["s01/happy.mp4", "nope", "s01", "train"]]
    path = write_csv(clips / "m.csv", rows)
    with pytest.warns(SkippedItemsWarning, match=r"skipped 3 of 4 clips: .*first: .*missing.mp4"):
        ds = read_clip_manifest(path, layout=LAYOUT, skip_invalid=True)
    assert len(ds) == 1 and ds.skipped == {"missing clip": 1, "unreadable clip": 1, "unknown label": 1}
    lazy = read_clip_manifest(write_csv(clips / "m.csv", [["path", "label"], ["bad.mp4", "sad"]]), layout=LAYOUT,
                              check_files=False)
    with pytest.raises(ClipError, match="bad.mp4: cannot open the video"):
        lazy[0]
    with pytest.raises(DatasetError, match=r"no usable clips \(skipped 1 of 1"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_clip_manifest(write_csv(clips / "m.csv", [["path", "label"], ["missing.mp4", "sad"]]), layout=LAYOUT,
                           skip_invalid=True)


def test_manifest_root_option_and_short_clips(clips, tmp_path):
    csv_path = write_csv(tmp_path / "elsewhere.csv", [["path", "label"], ["s02/sad_frames", "sad"]])
    ds = read_clip_manifest(csv_path, root=clips, layout=ClipLayout(frames=8, image_size=16, mel_bins=8,
                                                                    mel_steps=8, landmarks=4))
    with pytest.raises(ClipError, match="has 5 frames, fewer than T=8; lower ClipLayout.frames or pass min_frames=5"):
        ds[0]
    ok = read_clip_manifest(csv_path, root=clips, min_frames=4, layout=ClipLayout(
        frames=8, image_size=16, mel_bins=8, mel_steps=8, landmarks=4))
    assert ok[0][0].shape[0] == 9


# -- DFEW ----------------------------------------------------------------------------
def dfew_official(root: Path) -> Path:
    """Five clips as DFEW ships them (frame folders 00001..), plus one as a video."""
    for k in range(1, 5):
        write_folder(root / "Clip" / "clip_224x224" / f"{k:05d}", frames=4 + k)
    write_mp4(root / "Clip" / "clip_224x224" / "00005.mp4")
    split = root / "EmoLabel_DataSplit"
    for fold, (train, test) in {1: ([1, 2, 3], [4, 5]), 2: ([4, 5, 1], [2, 3])}.items():
        labels = {1: 1, 2: 5, 3: 7, 4: 3, 5: 6}
        write_csv(split / "train(single-labeled)" / f"set_{fold}.csv",
                  [["video_name", "label"]] + [[str(v), str(labels[v])] for v in train])
        write_csv(split / "test(single-labeled)" / f"set_{fold}.csv",
                  [["video_name", "label"]] + [[str(v), str(labels[v])] for v in test])
    return root


def test_dfew_official_layout_labels_and_folds(tmp_path):
    root = dfew_official(tmp_path / "DFEW")
    ds = read_dfew(root, fold=1, layout=LAYOUT)
    assert len(ds) == 5 and ds.subjects is None
    assert ds.splits.tolist() == ["train"] * 3 + ["test"] * 2
    assert ds.class_names == ["happy", "surprised", "fearful", "neutral", "disgusted"]  # DFEW 1, 5, 7, 3, 6
    assert [Path(p).name for p in ds.paths] == ["00001", "00002", "00003", "00004", "00005.mp4"]
    assert ds.frames_at(0)[0].shape == (4, 16, 16, 3) and tuple(ds[4][0].shape) == LAYOUT.shape
    fold2 = read_dfew(root, fold=2, layout=LAYOUT)
    assert [Path(p).name for p, s in zip(fold2.paths, fold2.splits) if s == "test"] == ["00002", "00003"]
    assert len(fold2.select_split("train")) == 3
    assert DFEW_LABELS == ("happy", "sad", "neutral", "angry", "surprised", "disgusted", "fearful")


def test_dfew_simple_layout_and_other_clip_folders(tmp_path):
    root = tmp_path / "mini"
    write_folder(root / "clips" / "a1")
    write_mp4(root / "clips" / "a2.mp4", audio=False)
    write_csv(root / "annotations" / "set_3" / "train.csv", [["video_name", "label"], ["a1", "2"]])
    write_csv(root / "annotations" / "set_3" / "test.csv", [["video_name", "label"], ["a2", "4"]])
    ds = read_dfew(root, fold=3, layout=LAYOUT)
    assert ds.class_names == ["sad", "angry"] and ds.splits.tolist() == ["train", "test"]
    official = dfew_official(tmp_path / "DFEW")
    write_folder(official / "Clip" / "clip_224x224_16f" / "00001", frames=16)
    for name in ("train", "test"):
        write_csv(official / "EmoLabel_DataSplit" / f"{name}(single-labeled)" / "set_4.csv",
                  [["video_name", "label"], ["1" if name == "train" else "00001", "2"]])
    with pytest.raises(DatasetError, match=r"set_4.csv line 2: clip '00001' is already listed"):
        read_dfew(official, fold=4, layout=LAYOUT, clips="clip_224x224_16f")
    write_csv(official / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_4.csv", [["video_name", "label"]])
    ds16 = read_dfew(official, fold=4, layout=LAYOUT, clips="clip_224x224_16f")
    assert len(ds16) == 1 and ds16.source.load(0).frames.shape[0] == 16


def test_dfew_errors_name_the_fix(tmp_path):
    root = dfew_official(tmp_path / "DFEW")
    with pytest.raises(ValueError, match=r"fold must be one of DFEW's folds \[1, 2, 3, 4, 5\], got 6"):
        read_dfew(root, fold=6, layout=LAYOUT)
    with pytest.raises(DatasetNotFoundError, match="DFEW fold 3 split file .*set_3.csv does not exist"):
        read_dfew(root, fold=3, layout=LAYOUT)
    with pytest.raises(ClipNotFoundError, match="has neither EmoLabel_DataSplit/ .* nor annotations/"):
        read_dfew(tmp_path, fold=1, layout=LAYOUT)
    with pytest.raises(DatasetNotFoundError, match="DFEW clip folder .*clip_112 does not exist; pass clips="):
        read_dfew(root, fold=1, layout=LAYOUT, clips="clip_112")
    write_csv(root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv",
              [["video_name", "label"], ["4", "8"], ["99", "1"]])
    with pytest.raises(DatasetError, match=r"line 2: label '8' is not one of DFEW's 1..7 \(1 happy, 2 sad"):
        read_dfew(root, fold=1, layout=LAYOUT)
    with pytest.warns(SkippedItemsWarning, match="skipped 2 of 5 clips"):
        ds = read_dfew(root, fold=1, layout=LAYOUT, skip_invalid=True)
    assert len(ds) == 3 and ds.skipped == {"unknown label": 1, "missing clip": 1}


def test_file_clip_source(clips):
    src = FileClipSource([clips / "s01/happy.mp4", clips / "s02/sad_frames"], fps=12.5, max_frames=3)
    assert len(src) == 2 and "2 clips" in repr(src)
    a, b = src.load(0), src.load(1)
    assert a.frames.shape == (3, 32, 32, 3) and a.fps == pytest.approx(10.0) and a.sample_rate == 16000
    assert b.frames.shape == (3, 20, 20, 3) and b.fps == 12.5 and b.audio is None
    with pytest.raises(ValueError, match="not one path; wrap it in a list"):
        FileClipSource("a.mp4")
