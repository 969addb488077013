"""Write clips to disk as MP4 files with a CSV manifest.

:func:`export_clips` writes every clip of a :class:`~cfer.data.video.ClipSource` to
``out_dir/<class>/<subject>_<k>.mp4`` (``k`` counts a subject's clips of that class, three
digits): H.264 video (``libx264``, ``yuv420p``; ``mpeg4`` where the PyAV wheel has no
x264) at the clip's frame rate, with its audio as AAC (or MP3/Opus, whichever encoder
the wheel has), plus ``out_dir/manifest.csv`` with the columns ``path,label,subject`` and ``split`` when the
source has splits (``path`` relative to the manifest), which
:func:`cfer.data.video.read_clip_manifest` reads back.
Every file is encoded in memory and written atomically (:mod:`cfer.atomic`): a killed
export leaves whole files only.

Example:
    >>> import tempfile
    >>> from cfer.data.video.synthetic import SyntheticClipSource
    >>> src = SyntheticClipSource(classes=["happy", "awed"], n_subjects=1, per_class=1,
    ...                           frames=4, image_size=32)
    >>> manifest = export_clips(tempfile.mkdtemp(), source=src)
    >>> manifest.read_text().splitlines()[:2]
    ['path,label,subject', 'happy/s0000_000.mp4,happy,s0000']
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from cfer.atomic import write_bytes, write_text
from cfer.data.video.layout import ClipSource, RawClip
from cfer.data.video.preview import write_preview_gif

__all__ = ["export_clips", "encode_mp4", "synth_video_command", "MANIFEST"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
"""File name of the manifest :func:`export_clips` writes."""

_VIDEO_CODECS = ("libx264", "mpeg4")
_AUDIO_CODECS = ("aac", "libmp3lame", "libopus")


def _encoder(candidates: Sequence[str]) -> str | None:
    """The first codec in ``candidates`` this PyAV build can encode with."""
    import av

    for name in candidates:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises different errors for a missing encoder
            continue
        return name
    return None


def _codecs() -> tuple[str, str | None]:
    video = _encoder(_VIDEO_CODECS)
    if video is None:  # pragma: no cover - every PyAV wheel has mpeg4
        raise RuntimeError(f"this PyAV build has none of the video encoders {list(_VIDEO_CODECS)}; "
                           "reinstall it from the package registry (pip install av)")
    return video, _encoder(_AUDIO_CODECS)


def _even_rgb(frames: np.ndarray) -> np.ndarray:
    """Frames as RGB with even sides (yuv420p needs them): grey repeated, an odd side
    padded by repeating the last row or column."""
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    n, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frames)


def encode_mp4(clip: RawClip, *, video_codec: str | None = None, audio_codec: str | None = None,
               crf: int = 18) -> bytes:
    """Encode one clip as MP4 bytes (video, and audio when the clip has some).

    Args:
        clip: The clip (uint8 frames ``(n, H, W, C)``, optional mono audio).
        video_codec: Encoder name; default ``libx264``, or ``mpeg4`` without x264.
        audio_codec: Encoder name; default ``aac``, else ``libmp3lame`` or ``libopus``.
            Without any, the clip is written without sound and a warning is logged.
        crf: x264 quality (0 lossless ... 51 worst; 18 looks lossless).

    Returns:
        The MP4 file's bytes.

    Raises:
        ValueError: If the frames are not uint8 ``(n, H, W, 1|3)``.

    Example:
        >>> import numpy as np
        >>> clip = RawClip(frames=np.zeros((3, 16, 16, 3), np.uint8), fps=8.0)
        >>> encode_mp4(clip)[4:8]
        b'ftyp'
    """
    import av

    frames = np.asarray(clip.frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3) or len(frames) < 1:
        raise ValueError(f"clip frames must be uint8 (n, H, W, C) with C 1 or 3, got {frames.dtype} {frames.shape}")
    default_video, default_audio = _codecs()
    video_codec = video_codec or default_video
    has_audio = clip.audio is not None and clip.sample_rate is not None and len(clip.audio) > 0
    if has_audio:
        audio_codec = audio_codec or default_audio
        if audio_codec is None:
            logger.warning("this PyAV build has none of the audio encoders %s; writing video without sound",
                           list(_AUDIO_CODECS))
            has_audio = False
    frames = _even_rgb(frames)
    rate = Fraction(clip.fps).limit_denominator(1001)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        vs = out.add_stream(video_codec, rate=rate)
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = "yuv420p"
        if video_codec == "libx264":
            vs.options = {"crf": str(int(crf)), "preset": "medium"}
        else:
            vs.bit_rate = 2_000_000
        if has_audio:
            sr = int(clip.sample_rate)
            if audio_codec == "libopus" and sr not in (8000, 12000, 16000, 24000, 48000):
                sr = 48000
            aud = out.add_stream(audio_codec, rate=sr, layout="mono")
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if has_audio:
            wave = np.clip(np.asarray(clip.audio, np.float32), -1.0, 1.0)[None, :]
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave), format="flt", layout="mono")
            af.sample_rate = int(clip.sample_rate)
            af.pts = 0
            af.time_base = Fraction(1, int(clip.sample_rate))
            out.mux(aud.encode(af))
            out.mux(aud.encode(None))
    return buf.getvalue()


def export_clips(
    out_dir: str | os.PathLike,
    *,
    source: ClipSource,
    indices: Sequence[int] | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write clips as ``out_dir/<class>/<subject>_<k>.mp4`` and ``out_dir/manifest.csv``.

    Args:
        out_dir: Output folder; created if missing.
        source: A clip source with ``classes``, ``labels`` and ``subjects`` (and
            optionally ``splits``), e.g. :class:`~cfer.data.video.SyntheticClipSource`.
        indices: Clips to write (default: all), in this order.
        progress: Show a tqdm progress bar.
        overwrite: Write into a folder that is not empty (files of the same names are
            replaced; other files stay).

    Returns:
        The path of the manifest.

    Raises:
        ValueError: If ``out_dir`` is a file or not empty without ``overwrite``, if the
            source lacks labels or subjects, or if an index is out of range.

    Example:
        >>> import tempfile
        >>> from cfer.data.video.synthetic import SyntheticClipSource
        >>> src = SyntheticClipSource(classes=["sad"], n_subjects=2, per_class=1, frames=4, image_size=16)
        >>> export_clips(tempfile.mkdtemp(), source=src, indices=[1]).name
        'manifest.csv'
    """
    for attr in ("classes", "labels", "subjects"):
        if getattr(source, attr, None) is None:
            raise ValueError(f"source has no {attr!r}; export_clips needs a labelled source such as "
                             "cfer.data.video.SyntheticClipSource")
    n = len(source)
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"indices {bad[:5]} out of range for a source of {n} clips; use 0 .. {n - 1}")
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is a file; pass a folder to write the clips into")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise ValueError(f"{root} is not empty; pass an empty or new folder, or overwrite=True to write into it")
    root.mkdir(parents=True, exist_ok=True)
    video_codec, audio_codec = _codecs()
    splits = getattr(source, "splits", None)
    counter: dict[tuple[str, str], int] = {}
    rows = []
    it = idx
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(idx, desc="writing clips", unit="clip")
    for i in it:
        label = str(source.classes[int(source.labels[i])])
        subject = str(source.subjects[i])
        k = counter.get((label, subject), 0)
        counter[(label, subject)] = k + 1
        rel = Path(label) / f"{subject}_{k:03d}.mp4"
        data = encode_mp4(source.load(i), video_codec=video_codec, audio_codec=audio_codec)
        write_bytes(root / rel, data)
        rows.append([rel.as_posix(), label, subject] + ([] if splits is None else [str(splits[i])]))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "subject"] + ([] if splits is None else ["split"]))
    writer.writerows(rows)
    manifest = write_text(root / MANIFEST, buf.getvalue())
    logger.info("wrote %d clips (%s, %s) to %s", len(rows), video_codec, audio_codec or "no audio", root)
    return manifest


