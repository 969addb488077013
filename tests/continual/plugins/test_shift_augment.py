"""Random shifts of the training faces: exact pixel moves, the plugin's own generator, evaluation untouched."""

from types import SimpleNamespace

import pytest
import torch

from cfer.continual.plugins.shift_augment import ShiftAugmentPlugin, shift_images


def test_shift_images_moves_each_image_and_repeats_the_border():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(3, 2, 1, 1)
    out = shift_images(x, torch.tensor([1, 0, -2]), torch.tensor([0, -1, 1]))
    grid = x[0, 0]
    assert torch.equal(out[0, 0, :, 1:], grid[:, :3]) and torch.equal(out[0, 0, :, 0], grid[:, 0])  # right by 1
    assert torch.equal(out[1, 1, :3], grid[1:]) and torch.equal(out[1, 1, 3], grid[3])  # up by 1
    assert torch.equal(out[2, 0, 1:, :2], grid[:3, 2:])  # left by 2, down by 1
    assert torch.equal(out[2, 0, 0, :2], grid[0, 2:]) and torch.equal(out[2, 0, :, 2:], out[2, 0, :, 1:2].expand(4, 2))
    assert torch.equal(out[:, 0], out[:, 1])  # every channel moves alike
    assert torch.equal(shift_images(x, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)), x)
    with pytest.raises(ValueError, match="smaller max_shift"):
        shift_images(x, torch.tensor([4, 0, 0]), torch.zeros(3, dtype=torch.long))


def _batch(n=32):
    x = torch.rand(n, 3, 12, 12)
    return SimpleNamespace(mbatch=[x.clone(), torch.zeros(n), torch.zeros(n)], is_training=True), x


def test_the_plugin_shifts_training_batches_within_max_shift_from_its_own_generator():
    s, x = _batch()
    torch.manual_seed(7)
    expected_next = torch.rand(1)
    torch.manual_seed(7)
    ShiftAugmentPlugin(max_shift=2, seed=3).before_forward(s)
    assert torch.rand(1) == expected_next  # the global stream is untouched
    out = s.mbatch[0]
    moved = 0
    for i in range(len(x)):  # the image's centre is x's centre moved by at most 2 pixels
        found = [(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)
                 if torch.equal(out[i, :, 4:8, 4:8], x[i, :, 4 - dy:8 - dy, 4 - dx:8 - dx])]
        assert found
        moved += found[0] != (0, 0)
    assert moved > len(x) // 2  # 24 of the 25 shifts move the face
    a, _ = _batch()
    b = SimpleNamespace(mbatch=[a.mbatch[0].clone(), *a.mbatch[1:]], is_training=True)
    plugin = ShiftAugmentPlugin(seed=5)
    state = plugin.state_dict()
    plugin.before_forward(a)
    again = ShiftAugmentPlugin(seed=99)
    again.load_state_dict(state)
    again.before_forward(b)
    assert torch.equal(a.mbatch[0], b.mbatch[0])


def test_evaluation_clips_and_zero_shift_are_left_alone():
    e, x = _batch()
    e.is_training = False
    ShiftAugmentPlugin(max_shift=3).before_forward(e)
    assert torch.equal(e.mbatch[0], x)
    z, x = _batch()
    ShiftAugmentPlugin(max_shift=0).before_forward(z)
    assert torch.equal(z.mbatch[0], x)
    clip = torch.rand(2, 5, 3, 8, 8)
    c = SimpleNamespace(mbatch=[clip.clone(), torch.zeros(2), torch.zeros(2)], is_training=True)
    ShiftAugmentPlugin(max_shift=2).before_forward(c)
    assert torch.equal(c.mbatch[0], clip)
    with pytest.raises(ValueError, match=">= 0"):
        ShiftAugmentPlugin(max_shift=-1)
