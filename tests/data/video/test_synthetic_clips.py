"""Synthetic clips: on-demand, deterministic rendering; compound timing; landmarks; voice; MP4 export."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest

from cfer import taxonomy
from cfer.data.synthetic import FaceRenderer, SynthConfig
from cfer.data.synthetic.sampling import _AU_INDEX, _IDENTITY_KEYS, _N_AU, _sample_identity, _sample_nuisance
from cfer.data.video.export import encode_mp4, export_clips, synth_video_command
from cfer.data.video.landmarks import LANDMARK_NAMES, landmarks_from_regions
from cfer.data.video.layout import ClipLayout, RawClip
from cfer.data.video.preview import write_preview_gif
from cfer.data.video.readers import read_clip_manifest
from cfer.data.video.synth_audio import PROSODY, estimate_pitch, synth_voice
from cfer.data.video.synthetic import SyntheticClipSource
from cfer.data.video.timing import FIRST, SECOND, WHOLE

av = pytest.importorskip("av")

TINY = dict(n_subjects=2, per_class=1, frames=8, image_size=32, seed=0)
P = {name: i for i, name in enumerate(LANDMARK_NAMES)}


def _peak(curve: np.ndarray) -> float:
    """Intensity-weighted mean frame of a curve."""
    t = np.arange(len(curve))
    return float((curve * t).sum() / curve.sum())


@pytest.fixture(scope="module")
def src() -> SyntheticClipSource:
    return SyntheticClipSource(classes=["happy", "sad", "happily_surprised"], **TINY)


def test_shapes_dtypes_and_order(src):
    assert len(src) == 6 and src.classes == ("happy", "sad", "happily_surprised")
    assert src.labels.dtype == np.int64 and src.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert src.subjects.tolist() == ["s0000"] * 3 + ["s0001"] * 3
    clip = src.load(2)
    assert isinstance(clip, RawClip) and clip.fps == 8.0
    assert clip.frames.shape == (8, 32, 32, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.dtype == np.float32 and clip.audio.shape == (16000,)  # 8 frames / 8 fps = 1 s
    assert clip.sample_rate == 16000 and np.abs(clip.audio).max() <= 1.0 and clip.audio.std() > 0.01
    assert clip.landmarks.shape == (8, 16, 2) and clip.landmarks.dtype == np.float32
    assert np.abs(clip.landmarks).max() <= 1.0
    assert clip.regions.shape == (8, 32, 32) and clip.regions.dtype == np.uint8
    assert clip.regions.max() <= len(taxonomy.REGIONS)
    assert src.au_curves(2).shape == (8, len(taxonomy.AUS))
    grey = SyntheticClipSource(classes="basic", n_subjects=1, per_class=1, frames=3, image_size=16,
                               channels=1, audio=False, landmarks=20).load(0)
    assert grey.frames.shape == (3, 16, 16, 1) and grey.audio is None and grey.sample_rate is None
    np.testing.assert_array_equal(grey.landmarks[:, 16:], grey.landmarks[:, :4])  # cyclic padding


def test_deterministic_and_independent_of_other_clips(src):
    a, b = src.load(2), src.load(2)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    # The same (subject, class, clip) from a source of other classes is the same clip.
    alone = SyntheticClipSource(classes=["happily_surprised"], **TINY).load(0)
    np.testing.assert_array_equal(alone.frames, a.frames)
    np.testing.assert_array_equal(alone.audio, a.audio)
    # Different people (and different takes) differ.
    other = src.load(5)  # s0001, happily_surprised
    assert np.abs(other.frames.astype(int) - a.frames.astype(int)).mean() > 5
    assert not np.array_equal(other.audio, a.audio)
    assert not np.array_equal(src.load(0).frames, SyntheticClipSource(classes=["happy"], **{**TINY, "seed": 1}).load(0).frames)
    # A pickled source (a DataLoader worker's copy) is small and renders the same clips.
    payload = pickle.dumps(src)
    assert len(payload) < 20_000
    np.testing.assert_array_equal(pickle.loads(payload).load(2).frames, a.frames)
    # The frames of a clip move: the expression changes over time.
    assert np.abs(a.frames[0].astype(int) - a.frames[4].astype(int)).mean() > 2


def test_compound_constituents_peak_at_different_times():
    s = SyntheticClipSource(classes=["happily_surprised", "appalled", "hatred", "happy"], n_subjects=6,
                            per_class=2, frames=16, seed=0)
    i12, i1, i10, i4 = (_AU_INDEX[au] for au in (12, 1, 10, 4))
    for i in range(len(s)):
        script = s.script(i)
        c = script.curves
        if script.cls == "happily_surprised":
            assert script.order == ("happy", "surprised")
            assert script.groups[i12] == FIRST and script.groups[i1] == SECOND
            assert _peak(c[:, i12]) < _peak(c[:, i1]) - 2  # the smile peaks >= 2 frames before the brows
            assert script.peak_times[1] - script.peak_times[0] >= 0.18 * s.duration
            assert script.mix[0] < 0.05 and script.mix[-1] > 0.95  # the voice follows the face
        elif script.cls in ("appalled", "hatred"):
            # Same AUs, opposite order: disgust (AU10) first in appalled, anger (AU4) first in hatred.
            first, second = (i10, i4) if script.cls == "appalled" else (i4, i10)
            assert script.groups[first] == FIRST and script.groups[second] == SECOND
            assert _peak(c[:, first]) < _peak(c[:, second]) - 2
        else:  # basic: all its AUs rise and fall together
            active = np.flatnonzero(script.groups == WHOLE)
            peaks = [_peak(c[:, a]) for a in active]
            assert script.order == ("happy",) and max(peaks) - min(peaks) < 1.5
            assert not script.mix.any()
        assert c[0].max() < 0.5 * c.max()  # each clip starts near neutral


def test_blink_closes_the_eyes():
    s = SyntheticClipSource(classes=["neutral"], n_subjects=12, per_class=1, frames=8, image_size=32,
                            difficulty=0.0, audio=False, seed=0)
    eyes = taxonomy.REGIONS.index("eyes") + 1
    tested = 0
    for i in range(len(s)):
        blink = s.script(i).blink
        if blink.max() < 1.0 or blink.min() > 0.0:
            continue
        area = (s.load(i).regions == eyes).sum(axis=(1, 2))
        assert area[blink >= 1.0].max() < 0.8 * area[blink == 0].min()
        tested += 1
    assert tested >= 2


def _render(aus_by_case: list[dict[int, float]], size: int = 64) -> np.ndarray:
    """Landmarks of one identity, upright, with each case's AUs."""
    cfg = SynthConfig(image_size=size, difficulty=0.0)
    ident = _sample_identity(np.random.default_rng(0), 0.0)
    B = len(aus_by_case)
    aus = np.zeros((B, _N_AU), np.float32)
    for r, case in enumerate(aus_by_case):
        for au, v in case.items():
            aus[r, _AU_INDEX[au]] = v
    _, regions = FaceRenderer(config=cfg).render(
        identity={k: np.full(B, ident[k], np.float32) for k in _IDENTITY_KEYS}, aus=aus,
        nuisance=_sample_nuisance(np.random.default_rng(0), B, cfg))
    return landmarks_from_regions(regions)


