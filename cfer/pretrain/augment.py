"""Face augmentations for pretraining (torchvision ``transforms.v2``), drawn per image.

A face crop stays a face crop: a random resized crop that keeps most of the face (60-100%
of the area, near-square), a horizontal flip (faces are roughly symmetric; expressions are
not, so the labels of a supervised run are untouched here: pretraining has none), a small
rotation, and brightness / contrast jitter (grey and RGB alike). No colour or hue jitter,
no vertical flip: those make faces the data never holds.

Example:
    >>> import torch
    >>> aug = face_augmentation(image_size=32)
    >>> augment_batch(torch.rand(4, 1, 32, 32), transform=aug).shape
    torch.Size([4, 1, 32, 32])
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["face_augmentation", "augment_batch"]


def face_augmentation(*, image_size: int, strength: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The pretraining augmentation for ``image_size`` faces, as a ``transforms.v2.Compose``.

    Args:
        image_size: Side of the (square) output.
        strength: Scales the crop range, rotation and jitter (0: only the resize).

    Raises:
        ValueError: For a non-positive size or a negative strength.

    Example:
        >>> face_augmentation(image_size=64, strength=0.5)   # doctest: +ELLIPSIS
        Compose(...)
    """
    from torchvision.transforms import v2

    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if strength < 0:
        raise ValueError(f"strength must be >= 0 (0 turns augmentation off), got {strength}")
    s = min(strength, 2.0)
    return v2.Compose([
        v2.RandomResizedCrop(image_size, scale=(max(0.2, 1.0 - 0.4 * s), 1.0), ratio=(1 - 0.1 * s, 1 + 0.1 * s),
                             antialias=True),
        v2.RandomHorizontalFlip(p=0.5 if s > 0 else 0.0),
        v2.RandomAffine(degrees=10.0 * s),
        v2.ColorJitter(brightness=0.3 * s, contrast=0.3 * s),
    ])


def augment_batch(images: torch.Tensor, *, transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply ``transform`` to each image of ``(B, C, H, W)`` with its own random draw (a v2
    transform given the whole batch would draw once for all), using torch's global generator
    (the pretraining loop seeds it per epoch inside ``torch.random.fork_rng``)."""
    return torch.stack([transform(img) for img in images])
