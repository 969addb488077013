"""Synthetic faces placed into larger, photo-like frames: a fixture that needs face cropping.

:func:`render_framed_faces` renders faces with :func:`cfer.data.synthetic.render_faces`
and draws each one, at a seeded random position and mild random scale, into a larger
frame: a wall in the subject's backdrop colour with a lighting gradient, texture and
clutter (pictures, a door, a shelf, a lamp), the person's neck and shoulders, and the
head itself with photo shading. Every frame keeps the true box of its face, so a face
detector can be scored against it. :func:`export_photo_folder` writes the frames as
JPEG files in the ImageFolder layout that :func:`cfer.data.readers.read_image_folder`
reads with ``crop_faces=PHOTO_CROPPER``.

The true box is the square the synthetic face was rendered into: the crop that gives
back the renderer's own framing.

Why the shading: the renderer's faces are flat cartoons. A Haar cascade finds a face
mainly by a dark eye band above brighter cheeks and a brighter nose bridge, which a
photographed face gets from the shadow in its eye sockets. A flat face with white
sclera on dark skin has no such band: flat faces pasted into a grey frame were found
only 40-58% of the time, and some dark-skinned subjects never. So the head is shaded
like a rounded, lit face (rim darkening, eye-socket shadow, a sheen on nose, brow ridge
and cheekbones), drawn from the renderer's region map. The detector is never given the
true box. With :data:`PHOTO_CROPPER` over 3,360 frames of all 21 expression classes
and 160 subjects, 99.5% of faces were found and 99.4% of crops overlap the true box with
IoU >= 0.5 (``benchmarks/framed_detection.py``; ``docs/datasets.md``).

Example:
    >>> from cfer.data.synthetic.framed import PHOTO_CROPPER, render_framed_faces
    >>> photos = render_framed_faces(classes=["happy", "sad"], n_subjects=2, per_class=1, seed=0)
    >>> photos.images.shape, photos.boxes.shape
    ((4, 240, 320, 3), (4, 4))
    >>> top, left, bottom, right = PHOTO_CROPPER.box(photos.images[0])
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cfer import taxonomy
from cfer.data.faces import FaceCropper
from cfer.data.synthetic.dataset import SyntheticFaces, render_faces
from cfer.data.synthetic.scene import body, wall

__all__ = ["FramedFaces", "PHOTO_CROPPER", "render_framed_faces", "export_photo_folder", "box_iou"]

logger = logging.getLogger(__name__)

#: The face cropper for these frames: the alt2 cascade finds far more of them than the
#: default one; ``min_neighbors=3`` is OpenCV's own default; ``margin=0.05`` because the
#: Haar box already spans nearly the whole synthetic head. ``FaceCropper``'s defaults
#: (meant for real photos) are unchanged.
PHOTO_CROPPER = FaceCropper(margin=0.05, min_neighbors=3, cascade="haarcascade_frontalface_alt2.xml")

# Photo shading at shading=1 (calibrated with benchmarks/framed_detection.py).
_RIM, _SOCKET, _SHEEN = 0.5, 0.6, 0.1
_NOSE = taxonomy.REGIONS.index("nose") + 1
_EYES = taxonomy.REGIONS.index("eyes") + 1
_CHEEKS = taxonomy.REGIONS.index("cheeks") + 1
_FOREHEAD = taxonomy.REGIONS.index("forehead") + 1


@dataclass(frozen=True, eq=False)
class FramedFaces:
    """Photo-like frames, each holding one synthetic face, with the face's true box.

    Attributes:
        images: uint8 RGB frames ``(N, H, W, 3)``.
        boxes: int64 ``(N, 4)`` true face boxes ``(top, left, bottom, right)`` in pixels
            (bottom and right exclusive): the square the face was rendered into.
        labels: int64 ``(N,)`` indices into ``classes``.
        classes: Canonical class names.
        subjects: ``N`` subject ids (``"s0000"``...; the same ids as the faces).
        faces: The :class:`~cfer.data.synthetic.SyntheticFaces` that were framed
            (rendered at ``face_size``), with their AUs and region maps.
    """

    images: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    subjects: tuple[str, ...]
    faces: SyntheticFaces

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        h, w = self.frame_size
        return (f"FramedFaces({len(self)} frames of {h}x{w}, {len(self.classes)} classes, "
                f"{len(set(self.subjects))} subjects)")

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(height, width)`` of the frames."""
        return int(self.images.shape[1]), int(self.images.shape[2])


