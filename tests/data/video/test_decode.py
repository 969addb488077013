"""Decoding real files: tiny MP4s written with PyAV, frame folders, WAVs; point tracking."""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cfer.data.readers import DatasetError
from cfer.data.video.audio import log_mel, mel_frequencies
from cfer.data.video.decode import ClipError, ClipNotFoundError, read_video
from cfer.data.video.files import read_clip
from cfer.data.video.frame_folder import read_frame_folder, read_wav
from cfer.data.video.tracking import grid_points, track_points

av = pytest.importorskip("av")

W, H = 64, 48


def square_frame(i: int, *, width: int = W, height: int = H) -> np.ndarray:
    """A white square on black, 3 px further right in each frame."""
    img = np.zeros((height, width, 3), np.uint8)
    img[12:32, 4 + 3 * i:24 + 3 * i] = 255
    return img


def write_mp4(path: Path, *, frames: int = 12, fps: int = 10, audio_hz: float | None = 1000.0,
              video: bool = True) -> Path:
    """A tiny H.264 MP4 of ``square_frame``s, with an AAC sine track unless ``audio_hz`` is None."""
    container = av.open(str(path), "w")
    vs = astream = None
    if video:
        vs = container.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    rate = 16000
    if audio_hz is not None:  # every stream is added before the first packet is written
        astream = container.add_stream("aac", rate=rate)
        astream.layout = "mono"
    if vs is not None:
        for i in range(frames):
            for packet in vs.encode(av.VideoFrame.from_ndarray(square_frame(i), format="rgb24")):
                container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
    if astream is not None:
        t = np.arange(int(rate * frames / fps)) / rate
        wav = (0.5 * np.sin(2 * np.pi * audio_hz * t)).astype(np.float32)
        step = astream.codec_context.frame_size or 1024
        for start in range(0, len(wav), step):
            chunk = wav[start:start + step]
            frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in astream.encode(frame):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
    container.close()
    return path


def write_wav(path: Path, wav: np.ndarray, *, rate: int = 16000, width: int = 2, channels: int = 1) -> Path:
    data = np.repeat(wav[:, None], channels, axis=1).reshape(-1)
    if width == 2:
        raw = (np.clip(data, -1, 1) * 32767).astype("<i2").tobytes()
    elif width == 3:
        v = (np.clip(data, -1, 1) * (2**23 - 1)).astype(np.int32)
        raw = np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], axis=1).astype(np.uint8).tobytes()
    else:
        raw = (np.clip(data, -1, 1) * 127 + 128).astype(np.uint8).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def write_folder(folder: Path, *, frames: int = 12, audio: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):  # names 1.png .. 12.png: natural order differs from sorted()
        Image.fromarray(np.full((H, W, 3), 10 * i, np.uint8)).save(folder / f"{i + 1}.png")
    (folder / "notes.txt").write_text("not a frame")
    if audio:
        t = np.arange(16000) / 16000
        write_wav(folder / "audio.wav", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    return folder


def _square_x(frame: np.ndarray) -> float:
    cols = np.flatnonzero(frame[12:32, :, 0].mean(axis=0) > 128)
    return float(cols.mean())


# -- video files ---------------------------------------------------------------------
def test_read_video_frames_fps_and_audio(tmp_path):
    clip = read_video(write_mp4(tmp_path / "a.mp4"))
    assert clip.frames.shape == (12, H, W, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(10.0)
    xs = [_square_x(f) for f in clip.frames]
    assert np.allclose(np.diff(xs), 3, atol=1)  # the square moves 3 px right a frame
    assert clip.sample_rate == 16000 and clip.audio.dtype == np.float32 and clip.audio.ndim == 1
    assert abs(len(clip.audio) - 1.2 * 16000) <= 2048  # AAC adds up to a frame of padding
    assert np.abs(clip.audio).max() == pytest.approx(0.5, abs=0.1)
    mel = log_mel(clip.audio, sample_rate=clip.sample_rate, mel_bins=32, mel_steps=8)
    assert mel.mean(axis=1).argmax() == np.abs(mel_frequencies(mel_bins=32) - 1000).argmin()


def test_read_video_max_frames_cuts_the_audio_too(tmp_path):
    clip = read_video(write_mp4(tmp_path / "a.mp4"), max_frames=5)
    assert len(clip.frames) == 5
    assert len(clip.audio) == 8000  # 5 frames at 10 fps = 0.5 s
    assert read_video(tmp_path / "a.mp4", audio=False).audio is None


def test_video_without_audio_is_not_an_error(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="cfer.data.video.decode"):
        clip = read_video(write_mp4(tmp_path / "silent.mp4", audio_hz=None))
    assert clip.audio is None and clip.sample_rate is None and len(clip.frames) == 12
    assert "no audio stream" in caplog.text


def test_video_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ClipNotFoundError, match="nope.mp4 does not exist") as err:
        read_video(tmp_path / "nope.mp4")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, DatasetError)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(ClipError, match=r"bad.mp4: cannot open the video .*corrupt or not a video, replace or delete"):
        read_video(bad)
    with pytest.raises(ClipError, match="no video stream"):
        read_video(write_mp4(tmp_path / "voice.mp4", video=False))
    with pytest.raises(ClipError, match="has 12 frames, fewer than min_frames=20; drop the clip or lower min_frames"):
        read_video(write_mp4(tmp_path / "a.mp4"), min_frames=20)
    empty = av.open(str(tmp_path / "empty.avi"), "w")  # a video stream without a single frame
    stream = empty.add_stream("mjpeg", rate=10)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuvj420p"
    empty.start_encoding()
    empty.close()
    with pytest.raises(ClipError, match="empty.avi: no frames could be decoded; replace the file or drop the clip"):
        read_video(tmp_path / "empty.avi")
    with pytest.raises(ValueError, match="max_frames must be a positive int or None"):
        read_video(tmp_path / "a.mp4", max_frames=0)


