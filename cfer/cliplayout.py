"""How a clip travels as one tensor: frames, plus a side plane for audio and landmarks.

Everything in cfer that moves samples around (Avalanche's datasets and replay buffers,
the distillation teacher, PSMR scoring, few-shot embeddings, DDP shards) moves one
tensor per sample. A clip has three streams of different shapes, so :class:`ClipLayout`
packs them into one float tensor ``(T + k, C, S, S)``:

* planes ``0 .. T-1`` are the ``T`` frames, ``C x S x S`` each, values in [0, 1];
* the ``k`` side planes (usually one) hold, flattened in this order: three presence
  flags (frames, audio, landmarks), the log-mel spectrogram ``(mel_bins, mel_steps)``
  and the landmark tracks ``(T, landmarks, 2)``; the rest is zero.

Temporal models (:mod:`cfer.models.temporal`) unpack it with :meth:`ClipLayout.unpack`.
Grad-CAM on a clip sees ``T`` frames through the frame encoder, so it returns one map
per frame. A missing stream is all zeros with its flag at 0: the model then leaves
that stream out of the fusion (modality dropout trains it to cope).

Example:
    >>> import torch
    >>> layout = ClipLayout(frames=4, image_size=16, channels=1, mel_bins=8, mel_steps=8, landmarks=3)
    >>> x = layout.pack(frames=torch.rand(4, 1, 16, 16), mel=torch.randn(8, 8))
    >>> tuple(x.shape), layout.planes
    ((5, 1, 16, 16), 5)
    >>> parts = layout.unpack(x[None])
    >>> parts.has_audio.tolist(), parts.has_landmarks.tolist(), tuple(parts.landmarks.shape)
    ([True], [False], (1, 4, 3, 2))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

__all__ = ["ClipLayout", "ClipParts", "RawClip", "ClipSource"]

_FLAGS = 3  # frames, audio, landmarks present


@dataclass(frozen=True)
class ClipParts:
    """A batch of clips unpacked into its streams.

    Attributes:
        frames: ``(B, T, C, S, S)`` in [0, 1].
        mel: ``(B, mel_bins, mel_steps)`` log-mel spectrogram (zeros where absent).
        landmarks: ``(B, T, L, 2)`` point positions, ``(x, y)`` in [-1, 1] image
            coordinates (zeros where absent).
        has_frames, has_audio, has_landmarks: ``(B,)`` bool presence flags.
    """

    frames: torch.Tensor
    mel: torch.Tensor
    landmarks: torch.Tensor
    has_frames: torch.Tensor
    has_audio: torch.Tensor
    has_landmarks: torch.Tensor


@dataclass(frozen=True)
class ClipLayout:
    """The shape of a packed clip.

    Attributes:
        frames: ``T``, frames per clip the model sees.
        image_size: ``S``, side of each square frame.
        channels: ``C``, 1 (grey) or 3 (RGB).
        mel_bins: Mel bands of the audio spectrogram.
        mel_steps: Time steps of the audio spectrogram.
        landmarks: ``L``, tracked points per frame.
    """

    frames: int = 8
    image_size: int = 64
    channels: int = 3
    mel_bins: int = 32
    mel_steps: int = 32
    landmarks: int = 16

    def __post_init__(self) -> None:
        for name in ("frames", "image_size", "mel_bins", "mel_steps", "landmarks"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"ClipLayout.{name} must be a positive int, got {v!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"ClipLayout.channels must be 1 (grey) or 3 (RGB), got {self.channels!r}")
        if self.image_size < 8:
            raise ValueError(f"ClipLayout.image_size must be >= 8 pixels, got {self.image_size}")

    # -- sizes -----------------------------------------------------------------------
    @property
    def side_values(self) -> int:
        """Numbers stored in the side planes (flags, spectrogram, landmark tracks)."""
        return _FLAGS + self.mel_bins * self.mel_steps + self.frames * self.landmarks * 2

    @property
    def side_planes(self) -> int:
        """``k``: planes needed after the frames for the side values."""
        return max(1, math.ceil(self.side_values / (self.channels * self.image_size ** 2)))

    @property
    def planes(self) -> int:
        """``T + k``: the first dimension of a packed clip."""
        return self.frames + self.side_planes

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Shape of one packed clip, ``(T + k, C, S, S)``."""
        return self.planes, self.channels, self.image_size, self.image_size

    def as_dict(self) -> dict[str, int]:
        """The fields as a plain dict (for model metadata and ``metrics.json``)."""
        return {k: int(getattr(self, k)) for k in
                ("frames", "image_size", "channels", "mel_bins", "mel_steps", "landmarks")}

    # -- packing ---------------------------------------------------------------------
    def pack(self, *, frames: torch.Tensor | None, mel: torch.Tensor | None = None,
             landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """One clip's streams as a packed float tensor ``(T + k, C, S, S)``.

        Args:
            frames: ``(T, C, S, S)`` floats in [0, 1], or None when the clip has no
                usable frames (they are then zeros and flagged absent).
            mel: ``(mel_bins, mel_steps)`` log-mel spectrogram, or None (no audio).
            landmarks: ``(T, L, 2)`` positions in [-1, 1], or None.

        Raises:
            ValueError: If a stream's shape does not match the layout.
        """
        T, C, S = self.frames, self.channels, self.image_size
        out = torch.zeros(self.shape, dtype=torch.float32)
        side = torch.zeros(self.side_planes * C * S * S, dtype=torch.float32)
        if frames is not None:
            _check_shape("frames", frames, (T, C, S, S))
            out[:T] = frames.float()
            side[0] = 1.0
        n_mel = self.mel_bins * self.mel_steps
        if mel is not None:
            _check_shape("mel", mel, (self.mel_bins, self.mel_steps))
            side[_FLAGS:_FLAGS + n_mel] = mel.float().reshape(-1)
            side[1] = 1.0
        if landmarks is not None:
            _check_shape("landmarks", landmarks, (T, self.landmarks, 2))
            start = _FLAGS + n_mel
            side[start:start + T * self.landmarks * 2] = landmarks.float().reshape(-1)
            side[2] = 1.0
        out[T:] = side.reshape(self.side_planes, C, S, S)
        return out

    def unpack(self, x: torch.Tensor) -> ClipParts:
        """Split a batch of packed clips ``(B, T + k, C, S, S)`` into its streams.

        Raises:
            ValueError: If ``x`` does not have the layout's shape.
        """
        if x.ndim != 5 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"expected packed clips of shape (B, {', '.join(map(str, self.shape))}) for {self}, "
                f"got {tuple(x.shape)}; build clips with the same ClipLayout as the model "
                "(cfer.data.video.ClipDataset(layout=model.clip_layout))"
            )
        B, T = x.shape[0], self.frames
        side = x[:, T:].reshape(B, -1)
        n_mel = self.mel_bins * self.mel_steps
        start = _FLAGS + n_mel
        return ClipParts(
            frames=x[:, :T],
            mel=side[:, _FLAGS:start].reshape(B, self.mel_bins, self.mel_steps),
            landmarks=side[:, start:start + T * self.landmarks * 2].reshape(B, T, self.landmarks, 2),
            has_frames=side[:, 0] > 0.5,
            has_audio=side[:, 1] > 0.5,
            has_landmarks=side[:, 2] > 0.5,
        )