def box_iou(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Intersection over union of two boxes ``(top, left, bottom, right)``.

    Example:
        >>> box_iou((0, 0, 10, 10), (0, 5, 10, 15))
        0.3333333333333333
    """
    t, lft, btm, r = (float(v) for v in a)
    t2, l2, btm2, r2 = (float(v) for v in b)
    inter = max(0.0, min(btm, btm2) - max(t, t2)) * max(0.0, min(r, r2) - max(lft, l2))
    union = (btm - t) * (r - lft) + (btm2 - t2) * (r2 - l2) - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------------------
# drawing helpers (float32 RGB in [0, 1])
# --------------------------------------------------------------------------------------
def _blurred(mask: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    out = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), float(sigma))
    peak = float(out.max())
    return out / peak if peak > 0 else out


def _backdrop_plane(face: np.ndarray) -> np.ndarray:
    """The rendered square's backdrop as a plane per channel, fitted on its side columns.

    The renderer's backdrop is one colour times a linear lighting gradient, and its side
    columns never hold the head, so a least-squares plane through them models it.
    """
    s = face.shape[0]
    k = max(2, s // 24)
    ys, xs = np.mgrid[0:s, 0:s]
    side = np.zeros((s, s), bool)
    side[:, :k] = side[:, -k:] = True
    a = np.stack([np.ones(side.sum()), xs[side] / s, ys[side] / s], 1)
    coef, *_ = np.linalg.lstsq(a, face[side].reshape(-1, 3), rcond=None)
    grid = np.stack([np.ones(s * s), xs.ravel() / s, ys.ravel() / s], 1)
    return (grid @ coef).reshape(s, s, 3).astype(np.float32)


def _head(face: np.ndarray, regions: np.ndarray, *, shading: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Shade a rendered face like a photographed head and cut it from its backdrop.

    Returns the shaded face, its alpha (face, hair and fringe) and the face ellipse.
    """
    import cv2

    s = face.shape[0]
    ys, xs = np.nonzero(regions > 0)
    hull = cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32))
    (cx, cy), (w, h), angle = cv2.fitEllipse(hull)
    gy, gx = np.mgrid[0:s, 0:s].astype(np.float32)
    t = math.radians(angle)
    dx, dy = gx - cx, gy - cy
    u = (math.cos(t) * dx + math.sin(t) * dy) / (w / 2)
    v = (-math.sin(t) * dx + math.cos(t) * dy) / (h / 2)
    inside = np.zeros((s, s), np.uint8)
    cv2.fillConvexPoly(inside, hull, 1)
    # One pixel in from the hull: the face's rim pixels are blended with the backdrop.
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8))
    face_a = _blurred(inside, 0.6 + 0.006 * s)

    # Photo shading. A rounded face darkens towards its rim and its eye sockets lie in
    # shadow (multiplicative); skin reflects a sheen on the nose, the brow ridge and the
    # cheekbones that does not depend on its tone (additive).
    rim = 1.0 - np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
    sockets = _blurred(regions == _EYES, 0.03 * s)
    gain = (1.0 - _RIM * shading * rim) * (1.0 - _SOCKET * shading * sockets)
    gain = face_a * gain + (1.0 - face_a)
    nose = _blurred(regions == _NOSE, 0.03 * s)
    brow_ridge = _blurred(regions == _FOREHEAD, 0.06 * s)
    cheekbones = _blurred((regions == _CHEEKS) & (v < 0.2), 0.04 * s)
    sheen = np.maximum(np.maximum(nose, 0.8 * brow_ridge), 0.7 * cheekbones) * face_a
    shaded = face * gain[..., None] + (_SHEEN * shading) * sheen[..., None]

    # Hair and fringe: above the eyes, inside a widened ellipse, off the backdrop colour.
    plane = _backdrop_plane(face)
    off = np.abs(face - plane).max(-1)
    widened = (u / 1.18) ** 2 + (v / 1.22) ** 2 < 1.0
    hair = np.clip((off - 0.05) / 0.06, 0.0, 1.0) * widened * (v < -0.2)
    hair_a = cv2.GaussianBlur(hair.astype(np.float32), (0, 0), 0.6 + 0.004 * s)
    alpha = np.maximum(face_a, hair_a)
    return shaded, alpha, dict(cx=cx, cy=cy, w=w, h=h, backdrop=plane[s // 2, s // 2].copy())


def _skin(face: np.ndarray, regions: np.ndarray) -> np.ndarray:
    for k in (_CHEEKS, _FOREHEAD):
        m = regions == k
        if m.sum() >= 8:
            return np.median(face[m], axis=0).astype(np.float32)
    return np.median(face[regions > 0], axis=0).astype(np.float32)


def _frame(image: np.ndarray, regions: np.ndarray, *, rng: np.random.Generator, h: int, w: int, gx: np.ndarray,
           gy: np.ndarray, face_size: int, scale_jitter: float, shading: float,
           shirt: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Draw one rendered face into a new frame; returns the frame and the face's box."""
    import cv2

    side = int(round(face_size * rng.uniform(1.0 - scale_jitter, 1.0 + scale_jitter)))
    side = min(side, h, w)
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    face = image.astype(np.float32) / 255.0
    if side != face_size:
        shrink = cv2.INTER_AREA if side < face_size else cv2.INTER_LINEAR
        face = cv2.resize(face, (side, side), interpolation=shrink)
        regions = cv2.resize(regions, (side, side), interpolation=cv2.INTER_NEAREST)
    shaded, alpha, ell = _head(face, regions, shading=float(shading))
    frame = wall(rng, h, w, np.clip(ell["backdrop"], 0.03, 0.97))
    body(frame, rng, cx=left + ell["cx"], chin=top + ell["cy"] + ell["h"] / 2, face_w=ell["w"], side=side,
          skin=_skin(face, regions), shirt=shirt)
    window = frame[top:top + side, left:left + side]
    window += alpha[..., None] * (shaded - window)
    # Camera: lighting across the frame, vignette, optics blur, sensor noise.
    phi, amp = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.25)
    light = 1.0 + amp * (math.cos(phi) * gx + math.sin(phi) * gy) - rng.uniform(0.0, 0.2) * 0.5 * (gx**2 + gy**2)
    frame *= light[..., None]
    frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.4, 0.8))
    frame += rng.normal(0.0, rng.uniform(0.004, 0.012), frame.shape).astype(np.float32)
    return np.clip(frame * 255.0 + 0.5, 0, 255).astype(np.uint8), (top, left, top + side, left + side)


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def _frame_size(frame_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(frame_size, (int, np.integer)):
        frame_size = (int(frame_size), int(frame_size))
    try:
        h, w = (int(v) for v in frame_size)
    except (TypeError, ValueError):
        raise ValueError(f"frame_size must be an int or (height, width), got {frame_size!r}") from None
    if h < 32 or w < 32 or (h, w) != tuple(frame_size):
        raise ValueError(f"frame_size must be whole pixels >= 32, got {frame_size!r}; e.g. (240, 320)")
    return h, w


def render_framed_faces(
    *,
    classes: Sequence[str] | str | None = None,
    n_subjects: int = 4,
    per_class: int = 1,
    face_size: int = 96,
    frame_size: int | tuple[int, int] = (240, 320),
    scale_jitter: float = 0.15,
    shading: float = 1.0,
    difficulty: float = 1.0,
    seed: int = 0,
    first_subject: int = 0,
    progress: bool = False,
) -> FramedFaces:
    """Render synthetic faces and draw each into a larger photo-like frame.

    Each face is rendered at ``face_size``, scaled by a random factor in
    ``[1 - scale_jitter, 1 + scale_jitter]`` and drawn at a random position that keeps
    it inside the frame, over a wall in the subject's backdrop colour with a lighting
    gradient and clutter, with neck and shoulders below it. The whole frame then gets a
    lighting gradient, a vignette, a slight blur and sensor noise. A subject's faces and
    frames depend only on ``(seed, subject)``, as in :func:`~cfer.data.synthetic.render_faces`.

    Args:
        classes: Class names, or ``"basic"``, ``"compound"``, ``"basic+neutral"``,
            ``"all"`` (default: all 22).
        n_subjects: Number of identities.
        per_class: Faces of each class per subject.
        face_size: Side of the rendered face square in pixels (before the scale jitter).
        frame_size: ``(height, width)`` of the frames, or an int for square frames.
        scale_jitter: Relative spread of the face's size in the frame, in ``[0, 0.5)``.
        shading: Strength of the photo shading of the head (rim darkening, eye-socket
            shadow, sheen); 1 is the calibrated default, 0 keeps the renderer's flat faces.
        difficulty: The renderer's nuisance scale (see :class:`~cfer.data.synthetic.SynthConfig`).
        seed: Seed for faces and frames (private generators; the global RNG is untouched).
        first_subject: Id of the first subject.
        progress: Show a tqdm progress bar.

    Returns:
        A :class:`FramedFaces` with ``n_subjects * len(classes) * per_class`` frames.

    Raises:
        ValueError: If the scaled face does not fit into the frame, or for bad sizes.

    Example:
        >>> photos = render_framed_faces(classes="basic", n_subjects=1, per_class=1, seed=3)
        >>> len(photos), photos.frame_size
        (6, (240, 320))
    """
    h, w = _frame_size(frame_size)
    if not isinstance(face_size, (int, np.integer)) or not 32 <= face_size <= 512:
        raise ValueError(f"face_size must be an int in [32, 512] pixels, got {face_size!r}")
    if not 0.0 <= float(scale_jitter) < 0.5:
        raise ValueError(f"scale_jitter must lie in [0, 0.5) (0.15 is the default), got {scale_jitter!r}")
    if not 0.0 <= float(shading) <= 2.0:
        raise ValueError(f"shading must lie in [0, 2] (1 is the default, 0 is flat), got {shading!r}")
    largest = int(math.ceil(face_size * (1.0 + float(scale_jitter))))
    if largest > min(h, w):
        raise ValueError(
            f"face_size {face_size} with scale_jitter {scale_jitter} gives faces up to {largest} px, larger "
            f"than the frame {(h, w)}; use a frame_size of at least ({largest}, {largest}) or a smaller face_size"
        )
    faces = render_faces(classes=classes, n_subjects=n_subjects, per_class=per_class, image_size=int(face_size),
                         difficulty=difficulty, seed=seed, first_subject=first_subject)
    n = len(faces)
    per_subject = n // n_subjects
    images = np.empty((n, h, w, 3), np.uint8)
    boxes = np.empty((n, 4), np.int64)
    subjects = range(n_subjects)
    if progress:
        from tqdm.auto import tqdm

        subjects = tqdm(subjects, desc="framing faces", unit="subject")
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = (gx + 0.5) / w * 2 - 1, (gy + 0.5) / h * 2 - 1
    for j in subjects:
        # One private stream per subject: its frames do not depend on the other subjects.
        rng = np.random.default_rng([seed, 7, first_subject + j])
        shirt = (rng.uniform(0.1, 0.8) * rng.uniform(0.5, 1.0, 3)).astype(np.float32)
        for i in range(j * per_subject, (j + 1) * per_subject):
            images[i], boxes[i] = _frame(faces.images[i], faces.region_map[i], rng=rng, h=h, w=w, gx=gx, gy=gy,
                                         face_size=int(face_size), scale_jitter=float(scale_jitter),
                                         shading=float(shading), shirt=shirt)
    logger.debug("framed %d faces of %d px into %dx%d frames", n, face_size, h, w)
    return FramedFaces(images=images, boxes=boxes, labels=faces.labels.copy(), classes=faces.classes,
                       subjects=tuple(str(s) for s in faces.subjects), faces=faces)


def export_photo_folder(
    root: str | os.PathLike,
    *,
    photos: FramedFaces,
    quality: int = 90,
    overwrite: bool = False,
) -> int:
    """Write framed faces as JPEG files in ImageFolder layout (:func:`cfer.data.export.export_image_folder`).

    ``read_image_folder(root, subject_pattern=r"^(s\\d+)_", crop_faces=PHOTO_CROPPER)``
    reads them back with subjects. ``root/manifest.csv`` lists ``path`` (relative to
    ``root``), ``label``, ``subject`` and the true box ``top, left, bottom, right``.

    Args:
        root: Output folder; created if missing.
        photos: The frames, from :func:`render_framed_faces`.
        quality: JPEG quality, 1-95.
        overwrite: Write into a folder that is not empty.

    Returns:
        The number of image files written.

    Raises:
        ValueError: If ``root`` is not empty and ``overwrite`` is false, or for a bad
            ``quality``.

    Example:
        >>> photos = render_framed_faces(classes="basic", n_subjects=2, seed=0)
        >>> export_photo_folder("photos/", photos=photos)  # doctest: +SKIP
        12
    """
    from cfer.data.export import export_image_folder

    if not isinstance(photos, FramedFaces):
        raise ValueError(f"photos must be a FramedFaces from render_framed_faces(...), got {type(photos).__name__}")
    boxes = np.asarray(photos.boxes).astype(int)
    columns = {name: boxes[:, j].tolist() for j, name in enumerate(("top", "left", "bottom", "right"))}
    return export_image_folder(root, images=photos.images, labels=[photos.classes[i] for i in photos.labels],
                               subjects=photos.subjects, image_format="jpg", quality=quality,
                               extra_columns=columns, overwrite=overwrite)
