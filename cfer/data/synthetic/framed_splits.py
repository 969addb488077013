"""Train, validation and test faces as a detector finds them in photo-like frames.

:func:`make_framed_splits` renders :func:`~cfer.data.synthetic.framed.render_framed_faces`
frames for three disjoint groups of people and cuts each face out with a face cropper
(:data:`~cfer.data.synthetic.framed.PHOTO_CROPPER` by default, or a
:class:`~cfer.data.align.FaceAligner` for eye alignment), as ``cfer run --data ...
--crop-faces`` reads a user's photos. Frames where the detector finds no face are left out
and counted in the log: the splits hold what a real pipeline would get, detector misses and
loose boxes included, rather than the renderer's own crops.

Example:
    >>> from cfer.data.synthetic.framed_splits import make_framed_splits
    >>> sp = make_framed_splits(classes="basic", subjects=(1, 1, 1), per_class=1, image_size=32)
    >>> sp["train"].images.shape[1:], str(sp["train"].subjects[0])
    ((32, 32, 3), 's0000')
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
from PIL import Image

from cfer.data.base import FaceDataset
from cfer.data.faces import FaceCropper, NoFaceFoundError
from cfer.data.synthetic.framed import PHOTO_CROPPER, render_framed_faces

__all__ = ["make_framed_splits"]

logger = logging.getLogger(__name__)


def make_framed_splits(*, classes: Sequence[str] | str | None = None, subjects: tuple[int, int, int] = (24, 8, 8),
                       per_class: int = 1, image_size: int = 48, channels: int = 3,
                       cropper: FaceCropper | None = None, seed: int = 0) -> dict[str, FaceDataset]:
    """Face crops found by a detector in photo-like frames, split by person.

    Args:
        classes: As in :func:`~cfer.data.synthetic.render_faces` (``"basic"``, ``"all"``, names).
        subjects: Number of people in train, val and test (disjoint; ids as in
            :func:`~cfer.data.synthetic.make_synthetic_splits`).
        per_class: Frames per class per person.
        image_size: Side the crops are resized to (bilinear).
        channels: 3 (RGB) or 1 (grey).
        cropper: Anything with ``crop(frame) -> face`` raising
            :class:`~cfer.data.faces.NoFaceFoundError` when there is none (default
            :data:`~cfer.data.synthetic.framed.PHOTO_CROPPER`; a ``FaceAligner`` aligns the eyes).
        seed: One seed for the three splits.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}`` :class:`~cfer.data.base.FaceDataset` s of
        uint8 ``(N, image_size, image_size, channels)`` crops.

    Raises:
        ValueError: On bad sizes, or if the detector finds no face at all in a split.
    """
    if len(subjects) != 3 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in subjects):
        raise ValueError(f"subjects must be three positive ints (train, val, test), got {subjects!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
    cropper = PHOTO_CROPPER if cropper is None else cropper
    mode = "L" if channels == 1 else "RGB"
    parts, first = {}, 0
    for name, n in zip(("train", "val", "test"), subjects):
        photos = render_framed_faces(classes=classes, n_subjects=int(n), per_class=per_class, seed=seed,
                                     first_subject=first)
        first += int(n)
        images, keep = [], []
        for i, frame in enumerate(photos.images):
            try:
                face = cropper.crop(frame)
            except NoFaceFoundError:
                continue
            crop = Image.fromarray(face).convert(mode).resize((image_size, image_size), Image.Resampling.BILINEAR)
            images.append(np.asarray(crop).reshape(image_size, image_size, channels))
            keep.append(i)
        if not keep:
            raise ValueError(f"the face detector found no face in the {name} frames; check the cropper's settings")
        parts[name] = FaceDataset(images=np.stack(images), labels=photos.labels[keep], classes=photos.classes,
                                  subjects=[photos.subjects[i] for i in keep])
        logger.info("framed %s: the detector found %d of %d faces", name, len(keep), len(photos))
    return parts
