"""The room around a framed face: a cluttered wall, and the neck and shoulders below the head.

Drawing helpers of :mod:`cfer.data.synthetic.framed` (float32 RGB in [0, 1], OpenCV).
"""

from __future__ import annotations

import numpy as np

__all__ = ["wall", "body"]


def wall(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """A wall: the backdrop colour, a low-frequency texture and a few pieces of clutter."""
    import cv2

    texture = cv2.resize(rng.standard_normal((6, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = colour[None, None, :] * (1.0 + 0.025 * texture[..., None])
    img = np.ascontiguousarray(img, dtype=np.float32)
    for _ in range(int(rng.integers(2, 6))):
        kind = rng.integers(0, 4)
        col = np.clip(colour * rng.uniform(0.6, 1.3, 3), 0.02, 0.98).astype(np.float32)
        x0, y0 = int(rng.uniform(-0.1, 0.9) * w), int(rng.uniform(-0.1, 0.8) * h)
        if kind == 0:  # a picture: a frame with a different inside
            fw, fh = int(rng.uniform(0.12, 0.3) * w), int(rng.uniform(0.12, 0.3) * h)
            cv2.rectangle(img, (x0, y0), (x0 + fw, y0 + fh), col.tolist(), -1)
            b = max(2, fw // 10)
            inner = np.clip(col * rng.uniform(0.6, 1.5, 3), 0.02, 0.98)
            cv2.rectangle(img, (x0 + b, y0 + b), (x0 + fw - b, y0 + fh - b), inner.tolist(), -1)
        elif kind == 1:  # a door or window edge: a tall band to the floor
            fw = int(rng.uniform(0.08, 0.25) * w)
            cv2.rectangle(img, (x0, y0), (x0 + fw, h), col.tolist(), -1)
        elif kind == 2:  # a shelf: a thin horizontal band
            cv2.rectangle(img, (0, y0), (w, y0 + max(2, int(0.025 * h))), col.tolist(), -1)
        else:  # a lamp or clock
            r = int(rng.uniform(0.04, 0.1) * min(h, w))
            cv2.circle(img, (x0, y0), r, col.tolist(), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


def body(img: np.ndarray, rng: np.random.Generator, *, cx: float, chin: float, face_w: float,
          side: int, skin: np.ndarray, shirt: np.ndarray) -> None:
    """Draw the neck and shoulders below a head whose face ellipse ends at ``chin``."""
    import cv2

    h, w = img.shape[:2]
    top = chin + 0.04 * side
    shoulder_w = face_w * rng.uniform(1.35, 1.6)
    centre = (int(round(cx)), int(round(top + 0.45 * side)))
    axes = (int(round(shoulder_w)), int(round(0.42 * side)))
    cv2.ellipse(img, centre, axes, 0, 180, 360, shirt.tolist(), -1, cv2.LINE_AA)
    cv2.rectangle(img, (centre[0] - axes[0], centre[1]), (centre[0] + axes[0], h), shirt.tolist(), -1)
    neck_w = face_w * rng.uniform(0.2, 0.25)
    neck_top = chin - 0.35 * side
    y0, y1 = int(round(neck_top)), int(round(top + 0.12 * side))
    x0, x1 = int(round(cx - neck_w)), int(round(cx + neck_w))
    if y1 > y0 and x1 > x0:
        neck = skin * 0.85
        cv2.rectangle(img, (x0, y0), (x1, y1), neck.tolist(), -1)
        # V-neck opening, then the shadow the chin casts on the neck.
        pts = np.array([[x0, y1 - 1], [x1, y1 - 1], [int(round(cx)), int(round(y1 + 0.2 * side))]], np.int32)
        cv2.fillConvexPoly(img, pts, neck.tolist(), cv2.LINE_AA)
        ys = np.arange(max(y0, 0), min(int(round(chin + 0.12 * side)), h))
        if len(ys):
            fall = np.clip(1.0 - (ys - chin) / (0.12 * side), 0.0, 1.0)[:, None, None]
            xs = slice(max(x0, 0), max(min(x1 + 1, w), 0))
            img[ys, xs] *= 1.0 - 0.35 * fall
