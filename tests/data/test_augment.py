"""The labelled-face augmentation: per-image draws, and flips that swap mirrored labels."""

from __future__ import annotations

import pytest
import torch

from cfer.data.augment import FaceAugment, face_augmentation


def _left_bright(n: int) -> torch.Tensor:
    x = torch.zeros(n, 1, 32, 32)
    x[..., :16] = 1.0
    return x


def test_flipped_faces_get_their_mirror_label_and_the_rest_keep_theirs() -> None:
    torch.manual_seed(0)
    aug = FaceAugment(image_size=32, strength=0.05, mirror={0: 1})
    x, y = aug(_left_bright(64), torch.zeros(64, dtype=torch.long))
    flipped = x[..., 16:].mean((1, 2, 3)) > x[..., :16].mean((1, 2, 3))
    assert 10 < flipped.sum() < 54  # about half the faces are mirrored
    assert torch.equal(y, flipped.long())  # mirrored ones became label 1, the others stayed 0


def test_without_mirror_pairs_labels_are_untouched_and_images_stay_in_range() -> None:
    torch.manual_seed(1)
    labels = torch.arange(16) % 3
    x, y = FaceAugment(image_size=32, channels=3)(torch.rand(16, 3, 32, 32), labels)
    assert torch.equal(y, labels)
    assert x.shape == (16, 3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_each_face_gets_its_own_draw() -> None:
    torch.manual_seed(2)
    x, _ = FaceAugment(image_size=32)(torch.rand(1, 1, 32, 32).repeat(8, 1, 1, 1), torch.zeros(8, dtype=torch.long))
    assert len({tuple(v.flatten()[:50].tolist()) for v in x}) == 8


def test_zero_strength_is_the_identity() -> None:
    faces = torch.rand(4, 1, 32, 32)
    x, _ = FaceAugment(image_size=32, strength=0.0)(faces, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(x, faces, atol=1e-6)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="mirror"):
        FaceAugment(image_size=32, mirror={0: 1, 2: 1})
    with pytest.raises(ValueError, match="channels"):
        face_augmentation(image_size=32, channels=2)
