"""Face detection and square face crops with OpenCV's Haar cascade.

The frontal-face Haar cascade ships with ``opencv-python-headless`` 4.x
(``cv2.data.haarcascades``). It finds upright, roughly frontal faces; it misses
strongly turned heads, heavy occlusion and very small faces, and it can fire on
face-like texture. Check a sample of crops before training on them.

OpenCV is imported on first use, so ``import cfer.data`` stays light.

Example:
    >>> import numpy as np
    >>> from cfer.data.faces import FaceCropper
    >>> cropper = FaceCropper(margin=0.2)
    >>> crop = cropper.crop(image, source="photo.jpg")  # doctest: +SKIP
    >>> crop.shape[0] == crop.shape[1]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NoFaceFoundError",
    "FaceDetectorUnavailableError",
    "FaceCropper",
    "crop_face",
    "shipped_cascades",
]

logger = logging.getLogger(__name__)

_DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
_INSTALL_HINT = 'install OpenCV 4.x, which ships the Haar cascades: pip install "opencv-python-headless<5"'


class NoFaceFoundError(ValueError):
    """The detector found no face in an image."""


class FaceDetectorUnavailableError(RuntimeError):
    """OpenCV or its Haar cascade files cannot be loaded."""


@functools.lru_cache(maxsize=None)
def _load_cascade(name: str) -> "cv2.CascadeClassifier":  # noqa: F821 - cv2 is imported lazily
    """Load a Haar cascade from ``cv2.data.haarcascades`` once per process."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - cv2 is a hard dependency
        raise FaceDetectorUnavailableError(f"face cropping needs OpenCV ({exc}); {_INSTALL_HINT}") from exc
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder:
        raise FaceDetectorUnavailableError(
            f"OpenCV {cv2.__version__} ships no Haar cascades (cv2.data.haarcascades is missing; "
            f"OpenCV 5 dropped them); {_INSTALL_HINT}"
        )
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FaceDetectorUnavailableError(
            f"Haar cascade {path} not found in OpenCV {cv2.__version__}; {_INSTALL_HINT}"
        )
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FaceDetectorUnavailableError(f"OpenCV could not load the Haar cascade {path}; {_INSTALL_HINT}")
    logger.info("loaded Haar cascade %s", path)
    return cascade


def shipped_cascades() -> list[str]:
    """The Haar cascade files OpenCV ships (``cv2.data.haarcascades``); empty if none.

    Example:
        >>> "haarcascade_frontalface_default.xml" in shipped_cascades()
        True
    """
    try:
        import cv2
    except ImportError:  # pragma: no cover - cv2 is a hard dependency
        return []
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    return sorted(n for n in os.listdir(folder) if n.endswith(".xml")) if folder else []


def _to_grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    # ITU-R 601 luma, the weights cv2.COLOR_RGB2GRAY uses.
    grey = image[:, :, 0] * 0.299 + image[:, :, 1] * 0.587 + image[:, :, 2] * 0.114
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def _check_image(image: np.ndarray, source: str | None) -> np.ndarray:
    image = np.asarray(image)
    where = f" ({source})" if source else ""
    if image.dtype != np.uint8:
        raise ValueError(f"image{where} must be uint8, got {image.dtype}; convert with .astype(np.uint8)")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise ValueError(
            f"image{where} must be (H, W), (H, W, 1) or RGB (H, W, 3), got shape {image.shape}; "
            "drop an alpha channel with image[..., :3]"
        )
    if min(image.shape[:2]) < 1:
        raise ValueError(f"image{where} is empty (shape {image.shape})")
    return image


