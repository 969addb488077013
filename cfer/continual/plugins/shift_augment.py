"""Small random shifts of the student's training faces (an Avalanche plugin).

A replayed class keeps a few dozen memory items, seen again in every epoch of every
step: the student can learn those exact images rather than the expression.
:class:`ShiftAugmentPlugin` moves each face of a training mini-batch by a random whole
number of pixels, up to ``max_shift`` in each direction (the border pixels repeated into
the gap), before the forward pass, so the student, its distillation terms and its loss
all see the moved face. Only batches of face images (``N, C, H, W``) are moved.

The shifts come from the plugin's own generator (``seed``), so torch's global random
stream is left as it was; :meth:`~ShiftAugmentPlugin.state_dict` holds the generator's
state, which a checkpoint saves, as for
:class:`~cfer.continual.plugins.mirror_augment.MirrorAugmentPlugin`. Under ``torchrun``
every process draws the shifts of the whole global mini-batch and applies its own share.
A moved face is a new input to a frozen distillation model, so the output cache of
:mod:`cfer.continual.output_cache` finds few of its rows and switches itself off after
the first epoch of each step.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> s = SimpleNamespace(mbatch=[x, torch.zeros(1), torch.zeros(1)], is_training=True)
    >>> ShiftAugmentPlugin(max_shift=1).before_forward(s)
    >>> s.mbatch[0].shape
    torch.Size([1, 1, 4, 4])
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from torch.nn import functional

from cfer.distributed import rank, world_size

__all__ = ["ShiftAugmentPlugin", "shift_images"]


def shift_images(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Each image ``x[i]`` (``N, C, H, W``) moved right by ``dx[i]`` and down by ``dy[i]``
    pixels (negative: left, up), the border repeated into the gap.

    Raises:
        ValueError: If a shift is as large as the image.
    """
    n, _, h, w = x.shape
    s = int(max(dx.abs().max(), dy.abs().max())) if n else 0
    if s == 0:
        return x
    if s >= min(h, w):
        raise ValueError(f"a shift of {s} pixels is as large as the {h}x{w} image; use a smaller max_shift")
    padded = functional.pad(x, (s, s, s, s), mode="replicate")
    rows = (torch.arange(h, device=x.device)[None, :] + s - dy.to(x.device)[:, None])  # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] + s - dx.to(x.device)[:, None])  # (N, W)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


class ShiftAugmentPlugin(SupervisedPlugin):
    """Move each training face by up to ``max_shift`` pixels (see the module docstring).

    Args:
        max_shift: The largest shift in pixels, in each direction.
        seed: Seed of the plugin's own generator.

    Raises:
        ValueError: If ``max_shift`` is negative.
    """

    def __init__(self, *, max_shift: int = 2, seed: int = 1) -> None:
        super().__init__()
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift = int(max_shift)
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        """The generator's state (what a checkpoint keeps)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`."""
        self.generator.set_state(state["generator"])

    def before_forward(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if not getattr(strategy, "is_training", True) or self.max_shift == 0:
            return
        x = strategy.mbatch[0]
        if not torch.is_tensor(x) or x.dim() != 4:
            return
        n, at = len(x), rank()  # every process draws the global batch's shifts and takes its share
        d = torch.randint(-self.max_shift, self.max_shift + 1, (2, n * world_size()), generator=self.generator)
        d = d[:, at * n:(at + 1) * n]
        strategy.mbatch[0] = shift_images(x, d[0], d[1])
