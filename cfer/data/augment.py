"""Face augmentations (torchvision ``transforms.v2``), drawn per image.

A face crop stays a face crop: a random resized crop that keeps most of the face (60-100%
of the area, near-square), a horizontal flip, a small rotation, and brightness / contrast
jitter (grey and RGB alike; saturation too for RGB). No hue jitter, no vertical flip: those
make faces the data never holds.

Two users share it: masked-autoencoder pretraining (:mod:`cfer.pretrain`; no labels) and the
teacher's photo recipe (:class:`FaceAugment`, labelled faces). A mirrored face keeps its
expression for every one of cfer's 22 classes (a mirrored happily surprised face is still
happily surprised); labels that name a side (``wink_left``) are swapped on a flip through
``FaceAugment(mirror=...)``.

Example:
    >>> import torch
    >>> aug = face_augmentation(image_size=32)
    >>> augment_batch(torch.rand(4, 1, 32, 32), transform=aug).shape
    torch.Size([4, 1, 32, 32])
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

__all__ = ["face_augmentation", "augment_batch", "FaceAugment"]


def face_augmentation(*, image_size: int, strength: float = 1.0, flip: bool = True,
                      channels: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """The face augmentation for ``image_size`` faces, as a ``transforms.v2.Compose``.

    Args:
        image_size: Side of the (square) output.
        strength: Scales the crop range, rotation and jitter (0: only the resize).
        flip: Include the random horizontal flip (``FaceAugment`` flips on its own, to
            know which images it flipped).
        channels: 3 adds saturation jitter (RGB faces); 1 (grey) has none to jitter.

    Raises:
        ValueError: For a non-positive size, a negative strength or channels other than 1 or 3.

    Example:
        >>> face_augmentation(image_size=64, strength=0.5)   # doctest: +ELLIPSIS
        Compose(...)
    """
    from torchvision.transforms import v2

    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if strength < 0:
        raise ValueError(f"strength must be >= 0 (0 turns augmentation off), got {strength}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    s = min(strength, 2.0)
    steps = [v2.RandomResizedCrop(image_size, scale=(max(0.2, 1.0 - 0.4 * s), 1.0), ratio=(1 - 0.1 * s, 1 + 0.1 * s),
                                  antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5 if s > 0 else 0.0))
    steps += [v2.RandomAffine(degrees=10.0 * s),
              v2.ColorJitter(brightness=0.3 * s, contrast=0.3 * s, saturation=0.3 * s if channels == 3 else None)]
    return v2.Compose(steps)


def augment_batch(images: torch.Tensor, *, transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply ``transform`` to each image of ``(B, C, H, W)`` with its own random draw (a v2
    transform given the whole batch would draw once for all), using torch's global generator
    (the training loops seed it inside ``torch.random.fork_rng``)."""
    return torch.stack([transform(img) for img in images])


class FaceAugment:
    """Training augmentation for labelled faces: :func:`face_augmentation` per image plus a
    horizontal flip that swaps the labels of mirrored classes.

    Args:
        image_size: Side of the square faces.
        channels: 1 (grey) or 3 (RGB).
        strength: Scales crop, rotation and jitter (0: none of them, and no flip).
        mirror: Label index -> the index of its mirror image (both directions are added),
            for labels that name a side; cfer's expression classes need none.

    Example:
        >>> import torch
        >>> aug = FaceAugment(image_size=32, mirror={0: 1})
        >>> x, y = aug(torch.rand(8, 1, 32, 32), torch.zeros(8, dtype=torch.long))
        >>> x.shape, set(y.tolist()) <= {0, 1}
        (torch.Size([8, 1, 32, 32]), True)
    """

    def __init__(self, *, image_size: int, channels: int = 1, strength: float = 1.0,
                 mirror: Mapping[int, int] | None = None) -> None:
        self.transform = face_augmentation(image_size=image_size, strength=strength, flip=False, channels=channels)
        self.flip_p = 0.5 if strength > 0 else 0.0
        pairs = dict(mirror or {})
        for a, b in list(pairs.items()):
            if pairs.setdefault(b, a) != a:
                raise ValueError(f"mirror maps {b} to both {pairs[b]} and {a}; give each label one mirror image")
        self.mirror = pairs

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented ``(B, C, H, W)`` images in [0, 1] and their labels (mirrored where flipped)."""
        flipped = torch.rand(len(images)) < self.flip_p
        images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
        if self.mirror and flipped.any():
            swapped = torch.tensor([self.mirror.get(int(v), int(v)) for v in labels], dtype=labels.dtype)
            labels = torch.where(flipped, swapped, labels)
        return augment_batch(images, transform=self.transform).clamp_(0.0, 1.0), labels
