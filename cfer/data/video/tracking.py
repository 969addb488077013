"""Point tracks for clips whose source has no landmarks, and image coordinates.

cfer has no facial landmarker, so :func:`track_points` gives a clip motion tracks: a
grid of points (:func:`grid_points`) followed through the clip with OpenCV's pyramidal
Lucas-Kanade optical flow. :func:`to_unit` turns pixel positions into the ``[-1, 1]``
image coordinates a :class:`~cfer.data.video.ClipLayout` packs.

Example:
    >>> frames = np.zeros((75, 48, 64, 3), np.uint8)
    >>> track_points(frames, points=16).shape
    (75, 16, 2)
"""

from __future__ import annotations

import math

import numpy as np

from cfer.data.video.decode import _check_count

__all__ = ["track_points", "grid_points", "to_unit"]


def grid_points(*, points: int, height: int, width: int) -> np.ndarray:
    """``points`` pixel positions ``(x, y)`` on a regular grid over a frame.

    The grid has ``round(sqrt(points))`` rows and enough columns; points sit at the
    cell centres and are taken row by row (16 points: a 4x4 grid).
    """
    rows = max(1, int(round(math.sqrt(points))))
    cols = math.ceil(points / rows)
    r, c = np.divmod(np.arange(points), cols)
    rows_used = int(r.max()) + 1
    x = (c + 0.5) / cols * width - 0.5
    y = (r + 0.5) / rows_used * height - 0.5
    return np.stack([x, y], axis=1).astype(np.float32)


def to_unit(xy: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """Pixel positions ``(..., 2)`` as ``[-1, 1]`` image coordinates (-1 and 1 are the
    centres of the first and last pixel), clipped to the frame."""
    scale = np.array([max(width - 1, 1), max(height - 1, 1)], np.float32)
    return np.clip(2.0 * np.asarray(xy, np.float32) / scale - 1.0, -1.0, 1.0).astype(np.float32)


def track_points(
    frames: np.ndarray,
    *,
    points: int = 16,
    window: int = 15,
    levels: int = 3,
) -> np.ndarray:
    """Follow a grid of points through a clip with pyramidal Lucas-Kanade flow.

    The points start on a regular grid over the first frame (:func:`grid_points`; 16
    points are a 4x4 grid) and are tracked frame to frame with
    ``cv2.calcOpticalFlowPyrLK``. A point the flow loses (status 0, e.g. on flat
    texture) stays where it was; points are kept inside the frame. On a face crop the
    tracks follow the face's motion; they are not anatomical landmarks.

    Args:
        frames: uint8 ``(n, H, W, C)`` (C 1 or 3) or ``(n, H, W)``.
        points: ``L``, points to track.
        window: Side of the Lucas-Kanade window in pixels (made odd, at most the
            frame's shorter side).
        levels: Pyramid levels above the frame (larger motions need more).

    Returns:
        float32 ``(n, L, 2)``, ``(x, y)`` in [-1, 1] image coordinates.

    Example:
        >>> frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 1), dtype=np.uint8)
        >>> track_points(frames, points=16).shape
        (3, 16, 2)
    """
    import cv2

    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}; convert with .astype(np.uint8)")
    if frames.ndim == 4 and frames.shape[-1] in (1, 3):
        grey = frames[..., 0] if frames.shape[-1] == 1 else None
    elif frames.ndim == 3:
        grey = frames
    else:
        raise ValueError(f"frames must be (n, H, W, C) with C 1 or 3, or (n, H, W); got shape {frames.shape}")
    _check_count("points", points, allow_none=False)
    _check_count("window", window, allow_none=False)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 0:
        raise ValueError(f"levels must be an int >= 0, got {levels!r}")
    n, height, width = frames.shape[:3]
    if n == 0:
        raise ValueError("frames is empty; track_points needs at least one frame")
    if grey is None:
        grey = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames])
    win = max(3, min(int(window), height, width))
    win -= 1 - win % 2  # odd
    pts = grid_points(points=points, height=height, width=width)
    out = np.empty((n, points, 2), np.float32)
    out[0] = pts
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    bounds = np.array([width - 1, height - 1], np.float32)
    for i in range(1, n):
        prev = np.ascontiguousarray(grey[i - 1])
        cur = np.ascontiguousarray(grey[i])
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(
            prev, cur, pts.reshape(-1, 1, 2), None, winSize=(win, win), maxLevel=int(levels), criteria=criteria
        )
        ok = (status.reshape(-1) == 1) & np.all(np.isfinite(nxt.reshape(-1, 2)), axis=1)
        pts = np.where(ok[:, None], nxt.reshape(-1, 2), pts)
        pts = np.clip(pts, 0.0, bounds).astype(np.float32)
        out[i] = pts
    return to_unit(out, height=height, width=width)
