"""Reading a folder of frame images as a clip, with its optional ``audio.wav``.

* :func:`read_frame_folder` reads a folder of frame images in natural order
  (``2.jpg`` before ``10.jpg``) at a given frame rate, plus :data:`AUDIO_FILE`
  (``audio.wav``) when the folder has one.
* :func:`read_wav` reads a PCM WAV file with the stdlib :mod:`wave` module, mixed
  down to mono at its own rate.

Errors are :class:`~cfer.data.video.decode.ClipError` and
:class:`~cfer.data.video.decode.ClipNotFoundError`, naming the file and the fix.

Example:
    >>> clip = read_frame_folder("DFEW/Clip/clip_224x224/00001", fps=30)  # doctest: +SKIP
    >>> clip.frames.shape[1:], clip.audio  # doctest: +SKIP
    ((224, 224, 3), None)
"""

from __future__ import annotations

import logging
import math
import os
import re
import wave
from pathlib import Path
from typing import Sequence

import numpy as np

from cfer.data.readers.folder import IMAGE_EXTENSIONS
from cfer.data.video.decode import (
    DEFAULT_FPS,
    MAX_CLIP_BYTES,
    ClipError,
    ClipNotFoundError,
    _check_count,
    _check_frames,
)
from cfer.data.video.layout import RawClip

__all__ = ["AUDIO_FILE", "read_frame_folder", "read_wav"]

logger = logging.getLogger(__name__)

AUDIO_FILE = "audio.wav"
"""The name of a frame folder's optional audio track."""

_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p.lower() for p in _DIGITS.split(name))


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A PCM WAV file as a mono float32 waveform in [-1, 1] and its sample rate.

    8-bit (unsigned), 16-, 24- and 32-bit integer PCM are read; channels are averaged.

    Raises:
        ClipNotFoundError: If the file does not exist.
        ClipError: If it is not a PCM WAV file the :mod:`wave` module reads.

    Example:
        >>> audio, rate = read_wav("clip/audio.wav")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ClipNotFoundError(f"audio file {path} does not exist; fix the path")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, count = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(count)
    except (wave.Error, EOFError, OSError) as exc:
        raise ClipError(
            f"{path}: cannot read the WAV file ({type(exc).__name__}: {exc}); save it as PCM WAV "
            "(e.g. ffmpeg -i in.wav -acodec pcm_s16le out.wav) or delete it"
        ) from exc
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    else:  # pragma: no cover - wave rejects other widths itself
        raise ClipError(f"{path}: {8 * width}-bit samples are not supported; save it as 16-bit PCM WAV")
    x = x[: (len(x) // channels) * channels].reshape(-1, channels).mean(axis=1)
    return x.astype(np.float32), int(rate)


def read_frame_folder(
    path: str | os.PathLike,
    *,
    fps: float = DEFAULT_FPS,
    max_frames: int | None = None,
    min_frames: int = 1,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> RawClip:
    """Read a folder of frame images (one clip) as a :class:`RawClip`.

    Image files are sorted naturally (``frame2.jpg`` before ``frame10.jpg``); other
    files and hidden files are ignored. All frames must have one size. When the
    folder holds :data:`AUDIO_FILE` (``audio.wav``) it becomes the clip's audio, at
    the file's own sample rate; otherwise ``audio=None`` (not an error).

    Args:
        path: The folder.
        fps: Frames per second of the images (folders do not store it).
        max_frames: Keep only the first ``max_frames`` frames (the audio is cut to
            match); default all.
        min_frames: The fewest frames the clip may have.
        extensions: Image file extensions read (case-insensitive).

    Raises:
        ClipNotFoundError: If the folder does not exist.
        ClipError: If it is not a folder, holds no images or fewer than
            ``min_frames``, an image cannot be decoded, the frames differ in size,
            or ``audio.wav`` cannot be read.

    Example:
        >>> clip = read_frame_folder("DFEW/Clip/clip_224x224/00001", fps=30)  # doctest: +SKIP
        >>> clip.frames.shape[1:], clip.audio  # doctest: +SKIP
        ((224, 224, 3), None)
    """
    from PIL import Image, UnidentifiedImageError

    from cfer.data.readers.images import _decode

    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    _check_count("max_frames", max_frames, allow_none=True)
    _check_count("min_frames", min_frames, allow_none=False)
    path = Path(path)
    files = _frame_files(path, extensions)
    if max_frames is not None:
        files = files[:max_frames]
    _check_frames(len(files), min_frames=min_frames, where=f"frame folder {path}")
    frames: list[np.ndarray] = []
    held = 0
    for f in files:
        try:
            img, _ = _decode(f)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ClipError(f"{f}: cannot decode frame ({type(exc).__name__}: {exc}); replace or delete the file") \
                from exc
        arr = np.asarray(img, dtype=np.uint8)
        if frames and arr.shape != frames[0].shape:
            raise ClipError(
                f"{f}: frame is {arr.shape[1]}x{arr.shape[0]} but {files[0].name} is "
                f"{frames[0].shape[1]}x{frames[0].shape[0]}; resize the clip's frames to one size"
            )
        held += arr.nbytes
        if held > MAX_CLIP_BYTES:
            raise ClipError(f"frame folder {path}: the decoded frames pass {MAX_CLIP_BYTES / 2**30:.1f} GiB after "
                            f"{len(frames)} frames; pass max_frames= or split the folder into shorter clips")
        frames.append(arr)
    audio, rate = None, None
    wav_path = path / AUDIO_FILE
    if wav_path.is_file():
        audio, rate = read_wav(wav_path)
        if max_frames is not None and len(files) >= max_frames:
            audio = audio[: int(round(len(frames) / fps * rate))]
        if audio.size == 0:
            logger.info("%s holds no samples; the clip's audio is None", wav_path)
            audio, rate = None, None
    else:
        logger.debug("frame folder %s has no %s; the clip's audio is None", path, AUDIO_FILE)
    return RawClip(frames=np.stack(frames), fps=float(fps), audio=audio, sample_rate=rate)


def _frame_files(path: Path, extensions: Sequence[str]) -> list[Path]:
    if not path.exists():
        raise ClipNotFoundError(f"frame folder {path} does not exist; fix the path")
    if not path.is_dir():
        raise ClipError(f"frame folder {path} is not a folder; pass a folder of frame images "
                        "(or a video file to read_video)")
    exts = {e.lower() for e in extensions}
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise ClipError(f"cannot list frame folder {path}: {exc.strerror}; fix its permissions") from exc
    files = [path / n for n in names if not n.startswith(".") and Path(n).suffix.lower() in exts]
    files = sorted((f for f in files if f.is_file()), key=lambda f: _natural_key(f.name))
    if not files:
        raise ClipError(
            f"frame folder {path} holds no frame images (extensions {sorted(exts)}); put the clip's frames "
            "there or drop the clip"
        )
    return files