# -- frame folders -------------------------------------------------------------------
def test_frame_folder_natural_order_fps_and_audio(tmp_path):
    clip = read_frame_folder(write_folder(tmp_path / "00001", audio=True), fps=30)
    assert clip.frames.shape == (12, H, W, 3)
    assert clip.frames[:, 0, 0, 0].tolist() == [10 * i for i in range(12)]  # 2.png before 10.png
    assert clip.fps == 30.0
    assert clip.sample_rate == 16000 and len(clip.audio) == 16000
    cut = read_frame_folder(tmp_path / "00001", fps=30, max_frames=6)
    assert len(cut.frames) == 6 and len(cut.audio) == 16000 * 6 // 30


def test_frame_folder_without_audio_and_its_errors(tmp_path):
    clip = read_frame_folder(write_folder(tmp_path / "clip"))
    assert clip.audio is None and clip.fps == 25.0
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ClipError, match="frame folder .*empty holds no frame images"):
        read_frame_folder(tmp_path / "empty")
    with pytest.raises(ClipNotFoundError, match="frame folder .*nowhere does not exist"):
        read_frame_folder(tmp_path / "nowhere")
    with pytest.raises(ClipError, match="fewer than min_frames=20"):
        read_frame_folder(tmp_path / "clip", min_frames=20)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "clip" / "13.png")
    with pytest.raises(ClipError, match=r"13.png: frame is 10x10 but 1.png is 64x48; resize the clip's frames"):
        read_frame_folder(tmp_path / "clip")
    (tmp_path / "clip" / "13.png").write_bytes(b"not a png")
    with pytest.raises(ClipError, match="13.png: cannot decode frame"):
        read_frame_folder(tmp_path / "clip")
    (tmp_path / "clip" / "13.png").unlink()
    (tmp_path / "clip" / "audio.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(ClipError, match="audio.wav: cannot read the WAV file .*save it as PCM WAV"):
        read_frame_folder(tmp_path / "clip")


@pytest.mark.parametrize("width", [1, 2, 3])
def test_read_wav_widths_and_channels(tmp_path, width):
    t = np.arange(800) / 8000
    wav = (0.5 * np.sin(2 * np.pi * 400 * t)).astype(np.float32)
    x, rate = read_wav(write_wav(tmp_path / "a.wav", wav, rate=8000, width=width, channels=2))
    assert rate == 8000 and x.shape == (800,) and x.dtype == np.float32
    np.testing.assert_allclose(x, wav, atol=2.0 / 2 ** (8 * width - 1) + 1e-4)


def test_read_clip_dispatches_on_what_the_path_is(tmp_path):
    assert len(read_clip(write_folder(tmp_path / "f", frames=3), fps=5).frames) == 3
    assert read_clip(write_mp4(tmp_path / "v.mp4")).fps == pytest.approx(10.0)
    (tmp_path / "v.txt").write_text("x")
    with pytest.raises(ClipError, match=r"\.txt extension is not a video extension"):
        read_clip(tmp_path / "v.txt")


# -- motion --------------------------------------------------------------------------
def test_track_points_follow_a_moving_textured_square():
    import cv2

    rng = np.random.default_rng(0)

    def texture(side):  # smooth random texture, like skin and hair rather than pixel noise
        t = cv2.GaussianBlur(rng.standard_normal((side, side)).astype(np.float32), (0, 0), 1.5)
        return np.clip(128 + t * (60 / t.std()), 0, 255).astype(np.uint8)

    background, square = texture(96), texture(40)
    frames, corners = [], []
    for i in range(8):  # about 1.5 px right and 1 px down per frame
        f = background.copy()
        x0, y0 = 26 + int(round(1.5 * i)), 26 + i
        f[y0:y0 + 40, x0:x0 + 40] = square
        frames.append(np.stack([f] * 3, axis=-1))
        corners.append((x0, y0))
    tracks = track_points(np.stack(frames), points=16)
    assert tracks.shape == (8, 16, 2) and tracks.dtype == np.float32
    assert np.abs(tracks).max() <= 1.0
    moved = (tracks[-1] - tracks[0]) * 95 / 2  # back to pixels
    start = grid_points(points=16, height=96, width=96)  # x, y in {11.5, 35.5, 59.5, 83.5}
    inner = (np.abs(start[:, 0] - 47.5) < 20) & (np.abs(start[:, 1] - 47.5) < 20)
    assert inner.sum() == 4  # on the square throughout
    shift = np.subtract(corners[-1], corners[0])
    np.testing.assert_allclose(moved[inner], [shift] * 4, atol=1.5)  # frame-to-frame drift
    assert np.abs(moved[~inner]).max() < 1.0  # the static background stays put


def test_grid_points_and_track_points_input_checks():
    g = grid_points(points=16, height=40, width=40)
    assert sorted(set(g[:, 0].tolist())) == [4.5, 14.5, 24.5, 34.5] == sorted(set(g[:, 1].tolist()))
    assert grid_points(points=5, height=10, width=10).shape == (5, 2)
    assert track_points(np.zeros((1, 8, 8), np.uint8), points=4).shape == (1, 4, 2)
    with pytest.raises(ValueError, match="frames must be uint8"):
        track_points(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"got shape \(2, 8\)"):
        track_points(np.zeros((2, 8), np.uint8))
