"""Face alignment: eyes level and at fixed places in a square crop.

A face crop from the detector's box (:class:`~cfer.data.faces.FaceCropper`) keeps the
head's roll and the box's jitter: the same expression lands at other places and angles in
every photo. :class:`FaceAligner` finds the two eyes inside the detected face (OpenCV's
``haarcascade_eye.xml``), rotates the image about their midpoint so that they are level,
and cuts a square in which the eyes sit at fixed places: the eye line at ``eye_height`` of
the side from the top, the eyes ``eye_distance`` of the side apart, centred. Where the eyes
are not found (closed eyes, glasses, small faces) it falls back to the detector's square
crop and counts it (:attr:`FaceAligner.stats`).

:func:`align_by_eyes` is the geometry alone, for eye positions from any landmarker.

Example:
    >>> import numpy as np
    >>> img = np.zeros((100, 100), np.uint8)
    >>> out = align_by_eyes(img, left=(30.0, 40.0), right=(70.0, 50.0), side=48)
    >>> out.shape
    (48, 48)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from cfer.data.faces import FaceCropper, _check_image, _load_cascade, _to_grey

__all__ = ["FaceAligner", "align_by_eyes", "eye_targets", "face_cropper"]

logger = logging.getLogger(__name__)

_EYE_SEARCH_SIDE = 200
"""Faces narrower than this are enlarged to it before the eye search."""


def eye_targets(side: int, *, eye_distance: float = 0.32, eye_height: float = 0.4) -> tuple[tuple[float, float], ...]:
    """Where the (image-left, image-right) eye centres land in an aligned ``side`` x ``side`` crop.

    Example:
        >>> eye_targets(100)
        ((34.0, 40.0), (66.0, 40.0))
    """
    cx, y, half = side / 2, eye_height * side, eye_distance * side / 2
    return (cx - half, y), (cx + half, y)


def align_by_eyes(image: np.ndarray, *, left: tuple[float, float], right: tuple[float, float], side: int,
                  eye_distance: float = 0.32, eye_height: float = 0.4) -> np.ndarray:
    """Rotate, scale and crop ``image`` so the eyes are level at :func:`eye_targets`.

    Args:
        image: uint8 ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``.
        left: ``(x, y)`` of the eye on the image's left (the person's right eye).
        right: ``(x, y)`` of the eye on the image's right.
        side: Side of the square output, in pixels.
        eye_distance: Distance between the eyes as a fraction of ``side``.
        eye_height: Height of the eye line as a fraction of ``side`` from the top.

    Returns:
        The aligned ``(side, side[, C])`` crop; pixels from outside the image repeat its border.

    Raises:
        ValueError: For eyes closer than one pixel, ``right`` left of ``left``, or bad fractions.
    """
    import cv2

    image = _check_image(image, None)
    if not (0 < eye_distance < 1 and 0 < eye_height < 1):
        raise ValueError(f"eye_distance and eye_height are fractions of the side in (0, 1), got {eye_distance} "
                         f"and {eye_height}")
    (lx, ly), (rx, ry) = left, right
    dx, dy = rx - lx, ry - ly
    dist = math.hypot(dx, dy)
    if dist < 1 or dx <= 0:
        raise ValueError(f"the eyes must be at least a pixel apart with `right` to the right of `left`, got "
                         f"{left} and {right}")
    angle = math.degrees(math.atan2(dy, dx))  # cv2: positive angle turns counter-clockwise in image view
    scale = eye_distance * side / dist
    mid = ((lx + rx) / 2, (ly + ry) / 2)
    m = cv2.getRotationMatrix2D(mid, angle, scale)
    m[0, 2] += side / 2 - mid[0]
    m[1, 2] += eye_height * side - mid[1]
    squeeze = image.ndim == 3 and image.shape[2] == 1
    src = np.ascontiguousarray(image[:, :, 0] if squeeze else image)
    out = cv2.warpAffine(src, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out[:, :, None] if squeeze else out


@dataclass(frozen=True)
class FaceAligner(FaceCropper):
    """Detect the face, find its eyes, and cut an eyes-level square crop (see the module doc).

    A :class:`~cfer.data.faces.FaceCropper` (the face detection's fields are its own) that
    aligns: pass it wherever a reader takes ``crop_faces``, or use ``--align-faces`` with
    ``cfer run``.

    Args:
        eye_distance: Distance between the eyes as a fraction of the output side.
        eye_height: Height of the eye line as a fraction of the side from the top.
        eye_cascade: Eye cascade file in ``cv2.data.haarcascades``.
        eye_min_neighbors: Overlapping detections an eye needs.
        detect_face: False for images that are already face crops (the whole image is
            the face box; e.g. CK+48, FER2013).

    Example:
        >>> aligner = FaceAligner(margin=0.2)
        >>> face = aligner.crop(photo, source="a.jpg")    # doctest: +SKIP
        >>> aligner.stats                                  # doctest: +SKIP
        {'aligned': 1, 'fallback': 0}
    """

    eye_distance: float = 0.32
    eye_height: float = 0.4
    eye_cascade: str = "haarcascade_eye.xml"
    eye_min_neighbors: int = 3
    detect_face: bool = True
    stats: dict = field(default_factory=lambda: {"aligned": 0, "fallback": 0}, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 < self.eye_distance < 1 and 0 < self.eye_height < 1):
            raise ValueError(f"eye_distance and eye_height are fractions of the side in (0, 1), got "
                             f"{self.eye_distance} and {self.eye_height}")

    def load(self) -> "FaceAligner":
        """Load both cascades now (else at the first image)."""
        if self.detect_face:
            super().load()
        _load_cascade(self.eye_cascade)
        return self

    def eyes(self, image: np.ndarray, box: tuple[int, int, int, int]) -> tuple[tuple[float, float], ...] | None:
        """The two eye centres ``((x, y) left, (x, y) right)`` in the upper part of the face
        ``box`` (``top, left, bottom, right``), or None when not two plausible eyes are found."""
        import cv2

        top, left, bottom, right = box
        h, w = bottom - top, right - left
        upper = np.ascontiguousarray(_to_grey(image)[top:top + int(0.6 * h), left:right])
        zoom = max(1.0, _EYE_SEARCH_SIDE / max(w, 1))  # the eye cascade's window is 20 px: enlarge small faces
        if zoom > 1:
            upper = cv2.resize(upper, (round(upper.shape[1] * zoom), round(upper.shape[0] * zoom)),
                               interpolation=cv2.INTER_LINEAR)
        side = round(w * zoom)
        found = _load_cascade(self.eye_cascade).detectMultiScale(
            upper, scaleFactor=1.1, minNeighbors=int(self.eye_min_neighbors),
            minSize=(max(20, side // 10),) * 2, maxSize=(side // 2,) * 2)
        centres = [(left + (x + ew / 2) / zoom, top + (y + eh / 2) / zoom, ew * eh)
                   for x, y, ew, eh in np.asarray(found).reshape(-1, 4)]
        mid = left + w / 2
        lefts = sorted((c for c in centres if c[0] < mid), key=lambda c: -c[2])
        rights = sorted((c for c in centres if c[0] >= mid), key=lambda c: -c[2])
        if not lefts or not rights:
            return None
        (lx, ly, _), (rx, ry, _) = lefts[0], rights[0]
        if abs(ry - ly) > 0.5 * (rx - lx) or (rx - lx) < 0.15 * w:  # a roll over ~27 degrees or eyes too close
            return None
        return (lx, ly), (rx, ry)

    def crop(self, image: np.ndarray, *, source: str | None = None) -> np.ndarray:
        """The aligned square crop (the detector's square crop where the eyes are not found).

        Raises:
            NoFaceFoundError: If ``detect_face`` and no face is found.
        """
        image = _check_image(image, source)
        height, width = image.shape[:2]
        box = self.box(image, source=source) if self.detect_face else (0, 0, height, width)
        eyes = self.eyes(image, box)
        if eyes is None:
            self.stats["fallback"] += 1
            logger.debug("no eye pair found in %s; using the face box", source or "an image")
            top, left, bottom, right = box
            return image[top:bottom, left:right].copy()
        self.stats["aligned"] += 1
        side = max(box[2] - box[0], box[3] - box[1])
        return align_by_eyes(image, left=eyes[0], right=eyes[1], side=side, eye_distance=self.eye_distance,
                             eye_height=self.eye_height)



def face_cropper(*, crop: bool, align: bool, margin: float = 0.2, min_neighbors: int = 5,
                 cascade: str = "haarcascade_frontalface_default.xml") -> FaceCropper | bool:
    """What a reader's ``crop_faces`` gets from the command-line options.

    ``crop`` alone: a :class:`~cfer.data.faces.FaceCropper`; ``crop`` and ``align``: a
    :class:`FaceAligner` that detects the face, then aligns its eyes; ``align`` alone: a
    :class:`FaceAligner` for images that are already face crops (eyes only); neither:
    False.

    Example:
        >>> type(face_cropper(crop=False, align=True)).__name__, face_cropper(crop=False, align=False)
        ('FaceAligner', False)
    """
    if align:
        return FaceAligner(margin=margin, min_neighbors=min_neighbors, cascade=cascade, detect_face=crop)
    if crop:
        return FaceCropper(margin=margin, min_neighbors=min_neighbors, cascade=cascade)
    return False
