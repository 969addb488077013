"""Landmark points read off rendered region maps: centroids and extreme points of the regions.

:func:`landmarks_from_regions` reads ``L`` points per frame (:data:`LANDMARK_NAMES`) off
the region map :class:`cfer.data.synthetic.FaceRenderer` draws beside each frame
(centroids and extreme points of mouth, brows, eyes, nose, chin, cheeks, forehead), so
in a synthetic clip (:class:`cfer.data.video.synthetic.SyntheticClipSource`) they move
with the AUs (mouth corners with AU12/AU20, brows with AU1/2/4, mouth bottom and chin
with AU26) and with the head.

Example:
    >>> import numpy as np
    >>> blank = np.zeros((1, 8, 8), np.uint8)  # no face: every point falls back to the centre
    >>> landmarks_from_regions(blank, points=2).tolist()
    [[[0.0, 0.0], [0.0, 0.0]]]
"""

from __future__ import annotations

import numpy as np

from cfer import taxonomy

__all__ = ["LANDMARK_NAMES", "landmarks_from_regions"]

LANDMARK_NAMES: tuple[str, ...] = (
    "mouth_left", "mouth_right", "mouth_top", "mouth_bottom",
    "brow_left", "brow_right", "eye_left", "eye_right",
    "nose_tip", "chin", "eye_left_top", "eye_right_top",
    "cheek_left", "cheek_right", "nose", "forehead",
)
"""The 16 points :func:`landmarks_from_regions` reads, in order (left = image left).
Fewer points keep the first ``L``; more repeat the list cyclically."""


# (region, side, which): side None = whole region, "l"/"r" = the part left/right of the midline;
# which "c" = centroid, "-x"/"+x"/"-y"/"+y" = extreme point (its other coordinate is the mean
# over the pixels at the extreme).
_SPEC = (
    ("mouth", None, "-x"), ("mouth", None, "+x"), ("mouth", None, "-y"), ("mouth", None, "+y"),
    ("brows", "l", "c"), ("brows", "r", "c"), ("eyes", "l", "c"), ("eyes", "r", "c"),
    ("nose", None, "+y"), ("chin", None, "c"), ("eyes", "l", "-y"), ("eyes", "r", "-y"),
    ("cheeks", "l", "c"), ("cheeks", "r", "c"), ("nose", None, "c"), ("forehead", None, "c"),
)


