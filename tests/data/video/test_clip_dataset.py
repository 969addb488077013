"""ClipDataset on an in-memory source: packing, sampling, the byte-bounded cache, subsets,
missing audio, landmarks, face crops and the FaceDataset conveniences."""

from __future__ import annotations

import logging
import pickle
from collections import Counter

import numpy as np
import pytest
import torch

from cfer.data.faces import FaceCropper
from cfer.data.video.cache import CacheInfo
from cfer.data.video.dataset import ClipDataset
from cfer.data.video.decode import ClipError
from cfer.data.video.layout import ClipLayout, RawClip
from cfer.data.video.sampling import random_crop_indices, uniform_indices

LAYOUT = ClipLayout(frames=4, image_size=16, channels=3, mel_bins=8, mel_steps=8, landmarks=4)
PREPARED_BYTES = 12 * 16 * 16 * 3 + 12 * 4 * 2 * 4  # frames + tracks of one 12-frame clip, no audio


class Source:
    """``n`` clips of ``frames`` constant frames; frame ``j`` of clip ``i`` has value
    ``4 * j + i`` so a test can tell which frames were sampled. Counts its loads."""

    def __init__(self, n: int = 6, *, frames: int = 12, audio: bool | str = True, landmarks: int | None = None,
                 regions: bool = False, size: int = 24) -> None:
        self.n, self.frames, self.audio, self.landmarks, self.regions, self.size = (
            n, frames, audio, landmarks, regions, size)
        self.loads: Counter[int] = Counter()

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> RawClip:
        self.loads[index] += 1
        n, s = self.frames, self.size
        frames = np.stack([np.full((s, s, 3), 4 * j + index, np.uint8) for j in range(n)])
        with_audio = self.audio is True or (self.audio == "even" and index % 2 == 0)
        t = np.arange(int(16000 * n / 10)) / 16000
        audio = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32) if with_audio else None
        marks = None
        if self.landmarks:
            marks = np.tile(np.linspace(-0.5, 0.5, n, dtype=np.float32)[:, None, None], (1, self.landmarks, 2))
        regions = np.stack([np.eye(s, dtype=np.uint8) * (j + 1) for j in range(n)]) if self.regions else None
        return RawClip(frames=frames, fps=10.0, audio=audio, sample_rate=16000 if with_audio else None,
                       landmarks=marks, regions=regions)