def test_landmarks_move_with_aus():
    none, au12, au20, brows_up, au4, au26 = _render([{}, {12: 1}, {20: 1}, {1: 1, 2: 1}, {4: 1}, {26: 1}])

    def width(lm):
        return lm[P["mouth_right"], 0] - lm[P["mouth_left"], 0]

    def brow_y(lm):
        return lm[[P["brow_left"], P["brow_right"]], 1].mean()

    assert width(au12) > width(none) + 0.05 and width(au20) > width(none) + 0.05
    assert brow_y(brows_up) < brow_y(none) - 0.08  # y grows downwards
    assert brow_y(au4) > brow_y(none) + 0.02
    assert au26[P["mouth_bottom"], 1] > none[P["mouth_bottom"], 1] + 0.08
    assert au26[P["chin"], 1] > none[P["chin"], 1] + 0.01
    # Within a clip the points follow the AU curves.
    s = SyntheticClipSource(classes=["surprised"], n_subjects=1, per_class=1, frames=8, image_size=64,
                            difficulty=0.0, audio=False, seed=0)
    lm, curves = s.load(0).landmarks, s.au_curves(0)
    assert np.corrcoef(curves[:, _AU_INDEX[26]], lm[:, P["mouth_bottom"], 1])[0, 1] > 0.8
    assert np.corrcoef(curves[:, _AU_INDEX[1]], -lm[:, P["brow_left"], 1])[0, 1] > 0.8
    with pytest.raises(ValueError, match=r"regions\[None\]"):
        landmarks_from_regions(np.zeros((8, 8), np.uint8))


