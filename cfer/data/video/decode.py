"""Decoding video files with PyAV, and the errors and limits every clip reader shares.

* :func:`read_video` decodes every frame of a video file as uint8 RGB, takes the frame
  rate from the stream, and the first audio stream resampled to mono float32 at
  :data:`AUDIO_RATE` (16 kHz) with ``av.AudioResampler``; a file without an audio
  stream gives ``audio=None`` (logged, not an error).
* Folders of frame images are read by :mod:`cfer.data.video.frame_folder`; either kind
  of clip path by :func:`cfer.data.video.files.read_clip`.

PyAV and its FFmpeg come in the ``av`` wheel, which decodes H.264, MPEG-4, VP8/VP9,
AV1 (dav1d), MJPEG, AAC, MP3, Opus and PCM among others. It is imported on first use.

Errors are :class:`ClipError` (a :class:`cfer.data.readers.DatasetError`, so a
``ValueError``); a missing file is :class:`ClipNotFoundError` (also a
``FileNotFoundError``). Each message names the file and the fix.

Example:
    >>> clip = read_video("clips/s01_happy.mp4")  # doctest: +SKIP
    >>> clip.frames.shape, clip.fps, clip.sample_rate  # doctest: +SKIP
    ((75, 480, 640, 3), 25.0, 16000)
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from cfer.data.readers.common import DatasetError, DatasetNotFoundError
from cfer.data.video.layout import RawClip

__all__ = ["ClipError", "ClipNotFoundError", "AUDIO_RATE", "DEFAULT_FPS", "MAX_CLIP_BYTES", "VIDEO_EXTENSIONS",
           "read_video"]

logger = logging.getLogger(__name__)

AUDIO_RATE = 16000
"""Sample rate (Hz) :func:`read_video` resamples audio to."""

DEFAULT_FPS = 25.0
"""Frame rate assumed for frame folders, and for videos whose stream states none."""

MAX_CLIP_BYTES = 2 * 2**30
"""The most memory (bytes, 2 GiB) the decoded frames of one clip may take."""

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
"""File extensions read as video files (case-insensitive); folders are frame folders."""



class ClipError(DatasetError):
    """A clip cannot be decoded or used; the message names the clip and the fix."""


class ClipNotFoundError(ClipError, DatasetNotFoundError):
    """A video file or frame folder does not exist."""


def _check_count(name: str, value: int | None, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")


def _check_frames(n: int, *, min_frames: int, where: str) -> None:
    if n == 0:
        raise ClipError(f"{where}: no frames could be decoded; replace the file or drop the clip")
    if n < min_frames:
        raise ClipError(
            f"{where}: clip has {n} frames, fewer than min_frames={min_frames}; drop the clip or lower min_frames"
        )


def _open(path: Path) -> object:
    """``av.open(path)`` with cfer's errors."""
    import av

    if not path.exists():
        raise ClipNotFoundError(f"video {path} does not exist; fix the path")
    if not path.is_file():
        raise ClipError(f"video {path} is not a file; pass a video file (or a frame folder to read_frame_folder)")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ClipError(
            f"{path}: cannot open the video ({type(exc).__name__}: {exc}); the file is corrupt or not a video, "
            "replace or delete it"
        ) from exc


def _fps(stream: object, where: Path) -> float:
    for attr in ("average_rate", "guessed_rate", "base_rate"):
        rate = getattr(stream, attr, None)
        if rate and float(rate) > 0 and math.isfinite(float(rate)):
            return float(rate)
    logger.warning("%s: the video stream states no frame rate; assuming %g fps", where, DEFAULT_FPS)
    return DEFAULT_FPS


