"""Which frames of a clip the model sees: ``T`` indices out of ``n`` decoded frames.

* :func:`uniform_indices` (evaluation): the clip cut into ``T`` equal segments, the
  middle frame of each. The same clip always gives the same frames.
* :func:`random_crop_indices` (training): a random temporal window of at least
  ``min_span`` of the clip (and at least ``T`` frames when the clip has them), then
  uniform indices inside it. Short windows are faster motion, long ones the whole
  expression.

A clip with fewer than ``T`` frames is an error unless ``min_frames`` allows it; then
frames repeat evenly (``n = 3, T = 6`` gives ``0 0 1 1 2 2``). Landmarks, region maps
and the audio window follow the same indices (:class:`cfer.data.video.ClipDataset`
does this).

Example:
    >>> uniform_indices(10, frames=4).tolist()
    [1, 3, 6, 8]
    >>> uniform_indices(3, frames=6, min_frames=2).tolist()
    [0, 0, 1, 1, 2, 2]
"""

from __future__ import annotations

import math

import numpy as np

from cfer.data.video.decode import ClipError

__all__ = ["uniform_indices", "random_crop_indices"]


def _check(n: int, frames: int, min_frames: int | None, where: str | None) -> None:
    for name, v in (("n", n), ("frames", frames)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "n" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'n' else 'positive'} int, got {v!r}")
    if min_frames is not None and (
        isinstance(min_frames, bool) or not isinstance(min_frames, (int, np.integer)) or min_frames < 1
    ):
        raise ValueError(f"min_frames must be a positive int or None, got {min_frames!r}")
    need = frames if min_frames is None else min(int(min_frames), frames)
    if n < need:
        clip = f"clip {where}" if where else "clip"
        if n == 0:
            raise ClipError(f"{clip} has no frames; it cannot be sampled (fix or drop the clip)")
        raise ClipError(
            f"{clip} has {n} frames, fewer than T={frames}; lower ClipLayout.frames or pass min_frames={n} "
            "(or lower) to repeat frames in short clips"
        )


def _segment_centres(n: int, frames: int) -> np.ndarray:
    idx = np.floor((np.arange(frames) + 0.5) * n / frames).astype(np.int64)
    return np.minimum(idx, n - 1)


def uniform_indices(n: int, frames: int, *, min_frames: int | None = None, where: str | None = None) -> np.ndarray:
    """``frames`` evenly spaced frame indices over a clip of ``n`` frames.

    Args:
        n: Frames in the clip.
        frames: ``T``, frames to pick.
        min_frames: The fewest frames a clip may have; clips with ``min_frames <= n <
            frames`` repeat frames evenly. Default ``frames`` (no repeats).
        where: The clip's path or index, named in the error.

    Returns:
        int64 ``(frames,)``, non-decreasing, each in ``[0, n)``.

    Raises:
        ClipError: If the clip is shorter than allowed; the message says to lower
            ``ClipLayout.frames`` or pass ``min_frames``.

    Example:
        >>> uniform_indices(8, frames=4).tolist()
        [1, 3, 5, 7]
    """
    _check(n, frames, min_frames, where)
    return _segment_centres(int(n), int(frames))


def random_crop_indices(
    n: int,
    frames: int,
    *,
    rng: np.random.Generator,
    min_span: float = 0.5,
    min_frames: int | None = None,
    where: str | None = None,
) -> np.ndarray:
    """``frames`` indices from a random temporal window of the clip (for training).

    The window length is drawn uniformly between ``max(ceil(min_span * n), frames)``
    (capped at ``n``) and ``n`` frames, its start uniformly among the positions that
    keep it inside the clip; the indices are :func:`uniform_indices` inside it.

    Args:
        n: Frames in the clip.
        frames: ``T``, frames to pick.
        rng: The random generator (seed it for reproducible crops).
        min_span: Shortest window as a fraction of the clip, in (0, 1]; 1 turns the
            crop off.
        min_frames: As in :func:`uniform_indices`.
        where: The clip's path or index, named in the error.

    Returns:
        int64 ``(frames,)``, non-decreasing, each in ``[0, n)``.

    Raises:
        ClipError: If the clip is shorter than allowed.

    Example:
        >>> idx = random_crop_indices(100, frames=8, rng=np.random.default_rng(0))
        >>> len(idx), bool((np.diff(idx) >= 0).all()), 0 <= idx.min() and idx.max() < 100
        (8, True, True)
    """
    _check(n, frames, min_frames, where)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    if not (isinstance(min_span, (int, float)) and 0 < min_span <= 1):
        raise ValueError(f"min_span must be a fraction in (0, 1], got {min_span!r}")
    n, frames = int(n), int(frames)
    shortest = min(n, max(math.ceil(min_span * n), frames))
    length = int(rng.integers(shortest, n + 1))
    start = int(rng.integers(0, n - length + 1))
    return start + _segment_centres(length, frames)