def make(source: Source | None = None, **kwargs) -> ClipDataset:
    source = source or Source()
    n = len(source)
    defaults = dict(source=source, labels=[i % 2 for i in range(n)], classes=["happy", "Sadly Angry"],
                    layout=LAYOUT, subjects=[f"s{i // 2}" for i in range(n)],
                    splits=["train", "train", "test"] * (n // 3) + ["train"] * (n % 3),
                    paths=[f"clip{i}.mp4" for i in range(n)])
    defaults.update(kwargs)
    return ClipDataset(**defaults)


def frame_ids(frames: np.ndarray, clip: int) -> list[int]:
    """Which source frames a (T, S, S, C) uint8 array holds."""
    return [(int(f[0, 0, 0]) - clip) // 4 for f in frames]


# -- sampling ------------------------------------------------------------------------
def test_uniform_indices_are_segment_centres_and_repeat_only_when_allowed():
    assert uniform_indices(10, 4).tolist() == [1, 3, 6, 8]
    assert uniform_indices(4, 4).tolist() == [0, 1, 2, 3]
    assert uniform_indices(3, 6, min_frames=3).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ClipError, match=r"clip a.mp4 has 3 frames, fewer than T=6; lower ClipLayout.frames or pass "
                                        r"min_frames=3"):
        uniform_indices(3, 6, where="a.mp4")
    with pytest.raises(ClipError, match="has 2 frames, fewer than T=6"):
        uniform_indices(2, 6, min_frames=3)
    with pytest.raises(ClipError, match="has no frames"):
        uniform_indices(0, 6, min_frames=1)


def test_random_crops_are_reproducible_in_range_and_vary_with_the_seed():
    def draw(seed):
        return random_crop_indices(200, 8, rng=np.random.default_rng(seed), min_span=0.3)

    a = draw(1)
    assert a.tolist() == draw(1).tolist()
    assert len(a) == 8 and (np.diff(a) >= 0).all() and a.min() >= 0 and a.max() < 200
    assert len({tuple(draw(s)) for s in range(20)}) > 10
    assert min(np.ptp(draw(s)) for s in range(50)) >= 0.3 * 200 * 7 / 8 - 2  # windows >= min_span of the clip
    full = random_crop_indices(50, 5, rng=np.random.default_rng(3), min_span=1.0)
    assert full.tolist() == uniform_indices(50, 5).tolist()
    with pytest.raises(ValueError, match="min_span must be a fraction"):
        random_crop_indices(50, 5, rng=np.random.default_rng(0), min_span=0)


# -- items ---------------------------------------------------------------------------
def test_item_is_a_packed_clip_of_the_uniform_frames():
    ds = make()
    x, y = ds[2]
    assert tuple(x.shape) == LAYOUT.shape and x.dtype == torch.float32 and y == 0
    parts = LAYOUT.unpack(x[None])
    assert parts.has_frames.item() and parts.has_audio.item() and parts.has_landmarks.item()
    want = uniform_indices(12, 4)  # [1, 4, 7, 10]
    np.testing.assert_allclose(parts.frames[0, :, 0, 0, 0].numpy(), (4 * want + 2) / 255, atol=1e-6)
    frames, regions = ds.frames_at(2)
    assert frames.shape == (4, 16, 16, 3) and frames.dtype == np.uint8 and regions is None
    assert frame_ids(frames, 2) == want.tolist()
    assert parts.mel.abs().sum() > 0 and parts.landmarks.abs().max() <= 1


def test_grey_layout_and_source_landmarks_and_regions_follow_the_frames():
    layout = ClipLayout(frames=4, image_size=16, channels=1, mel_bins=8, mel_steps=8, landmarks=3)
    ds = make(Source(landmarks=3, regions=True), layout=layout)
    x, _ = ds[1]
    parts = layout.unpack(x[None])
    assert parts.frames.shape == (1, 4, 1, 16, 16)
    idx = uniform_indices(12, 4)
    marks = np.linspace(-0.5, 0.5, 12, dtype=np.float32)[idx]
    np.testing.assert_allclose(parts.landmarks[0, :, 0, 0].numpy(), marks, atol=1e-6)
    frames, regions = ds.frames_at(1)
    assert frames.shape == (4, 16, 16, 1)
    assert regions.shape == (4, 16, 16) and regions.max(axis=(1, 2)).tolist() == (idx + 1).tolist()
    with pytest.raises(ValueError, match="the source gives 3 landmarks per frame but the layout has landmarks=4; "
                                         "build the ClipLayout with landmarks=3"):
        make(Source(landmarks=3))[0]


def test_clips_without_audio_are_flagged_counted_and_logged_once(caplog):
    ds = make(Source(audio="even"))
    with caplog.at_level(logging.WARNING, logger="cfer.data.video.store"):
        flags = [bool(LAYOUT.unpack(ds[i][0][None]).has_audio) for i in range(6)]
    assert flags == [True, False] * 3
    assert ds.missing_audio == 3
    assert caplog.text.count("has no audio") == 1 and "missing_audio" in caplog.text
    assert ds.subset([0, 1]).missing_audio == 1
    assert "without audio so far: 3" in ds.summary()


def test_short_clips_error_unless_min_frames_allows_repeats():
    with pytest.raises(ClipError, match=r"clip clip0.mp4 has 3 frames, fewer than T=4; lower ClipLayout.frames or "
                                        r"pass min_frames=3"):
        make(Source(frames=3))[0]
    frames, _ = make(Source(frames=3), min_frames=2).frames_at(0)
    assert frame_ids(frames, 0) == [0, 1, 1, 2]  # the middle frame twice


# -- training crops ------------------------------------------------------------------
def test_training_crops_are_reproducible_vary_per_draw_and_frames_at_peeks_the_next():
    src = Source(n=2, frames=60)

    def crops(ds, times=5):
        out = []
        for _ in range(times):
            peek = frame_ids(ds.frames_at(1)[0], 1)
            x, _ = ds[1]
            got = [(round(float(v) * 255) - 1) // 4 for v in x[:4, 0, 0, 0]]
            assert got == peek  # frames_at shows the crop the next item uses
            out.append(tuple(got))
        return out

    a = crops(make(src, train=True, seed=3))
    assert a == crops(make(src, train=True, seed=3))  # same seed, same crops
    assert len(set(a)) > 1  # successive draws differ
    assert a != crops(make(src, train=True, seed=4))
    ds = make(src, train=True, seed=3)
    ds.set_epoch(1)
    assert crops(ds) != a
    eval_ds = make(src)
    assert len({frame_ids(eval_ds.frames_at(1)[0], 1)[0] for _ in range(3)}) == 1  # evaluation: fixed


def test_training_mel_covers_the_crop_and_evaluation_mel_the_clip():
    src = Source(n=1, frames=60)
    ev = make(src, labels=[0], subjects=None, splits=None, paths=None)
    tr = ev.with_train(True)
    assert tr.train and not ev.train and tr.cache_info() == ev.cache_info()
    mel_ev = LAYOUT.unpack(ev[0][0][None]).mel
    mel_tr = LAYOUT.unpack(tr[0][0][None]).mel
    assert mel_ev.shape == mel_tr.shape == (1, 8, 8)
    # a steady tone: both windows peak in the same band
    assert mel_ev[0].mean(dim=1).argmax() == mel_tr[0].mean(dim=1).argmax()


# -- cache ---------------------------------------------------------------------------
def test_cache_stays_within_its_byte_budget():
    src = Source(n=6, audio=False)
    budget = 2 * PREPARED_BYTES + 100  # two clips fit, three do not
    ds = make(src, cache_bytes=budget)
    for _ in range(2):
        for i in range(6):
            ds[i]
            info = ds.cache_info()
            assert info.bytes <= budget and info.items <= 2
    assert info.items == 2 and info.bytes == 2 * PREPARED_BYTES
    assert sum(src.loads.values()) == 12  # LRU over a cycle longer than the cache: every access decodes
    assert info.misses == 12 and info.hits == 0


def test_big_cache_hits_on_the_second_pass_and_zero_turns_it_off():
    src = Source(n=6)
    ds = make(src)
    for _ in range(2):
        for i in range(6):
            ds[i]
    info = ds.cache_info()
    assert isinstance(info, CacheInfo) and (info.hits, info.misses, info.items) == (6, 6, 6)
    assert set(src.loads.values()) == {1}
    off = make(Source(n=2), cache_bytes=0)
    off[0], off[0]
    assert off.cache_info().items == 0 and off.source.loads[0] == 2


def test_subset_shares_the_source_and_the_cache():
    src = Source(n=6)
    ds = make(src)
    ds[4]
    sub = ds.subset([4, 5])
    assert sub.source is ds.source and sub.paths == ["clip4.mp4", "clip5.mp4"]
    assert sub.labels.tolist() == [0, 1] and sub.targets.tolist() == [0, 1]
    sub[0]  # clip 4 again: a hit in the shared cache
    assert src.loads[4] == 1 and ds.cache_info().hits == 1 and sub.cache_info() == ds.cache_info()
    test = ds.select_split("test")
    assert test.paths == ["clip2.mp4", "clip5.mp4"] and test.splits.tolist() == ["test", "test"]
    with pytest.raises(ValueError, match=r"no items in split 'val'; splits present: \['test', 'train'\]"):
        ds.select_split("val")


def test_relabelled_changes_labels_and_classes_and_shares_the_clips_and_the_cache():
    src = Source(n=6)
    ds = make(src, train=True, seed=3).select_split("train")  # clips 0, 1, 3, 4
    ds[0]
    new = ds.relabelled(labels=np.array([2, 0, 2, 1]), classes=["neutral", "Angrily Surprised", "sad"])
    assert new.classes == ("neutral", "angrily_surprised", "sad") and ds.classes == ("happy", "sadly_angry")
    assert new.labels.tolist() == [2, 0, 2, 1] and new.targets.tolist() == [2, 0, 2, 1]
    assert new.class_names == ["sad", "neutral", "sad", "angrily_surprised"]
    assert ds.labels.tolist() == [0, 1, 1, 0] and ds.targets.tolist() == [0, 1, 1, 0]  # the original is unchanged
    assert new.source is ds.source and new.paths == ds.paths == ["clip0.mp4", "clip1.mp4", "clip3.mp4", "clip4.mp4"]
    assert new.subjects.tolist() == ds.subjects.tolist() and new.splits.tolist() == ds.splits.tolist()
    assert new.layout is ds.layout and new.train and new.seed == 3 and len(new) == len(ds) == 4
    new[0]  # clip 0 again: a hit in the shared cache
    assert src.loads[0] == 1 and new.cache_info() == ds.cache_info() and ds.cache_info().hits == 1
    ev, new_ev = ds.with_train(False), new.with_train(False)
    for i in range(4):
        assert torch.equal(ev[i][0], new_ev[i][0]) and np.array_equal(ev.frames_at(i)[0], new_ev.frames_at(i)[0])
    assert [new_ev[i][1] for i in range(4)] == [2, 0, 2, 1]
    assert new.subset([3]).labels.tolist() == [1] and new.subset([3]).classes == new.classes
    with pytest.raises(ValueError, match="4 clips but 3 labels"):
        ds.relabelled(labels=[0, 1, 2], classes=["happy", "sad", "neutral"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        ds.relabelled(labels=[0, 1, 2, 0], classes=["happy", "sad"])


def test_pickled_copy_starts_with_an_empty_cache_and_works():
    ds = make()
    ds[0]
    copy = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker gets
    assert copy.cache_info().items == 0 and ds.cache_info().items == 1
    assert torch.equal(copy[0][0], ds[0][0])
    batch, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert tuple(batch.shape) == (3, *LAYOUT.shape) and labels.tolist() == [0, 1, 0]


# -- conveniences and checks ---------------------------------------------------------
def test_face_dataset_conveniences():
    ds = make(skipped={"missing clip": 2})
    assert ds.classes == ("happy", "sadly_angry") and ds.image_size == (16, 16) and ds.channels == 3
    assert ds.layout is LAYOUT and ds.labels.dtype == np.int64 and ds.targets.dtype == torch.int64
    assert ds.counts() == {"happy": 3, "sadly_angry": 3}
    assert ds.class_names[:2] == ["happy", "sadly_angry"]
    assert ds.subjects.tolist() == ["s0", "s0", "s1", "s1", "s2", "s2"]
    assert ds.skipped == {"missing clip": 2} and ds.subset([0]).skipped == {"missing clip": 2}
    x, y = ds.subset([0, 1, 2]).tensors()
    assert tuple(x.shape) == (3, *LAYOUT.shape) and y.tolist() == [0, 1, 0]
    text = ds.summary()
    assert text.startswith("ClipDataset: 6 clips, T=4 frames of 16x16x3")
    assert "splits: test=2, train=4" in text and "sadly_angry  compound  3" in text and "skipped: missing clip=2" in text
    assert repr(ds) == "ClipDataset(n=6, frames=4, size=16x16x3, classes=2, train=False)"
    with pytest.raises(IndexError, match="clip index 6 out of range for 6 clips"):
        ds[6]
    assert torch.equal(ds[-1][0], ds[5][0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"labels": [0, 1]}, "6 clips but 2 labels"),
    ({"labels": [0, 1, 2, 0, 1, 0]}, r"labels must lie in \[0, 1\]"),
    ({"layout": (4, 16)}, "layout must be a cfer.data.video.ClipLayout"),
    ({"source": [1, 2]}, "source must have __len__ and load"),
    ({"cache_bytes": -1}, "cache_bytes must be an int >= 0"),
    ({"paths": ["a"]}, "6 clips but 1 paths"),
    ({"indices": [0, 9], "labels": [0, 1], "subjects": None, "splits": None, "paths": None},
     r"indices must lie in \[0, 5\]"),
    ({"crop_faces": "yes"}, "crop_faces must be True, False or a FaceCropper"),
])
def test_bad_arguments_name_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


# -- face crops ----------------------------------------------------------------------
class FaceSource:
    """Three clips of 5 frames: 0 and 2 show a drawn face (brightness changes per frame),
    1 shows none."""

    def __init__(self, face: np.ndarray) -> None:
        self.face = face

    def __len__(self) -> int:
        return 3

    def load(self, index: int) -> RawClip:
        base = self.face if index != 1 else np.full_like(self.face, 60)
        frames = np.stack([np.clip(base.astype(int) + 4 * j, 0, 255).astype(np.uint8) for j in range(5)])
        return RawClip(frames=frames, fps=25.0)


def test_crop_faces_uses_one_box_from_the_middle_frame(face_drawer, caplog):
    import cv2

    face = face_drawer(rgb=True)
    layout = ClipLayout(frames=5, image_size=32, channels=3, mel_bins=4, mel_steps=4, landmarks=4)
    ds = ClipDataset(source=FaceSource(face), labels=[0, 0, 0], classes=["happy"], layout=layout, crop_faces=True)
    frames, _ = ds.frames_at(0)
    middle = np.clip(face.astype(int) + 8, 0, 255).astype(np.uint8)
    top, left, bottom, right = FaceCropper().box(middle)
    for j in range(5):  # every frame cut with the middle frame's box
        raw = np.clip(face.astype(int) + 4 * j, 0, 255).astype(np.uint8)
        want = cv2.resize(raw[top:bottom, left:right], (32, 32), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(frames[j], want)
    with caplog.at_level(logging.WARNING, logger="cfer.data.video.store"):
        whole, _ = ds.frames_at(1)
        ds.frames_at(2)
    assert ds.no_face == 1 and "no face found on the middle frame; using whole frames" in caplog.text
    assert whole.shape == (5, 32, 32, 3)
