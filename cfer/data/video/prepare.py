"""Preparing a decoded clip for packing, once per clip: what a clip cache holds.

:func:`prepare_clip` turns a :class:`~cfer.data.video.layout.RawClip` into a
:class:`PreparedClip`:

* **Face crop** (with a :class:`cfer.data.faces.FaceCropper`): one face box found on
  the *middle* frame and applied to all frames, so the crop does not jitter. A clip
  with no face there keeps its whole frames (reported as missing ``"face"``).
* **Frames** converted to the layout's channels (grey or RGB) and resized to
  ``S x S`` (``cv2.INTER_AREA``); region maps follow with nearest-neighbour resizing.
* **Landmarks** from the source, moved into the crop, or, when it has none,
  :func:`~cfer.data.video.tracking.track_points` on the prepared frames.
* **Audio**, mono float32 with the whole clip's log-mel
  (:func:`~cfer.data.video.audio.log_mel`); a clip without audio is reported as
  missing ``"audio"``.

:func:`clip_mel` is the log-mel an item packs: the whole clip's (evaluation) or that
of the audio under the sampled frames (training).

Example:
    >>> import numpy as np
    >>> from cfer.data.video.layout import ClipLayout, RawClip
    >>> layout = ClipLayout(frames=4, image_size=16, mel_bins=8, mel_steps=8, landmarks=4)
    >>> raw = RawClip(frames=np.zeros((6, 20, 20, 3), np.uint8), fps=25.0)
    >>> clip = prepare_clip(raw, layout=layout, cropper=None, where="#0", missing=print)
    audio
    >>> clip.frames.shape, clip.landmarks.shape
    ((6, 16, 16, 3), (6, 4, 2))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from cfer.data.faces import FaceCropper, NoFaceFoundError
from cfer.data.video.audio import log_mel
from cfer.data.video.decode import ClipError
from cfer.data.video.layout import ClipLayout, RawClip
from cfer.data.video.tracking import to_unit, track_points

__all__ = ["PreparedClip", "prepare_clip", "clip_landmarks", "clip_mel"]


@dataclass(frozen=True)
class PreparedClip:
    """One clip after crop, channel conversion and resize (what the cache holds)."""

    frames: np.ndarray  # uint8 (n, S, S, C)
    landmarks: np.ndarray  # float32 (n, L, 2) in [-1, 1]
    regions: np.ndarray | None  # uint8 (n, S, S)
    audio: np.ndarray | None
    sample_rate: int | None
    fps: float
    mel: torch.Tensor | None  # the whole clip's log-mel

    @property
    def nbytes(self) -> int:
        arrays = (self.frames, self.landmarks, self.regions, self.audio)
        return sum(int(a.nbytes) for a in arrays if a is not None) + (
            0 if self.mel is None else self.mel.numel() * 4)


def prepare_clip(raw: RawClip, *, layout: ClipLayout, cropper: FaceCropper | None, where: str,
                 missing: Callable[[str], None]) -> PreparedClip:
    """Crop, convert and resize a decoded clip's frames, regions, landmarks and audio.

    Args:
        raw: The decoded clip.
        layout: The packed shape: size ``S``, channels, landmarks, mel bins and steps.
        cropper: Crops the face found on the middle frame; None keeps whole frames.
        where: The clip, as error messages name it.
        missing: Called with ``"face"`` when the cropper finds no face, and with
            ``"audio"`` when the clip has no audio.

    Raises:
        ClipError: If the frames, regions, landmarks or audio are malformed (the
            message names the clip and says to fix the ClipSource).
        ValueError: If the source gives another number of landmarks than the layout.
    """
    import cv2

    frames = np.asarray(raw.frames)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or frames.dtype != np.uint8 or len(frames) == 0:
        raise ClipError(f"clip {where}: frames must be uint8 (n, H, W, C) with n >= 1 and C 1 or 3, got "
                        f"{frames.dtype} {frames.shape}; fix the ClipSource")
    n, H, W, _ = frames.shape
    top, left, bottom, right = 0, 0, H, W
    if cropper is not None:
        try:
            top, left, bottom, right = cropper.box(frames[n // 2], source=f"clip {where} frame {n // 2}")
        except NoFaceFoundError:
            missing("face")
    S, C = layout.image_size, layout.channels
    out = np.empty((n, S, S, C), np.uint8)
    for i in range(n):
        f = frames[i, top:bottom, left:right]
        if C == 1 and f.shape[-1] == 3:
            f = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY)
        elif C == 3 and f.shape[-1] == 1:
            f = np.repeat(f, 3, axis=-1)
        f = cv2.resize(np.ascontiguousarray(f), (S, S), interpolation=cv2.INTER_AREA)
        out[i] = f.reshape(S, S, C)
    regions = None
    if raw.regions is not None:
        reg = np.asarray(raw.regions)
        if reg.shape != (n, H, W):
            raise ClipError(f"clip {where}: regions must have shape {(n, H, W)} like the frames, got {reg.shape}; "
                            "fix the ClipSource")
        regions = np.stack([cv2.resize(np.ascontiguousarray(r[top:bottom, left:right]).astype(np.uint8), (S, S),
                                       interpolation=cv2.INTER_NEAREST) for r in reg])
    landmarks = clip_landmarks(raw, out, points=layout.landmarks, box=(top, left, bottom, right), size=(H, W),
                               where=where)
    audio, rate, mel = None, None, None
    if raw.audio is not None and np.asarray(raw.audio).size > 0:
        if not raw.sample_rate:
            raise ClipError(f"clip {where}: audio without a sample_rate; fix the ClipSource")
        audio = np.asarray(raw.audio, np.float32).reshape(-1)
        rate = int(raw.sample_rate)
        mel = torch.from_numpy(log_mel(audio, sample_rate=rate, mel_bins=layout.mel_bins,
                                       mel_steps=layout.mel_steps))
    else:
        missing("audio")
    fps = float(raw.fps) if raw.fps and raw.fps > 0 else 25.0
    return PreparedClip(frames=out, landmarks=landmarks, regions=regions, audio=audio, sample_rate=rate, fps=fps,
                        mel=mel)


def clip_landmarks(raw: RawClip, frames: np.ndarray, *, points: int, box: tuple[int, int, int, int],
                   size: tuple[int, int], where: str) -> np.ndarray:
    """The ``(n, L, 2)`` landmarks of the prepared ``frames`` in [-1, 1]: the source's,
    moved into the crop ``box`` (top, left, bottom, right) of the ``size`` (H, W) raw
    frames, or when the source has none, :func:`track_points` on ``frames``."""
    L = points
    if raw.landmarks is None:
        return track_points(frames, points=L)
    pts = np.asarray(raw.landmarks, np.float32)
    if pts.ndim != 3 or pts.shape[0] != len(frames) or pts.shape[2] != 2:
        raise ClipError(f"clip {where}: landmarks must have shape (n={len(frames)}, L, 2), got {pts.shape}; "
                        "fix the ClipSource")
    if pts.shape[1] != L:
        raise ValueError(f"clip {where}: the source gives {pts.shape[1]} landmarks per frame but the layout has "
                         f"landmarks={L}; build the ClipLayout with landmarks={pts.shape[1]}")
    top, left, bottom, right = box
    H, W = size
    if (top, left, bottom, right) == (0, 0, H, W):
        return np.clip(pts, -1.0, 1.0)
    px = (pts + 1.0) / 2.0 * np.array([max(W - 1, 1), max(H - 1, 1)], np.float32)
    px -= np.array([left, top], np.float32)
    return to_unit(px, height=bottom - top, width=right - left)


def clip_mel(clip: PreparedClip, idx: np.ndarray, *, train: bool, layout: ClipLayout) -> torch.Tensor | None:
    """The log-mel packed with frames ``idx`` of ``clip``: None without audio; the whole
    clip's in evaluation (``train=False``); in training that of the audio under the
    frames, or None when the audio ends before them."""
    if clip.audio is None:
        return None
    if not train:
        return clip.mel
    start = int(round(idx[0] / clip.fps * clip.sample_rate))
    stop = int(round((idx[-1] + 1) / clip.fps * clip.sample_rate))
    window = clip.audio[start:stop]
    if window.size == 0:  # the audio ends before these frames
        return None
    return torch.from_numpy(log_mel(window, sample_rate=clip.sample_rate, mel_bins=layout.mel_bins,
                                    mel_steps=layout.mel_steps))