def _check_shape(name: str, t: torch.Tensor, want: tuple[int, ...]) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != want:
        raise ValueError(f"{name} must have shape {want} for this ClipLayout, got {tuple(t.shape)}")


@dataclass(frozen=True)
class RawClip:
    """One decoded clip before sampling and packing.

    Attributes:
        frames: uint8 ``(n, H, W, C)``, every decoded frame (``n >= 1``).
        fps: Frames per second of ``frames``.
        audio: float32 mono waveform in [-1, 1], or None when the clip has no audio.
        sample_rate: Samples per second of ``audio`` (None without audio).
        landmarks: float32 ``(n, L, 2)`` point positions in [-1, 1] image coordinates,
            or None.
        regions: uint8 ``(n, H, W)`` region maps (0 none, ``k`` is
            ``taxonomy.REGIONS[k - 1]``), synthetic clips only; None otherwise.
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    landmarks: np.ndarray | None = None
    regions: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (what a bounded cache counts)."""
        return sum(int(a.nbytes) for a in (self.frames, self.audio, self.landmarks, self.regions) if a is not None)


class ClipSource(Protocol):
    """Where a :class:`cfer.data.video.ClipDataset` gets its clips: decoded on demand."""

    def __len__(self) -> int:
        """Number of clips."""

    def load(self, index: int) -> RawClip:
        """Decode (or render) clip ``index``."""