def synth_video_command(
    *,
    out: Path,
    subjects: int,
    per_class: int,
    frames: int,
    fps: int,
    image_size: int,
    grey: bool,
    seed: int,
    classes: str,
    preview: Path | None,
    progress: bool,
) -> dict:
    """What ``cfer synth --video --export DIR`` does: render synthetic clips and export them.

    Args:
        out: Output folder (must be empty or new).
        subjects: Number of people.
        per_class: Clips per class per person.
        frames: Frames per clip.
        fps: Frames per second.
        image_size: Side of the frames in pixels.
        grey: One channel instead of RGB.
        seed: Seed of everything.
        classes: ``"all"``, ``"basic"``, ``"compound"``, ``"basic+neutral"`` or
            comma-separated class names.
        preview: Also write a labelled preview GIF here (None: no preview).
        progress: Show progress bars.

    Returns:
        ``{"clips", "classes", "subjects", "out", "manifest", "preview", "video_codec",
        "audio_codec", "seconds"}``.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> s = synth_video_command(out=d / "clips", subjects=1, per_class=1, frames=4, fps=8,
        ...                         image_size=32, grey=False, seed=0, classes="happy,sad",
        ...                         preview=None, progress=False)
        >>> s["clips"], s["manifest"].endswith("manifest.csv")
        (2, True)
    """
    from cfer.data.video.synthetic import SyntheticClipSource

    start = time.perf_counter()
    spec = classes.strip()
    groups = {"all", "basic", "compound", "basic+neutral"}
    names: str | list[str] = spec if spec in groups else [c for c in (p.strip() for p in spec.split(",")) if c]
    source = SyntheticClipSource(
        classes=names, n_subjects=subjects, per_class=per_class, frames=frames, fps=fps,
        image_size=image_size, channels=1 if grey else 3, seed=seed,
    )
    manifest = export_clips(out, source=source, progress=progress)
    gif = None
    if preview is not None:
        gif = write_preview_gif(preview, source=source)
    video_codec, audio_codec = _codecs()
    return {
        "clips": len(source),
        "classes": len(source.classes),
        "subjects": int(subjects),
        "out": str(Path(out)),
        "manifest": str(manifest),
        "preview": None if gif is None else str(gif),
        "video_codec": video_codec,
        "audio_codec": audio_codec,
        "seconds": round(time.perf_counter() - start, 3),
    }