def test_voice_prosody_follows_the_expression():
    s = SyntheticClipSource(classes=["happy", "sad"], n_subjects=2, per_class=3, frames=8, image_size=16, seed=0)
    semitones = np.zeros((2, 2, 3))  # subject, class, clip
    for i in range(len(s)):
        clip = s.load(i)
        f0 = estimate_pitch(clip.audio, sample_rate=clip.sample_rate)
        semitones[i // 6, s.labels[i], i % 3] = 12 * np.log2(f0)
    # Each speaker sounds higher when happy than when sad: ~3 semitones on average (moderate:
    # the clips' own noise is ~1.3 semitones), while speakers differ by up to 18 semitones.
    gap = semitones[:, 0].mean(axis=1) - semitones[:, 1].mean(axis=1)
    assert (gap > 1.0).all() and (gap < 6.0).all()
    # The estimator itself, and the speaker's voice: the same prosody an octave up measures an octave up.
    rng = np.random.default_rng
    low = synth_voice(first=PROSODY["neutral"], duration=1.0, sample_rate=16000, voice_f0=100.0, rng=rng(0))
    high = synth_voice(first=PROSODY["neutral"], duration=1.0, sample_rate=16000, voice_f0=200.0, rng=rng(0))
    ratio = estimate_pitch(high, sample_rate=16000) / estimate_pitch(low, sample_rate=16000)
    assert 1.85 < ratio < 2.15
    loud = synth_voice(first=PROSODY["angry"], duration=1.0, sample_rate=16000, voice_f0=150.0, rng=rng(1))
    soft = synth_voice(first=PROSODY["sad"], duration=1.0, sample_rate=16000, voice_f0=150.0, rng=rng(1))
    assert loud.std() > 1.5 * soft.std()
    with pytest.raises(ValueError, match="voice_f0 must lie in 60-400 Hz"):
        synth_voice(first=PROSODY["sad"], duration=1.0, voice_f0=20.0, rng=rng(0))


def _decode(path):
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1, "the clip has no audio stream"
        sr = c.streams.audio[0].sample_rate
        n_frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return n_frames, audio, sr


def test_export_round_trip_and_preview(tmp_path):
    s = SyntheticClipSource(classes=["happy", "awed"], split="train", **TINY)
    summary = synth_video_command(out=tmp_path / "cmd", subjects=1, per_class=1, frames=4, fps=8, image_size=32,
                                  grey=True, seed=0, classes="happy, sadly angry", preview=tmp_path / "p.gif",
                                  progress=False)
    assert summary["clips"] == 2 and summary["classes"] == 2 and summary["seconds"] > 0
    assert (tmp_path / "cmd" / "manifest.csv").is_file() and (tmp_path / "p.gif").is_file()
    # What the command writes, the clip manifest reader reads back: labels, subjects, frames.
    back = read_clip_manifest(tmp_path / "cmd" / "manifest.csv", layout=ClipLayout(frames=4, image_size=32, channels=1))
    assert sorted(back.class_names) == ["happy", "sadly_angry"] and set(back.subjects) == {"s0000"}
    x, _ = back[0]
    assert tuple(x.shape) == ClipLayout(frames=4, image_size=32, channels=1).shape
    manifest = export_clips(tmp_path / "out", source=s, indices=[0, 1, 3])
    rows = list(csv.DictReader(manifest.open()))
    assert [r["path"] for r in rows] == ["happy/s0000_000.mp4", "awed/s0000_000.mp4", "awed/s0001_000.mp4"]
    assert {r["split"] for r in rows} == {"train"} and rows[2]["subject"] == "s0001" and rows[1]["label"] == "awed"
    n_frames, audio, sr = _decode(manifest.parent / rows[0]["path"])
    assert n_frames == 8 and sr == 16000
    assert abs(len(audio) / sr - s.duration) <= 1024 / sr + 1e-6  # within one AAC frame
    assert audio.std() > 0.01  # the voice survived the encoder
    with pytest.raises(ValueError, match="overwrite=True"):
        export_clips(tmp_path / "out", source=s)
    with pytest.raises(ValueError, match="out of range"):
        export_clips(tmp_path / "more", source=s, indices=[9])
    # Odd-sized grey frames are padded to even sides for yuv420p.
    odd = tmp_path / "odd.mp4"
    odd.write_bytes(encode_mp4(RawClip(frames=np.full((3, 17, 17, 1), 90, np.uint8), fps=5.0)))
    with av.open(str(odd)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (18, 18, 3) and abs(int(frames[0].mean()) - 90) <= 3

    from PIL import Image

    gif = write_preview_gif(tmp_path / "preview.gif", source=s, per_class=2)
    with Image.open(gif) as im:
        assert im.n_frames == 8 and im.size[0] > 2 * 64
    with pytest.raises(ValueError, match="choose from"):
        write_preview_gif(tmp_path / "x.gif", source=s, classes=["sad"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(frames=1), r"frames must be an int >= 2 .*try 16"),
        (dict(classes=["sadly happy"]), r"unknown expression 'sadly happy'.*'basic', 'compound'"),
        (dict(fps=0), r"fps must be a number in \(0, 120\]"),
        (dict(image_size=8), r"image_size must be an int in \[16, 512\]"),
        (dict(per_class=0), r"per_class must be an int >= 1"),
        (dict(sample_rate=100), r"sample_rate must be an int >= 4000"),
    ],
)
def test_bad_input_names_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticClipSource(**{**TINY, **kwargs})


def test_index_out_of_range(src):
    with pytest.raises(IndexError, match="out of range for 6 clips"):
        src.load(6)
    assert np.array_equal(src.load(-1).frames, src.load(5).frames)