@dataclass(frozen=True)
class FaceCropper:
    """Find the largest frontal face and cut a square crop around it.

    Args:
        margin: Extra border on each side, as a fraction of the detected box's side
            (0.2 widens a 100 px box to 140 px).
        min_size: Smallest face side, in pixels, the detector looks for.
        scale_factor: Image-pyramid step of ``detectMultiScale`` (> 1; smaller is
            slower and finds more).
        min_neighbors: Overlapping detections a face needs (higher: fewer false faces).
        equalize: Equalise the grey histogram before detection (can help dim, low-contrast
            photos; off by default because it hurts on flat, high-contrast images).
        cascade: File name of the cascade inside ``cv2.data.haarcascades``.

    The crop is square and lies inside the image: a square that would leave the image
    is shifted back in, and where the image is too small it shrinks to the image's
    shorter side.

    Example:
        >>> cropper = FaceCropper(margin=0.25, min_size=40)
        >>> face = cropper.crop(rgb_image, source="img_001.jpg")  # doctest: +SKIP
    """

    margin: float = 0.2
    min_size: int = 30
    scale_factor: float = 1.1
    min_neighbors: int = 5
    equalize: bool = False
    cascade: str = _DEFAULT_CASCADE

    def __post_init__(self) -> None:
        if not self.margin >= 0:
            raise ValueError(f"margin must be >= 0 (a fraction of the face box), got {self.margin}")
        if int(self.min_size) != self.min_size or self.min_size < 1:
            raise ValueError(f"min_size must be a positive whole number of pixels, got {self.min_size}")
        if not self.scale_factor > 1:
            raise ValueError(f"scale_factor must be > 1 (e.g. 1.1), got {self.scale_factor}")
        if int(self.min_neighbors) != self.min_neighbors or self.min_neighbors < 0:
            raise ValueError(f"min_neighbors must be a whole number >= 0, got {self.min_neighbors}")

    def load(self) -> "FaceCropper":
        """Load the cascade now (it is otherwise loaded at the first detection).

        Raises:
            FaceDetectorUnavailableError: If OpenCV or the cascade file cannot be loaded.
        """
        _load_cascade(self.cascade)
        return self

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """All detected faces as ``(x, y, w, h)`` boxes, largest first.

        Args:
            image: uint8 image, grey ``(H, W)``/``(H, W, 1)`` or RGB ``(H, W, 3)``.

        Example:
            >>> FaceCropper().detect(np.zeros((64, 64), np.uint8))
            []
        """
        import cv2

        grey = _to_grey(_check_image(image, None))
        if self.equalize:
            grey = cv2.equalizeHist(np.ascontiguousarray(grey))
        boxes = _load_cascade(self.cascade).detectMultiScale(
            np.ascontiguousarray(grey),
            scaleFactor=float(self.scale_factor),
            minNeighbors=int(self.min_neighbors),
            minSize=(int(self.min_size), int(self.min_size)),
        )
        out = [tuple(int(v) for v in b) for b in np.asarray(boxes).reshape(-1, 4)]
        return sorted(out, key=lambda b: (-b[2] * b[3], b[1], b[0]))

    def box(self, image: np.ndarray, *, source: str | None = None) -> tuple[int, int, int, int]:
        """The square crop box ``(top, left, bottom, right)`` around the largest face.

        Raises:
            NoFaceFoundError: If no face is found; the message names ``source``.
        """
        image = _check_image(image, source)
        faces = self.detect(image)
        if not faces:
            where = source if source is not None else "the image"
            raise NoFaceFoundError(
                f"no face found in {where} (shape {image.shape}, min_size={self.min_size}); "
                "use a frontal, upright face photo, lower min_size, crop the image by hand, "
                "or read the data without crop_faces"
            )
        x, y, w, h = faces[0]
        height, width = image.shape[:2]
        side = int(round(max(w, h) * (1 + 2 * self.margin)))
        side = max(1, min(side, height, width))
        cy, cx = y + h / 2, x + w / 2
        top = int(round(cy - side / 2))
        left = int(round(cx - side / 2))
        top = min(max(top, 0), height - side)
        left = min(max(left, 0), width - side)
        return top, left, top + side, left + side

    def crop(self, image: np.ndarray, *, source: str | None = None) -> np.ndarray:
        """The square crop of the largest face, same channels as ``image``.

        Args:
            image: uint8 image, grey ``(H, W)``/``(H, W, 1)`` or RGB ``(H, W, 3)``.
            source: Where the image came from (a path); named in error messages.

        Returns:
            A copy of the crop, ``(S, S)`` or ``(S, S, C)``.

        Raises:
            NoFaceFoundError: If no face is found.

        Example:
            >>> FaceCropper(margin=0.2).crop(image, source="a.jpg").shape  # doctest: +SKIP
            (168, 168, 3)
        """
        image = _check_image(image, source)
        top, left, bottom, right = self.box(image, source=source)
        return image[top:bottom, left:right].copy()


def crop_face(
    image: np.ndarray,
    *,
    margin: float = 0.2,
    min_size: int = 30,
    source: str | None = None,
) -> np.ndarray:
    """Crop the largest face in ``image`` to a square with a margin.

    A shortcut for ``FaceCropper(margin=margin, min_size=min_size).crop(image, source=source)``.

    Args:
        image: uint8 image, grey ``(H, W)``/``(H, W, 1)`` or RGB ``(H, W, 3)``.
        margin: Border on each side as a fraction of the detected box's side.
        min_size: Smallest face side, in pixels, to look for.
        source: Where the image came from; named in error messages.

    Returns:
        The square crop, same channels as ``image``.

    Raises:
        NoFaceFoundError: If no face is found.
        FaceDetectorUnavailableError: If OpenCV ships no Haar cascades (OpenCV 5).

    Example:
        >>> from PIL import Image
        >>> face = crop_face(np.asarray(Image.open("a.jpg").convert("RGB")), source="a.jpg")  # doctest: +SKIP
    """
    return FaceCropper(margin=margin, min_size=min_size).crop(image, source=source)