def _extreme(m: np.ndarray, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame extreme point of a mask ``(n, H, W)``: ``(x, y, empty)``; the coordinate
    across the extreme is the mean over the mask's pixels on the extreme row or column."""
    n, H, W = m.shape
    if which[1] == "x":
        m = m.transpose(0, 2, 1)  # extremes of columns: work on (n, W, H)
    lines = m.any(axis=2)  # (n, lines) which rows (or columns) hold any pixel
    size = lines.shape[1]
    edge = np.argmax(lines, axis=1) if which[0] == "-" else size - 1 - np.argmax(lines[:, ::-1], axis=1)
    at = m[np.arange(n), edge]  # (n, across) the pixels on that line
    across = (at * np.arange(at.shape[1])).sum(axis=1) / np.maximum(at.sum(axis=1), 1)
    empty = ~lines.any(axis=1)
    edge = edge.astype(np.float64)
    return (edge, across, empty) if which[1] == "x" else (across, edge, empty)


def landmarks_from_regions(regions: np.ndarray, *, points: int = 16) -> np.ndarray:
    """Landmark points read off region maps: centroids and extreme points of the regions.

    The points are :data:`LANDMARK_NAMES`; "left" and "right" split a region at the
    nose's centroid column (the face's midline). A point whose region is missing from a
    frame (out of the image, occluded) is the centroid of the face instead, or the image
    centre. Coordinates are ``(x, y)`` pixel centres mapped to [-1, 1].

    Args:
        regions: uint8 ``(n, H, W)`` region maps (``k`` is ``taxonomy.REGIONS[k - 1]``).
        points: ``L``; fewer than 16 keep the first ``L``, more repeat them cyclically.

    Returns:
        float32 ``(n, L, 2)``.

    Raises:
        ValueError: If ``regions`` is not 3-D or ``points`` < 1.

    Example:
        >>> from cfer.data.synthetic import FaceRenderer, SynthConfig
        >>> _, reg = FaceRenderer(config=SynthConfig(image_size=32)).render_prototype(cls="happy")
        >>> landmarks_from_regions(reg[None]).shape
        (1, 16, 2)
    """
    regions = np.asarray(regions)
    if regions.ndim != 3:
        raise ValueError(f"regions must be (n, H, W) region maps, got shape {regions.shape}; "
                         "add a leading axis for one map (regions[None])")
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 1:
        raise ValueError(f"points must be an int >= 1, got {points!r}")
    points = int(points)
    n, H, W = regions.shape
    n_codes = len(taxonomy.REGIONS) + 1
    ys, xs = np.divmod(np.arange(H * W, dtype=np.float64), W)
    flat = regions.reshape(n, H * W).astype(np.int64)
    frame = np.arange(n)[:, None] * n_codes

    def sums(key: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        count = np.bincount(key.ravel(), minlength=groups)
        sx = np.bincount(key.ravel(), weights=np.broadcast_to(xs, key.shape).ravel(), minlength=groups)
        sy = np.bincount(key.ravel(), weights=np.broadcast_to(ys, key.shape).ravel(), minlength=groups)
        return count, sx, sy

    # Pass 1: whole regions, for the face centroid (fallback) and the midline (nose centroid).
    count, sx, sy = (a.reshape(n, n_codes) for a in sums(flat + frame, n * n_codes))
    face_n = count[:, 1:].sum(axis=1)
    fx = np.where(face_n > 0, sx[:, 1:].sum(axis=1) / np.maximum(face_n, 1), (W - 1) / 2)
    fy = np.where(face_n > 0, sy[:, 1:].sum(axis=1) / np.maximum(face_n, 1), (H - 1) / 2)
    nose_k = taxonomy.REGIONS.index("nose") + 1
    mid = np.where(count[:, nose_k] > 0, sx[:, nose_k] / np.maximum(count[:, nose_k], 1), fx)
    # Pass 2: each region split at the midline (side 0 left, 1 right).
    right = (xs[None, :] >= mid[:, None]).astype(np.int64)
    key = (flat + frame) * 2 + right
    c2, sx2, sy2 = (a.reshape(n, n_codes, 2) for a in sums(key, n * n_codes * 2))
    masks: dict[str, np.ndarray] = {}
    out = np.zeros((n, len(_SPEC), 2), np.float64)
    for p, (region, side, which) in enumerate(_SPEC):
        k = taxonomy.REGIONS.index(region) + 1
        if which == "c":
            sl = slice(None) if side is None else slice(0, 1) if side == "l" else slice(1, 2)
            cnt = c2[:, k, sl].sum(axis=1)
            x = sx2[:, k, sl].sum(axis=1) / np.maximum(cnt, 1)
            y = sy2[:, k, sl].sum(axis=1) / np.maximum(cnt, 1)
            empty = cnt == 0
        else:
            name = region + ("" if side is None else side)
            if name not in masks:
                m = regions == k
                if side is not None:
                    m = m & ((right.reshape(n, H, W) == 0) if side == "l" else (right.reshape(n, H, W) == 1))
                masks[name] = m
            x, y, empty = _extreme(masks[name], which)
        out[:, p, 0] = np.where(empty, fx, x)
        out[:, p, 1] = np.where(empty, fy, y)
    out[..., 0] = (out[..., 0] + 0.5) / W * 2 - 1
    out[..., 1] = (out[..., 1] + 0.5) / H * 2 - 1
    take = np.arange(points) % len(_SPEC)
    return np.ascontiguousarray(out[:, take], dtype=np.float32)