def _rgb(frame: object) -> np.ndarray:
    """A decoded video frame as uint8 RGB ``(H, W, 3)``.

    yuv420p (what H.264 files hold) goes through OpenCV's conversion: PyAV's own
    ``to_ndarray(format="rgb24")`` sets up a scaler for every frame, about 3.4 ms for a
    64-pixel frame against 0.04 ms (measured here); other formats use PyAV's.
    """
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        import cv2

        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def read_video(
    path: str | os.PathLike,
    *,
    max_frames: int | None = None,
    min_frames: int = 1,
    sample_rate: int = AUDIO_RATE,
    audio: bool = True,
) -> RawClip:
    """Decode a video file: all frames as uint8 RGB, fps, and mono 16 kHz audio.

    Args:
        path: The video file (any container and codec the ``av`` wheel's FFmpeg reads).
        max_frames: Keep only the first ``max_frames`` frames (and the audio under
            them); default all.
        min_frames: The fewest frames the clip may have.
        sample_rate: Rate the audio is resampled to.
        audio: Decode the audio stream; False skips it (``audio=None``).

    Returns:
        A :class:`RawClip`; ``audio``/``sample_rate`` are None when the file has no
        audio stream. The audio starts with the stream (start offsets are ignored).

    Raises:
        ClipNotFoundError: If the file does not exist.
        ClipError: If the file cannot be opened (corrupt, not a video), has no video
            stream or no decodable frame, has fewer than ``min_frames`` frames, or
            its frames would take more than :data:`MAX_CLIP_BYTES`.

    Example:
        >>> clip = read_video("clip.mp4", max_frames=64)  # doctest: +SKIP
        >>> clip.frames.dtype, clip.audio is None or clip.sample_rate == 16000  # doctest: +SKIP
        (dtype('uint8'), True)
    """
    import av

    _check_count("max_frames", max_frames, allow_none=True)
    _check_count("min_frames", min_frames, allow_none=False)
    _check_count("sample_rate", sample_rate, allow_none=False)
    path = Path(path)
    container = _open(path)
    try:
        if not container.streams.video:
            raise ClipError(f"{path}: the file has no video stream; pass a video file with pictures")
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO"
        fps = _fps(vstream, path)
        astream = container.streams.audio[0] if (audio and container.streams.audio) else None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate) if astream else None
        frames: list[np.ndarray] = []
        chunks: list[np.ndarray] = []
        got_audio = 0
        held = 0
        limit = max_frames if max_frames is not None else math.inf
        want_audio = math.inf
        streams = [vstream] + ([astream] if astream is not None else [])
        try:
            for packet in container.demux(*streams):
                is_video = packet.stream.type == "video"
                if is_video and len(frames) >= limit:
                    if astream is None or got_audio >= want_audio:
                        break
                    continue
                for frame in packet.decode():
                    if is_video:
                        if len(frames) >= limit:
                            break
                        arr = _rgb(frame)
                        held += arr.nbytes
                        if held > MAX_CLIP_BYTES:
                            raise ClipError(
                                f"{path}: the decoded frames pass {MAX_CLIP_BYTES / 2**30:.1f} GiB after "
                                f"{len(frames)} frames of {arr.shape[1]}x{arr.shape[0]}; pass max_frames= or cut "
                                "the video into shorter clips"
                            )
                        frames.append(arr)
                        if len(frames) >= limit:
                            want_audio = int(round(len(frames) / fps * sample_rate))
                    else:
                        for out in resampler.resample(frame):
                            chunk = out.to_ndarray().reshape(-1)
                            chunks.append(chunk)
                            got_audio += len(chunk)
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            if not frames:
                raise ClipError(
                    f"{path}: cannot decode the video ({type(exc).__name__}: {exc}); the file is corrupt, replace it"
                ) from exc
            logger.warning("%s: decoding stopped after %d frames (%s: %s); keeping the frames decoded so far",
                           path, len(frames), type(exc).__name__, exc)
    finally:
        container.close()
    _check_frames(len(frames), min_frames=min_frames, where=str(path))
    wav: np.ndarray | None = None
    if astream is None:
        if audio:
            logger.info("%s: no audio stream; the clip's audio is None", path)
    else:
        wav = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        if max_frames is not None and len(frames) >= max_frames:
            wav = wav[: int(round(len(frames) / fps * sample_rate))]
        if wav.size == 0:
            logger.info("%s: the audio stream holds no samples; the clip's audio is None", path)
            wav = None
        else:
            wav = np.clip(np.nan_to_num(wav), -1.0, 1.0)
    return RawClip(frames=np.stack(frames), fps=fps, audio=wav, sample_rate=sample_rate if wav is not None else None)
