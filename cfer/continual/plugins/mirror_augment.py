"""Mirror images in the student's training mini-batches (an Avalanche plugin).

The continual stream trains the student on the faces as stored: a replayed class keeps
about 20 items in a 422-item memory at one class a step, seen again every epoch of every
step. :class:`MirrorAugmentPlugin` replaces a random share of each training mini-batch's
faces by their mirror images (left and right swapped) before the forward pass, so the
student, its distillation terms and its loss all see the mirrored face. A face and its
mirror image show the same expression; the class means of
``CferConfig(nearest_mean_mirror=True)`` already average over both. Only batches of face
images (``N, C, H, W``) are mirrored: clips, whose tensor packs frames, voice and landmark
tracks together (:class:`cfer.data.video.ClipLayout`), are left as they are.

The flips come from the plugin's own generator (``seed``), so torch's global random stream,
which shuffles the mini-batches, is left as it was; :meth:`~MirrorAugmentPlugin.state_dict`
holds the generator's state, which a checkpoint saves so that a resumed run draws the flips
an uninterrupted one would have (:func:`cfer.continual.resume.run_order`). Under
``torchrun`` every process draws the flips of the whole global mini-batch (its own
mini-batch times the number of processes) and applies its own share of them: the
processes flip independently of each other, and their generators stay in the same state,
which is the one rank 0's checkpoint saves.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> x = torch.arange(4.0).reshape(1, 1, 1, 4).repeat(2, 1, 1, 1)
    >>> s = SimpleNamespace(mbatch=[x, torch.zeros(2), torch.zeros(2)], is_training=True)
    >>> MirrorAugmentPlugin(p=1.0).before_forward(s)
    >>> s.mbatch[0][0, 0, 0].tolist()
    [3.0, 2.0, 1.0, 0.0]
"""

from __future__ import annotations

import logging

import torch
from avalanche.core import SupervisedPlugin

from cfer.distributed import rank, world_size

__all__ = ["MirrorAugmentPlugin"]

logger = logging.getLogger(__name__)


class MirrorAugmentPlugin(SupervisedPlugin):
    """Mirror each training face with probability ``p`` (see the module docstring).

    Args:
        p: Probability that a face of a training mini-batch is replaced by its mirror image.
        seed: Seed of the plugin's own generator.

    Raises:
        ValueError: If ``p`` is not in [0, 1].
    """

    def __init__(self, *, p: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        self.p = p
        self.generator = torch.Generator().manual_seed(seed)
        self._warned = False

    def state_dict(self) -> dict:
        """The generator's state (what a checkpoint keeps)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`."""
        self.generator.set_state(state["generator"])

    def before_forward(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if not getattr(strategy, "is_training", True):
            return
        x = strategy.mbatch[0]
        if not torch.is_tensor(x) or x.dim() != 4:  # clips pack frames, voice and landmarks in one tensor
            if not self._warned:
                logger.info("mirror images apply to batches of face images (N, C, H, W); inputs of shape %s are "
                            "left as they are", tuple(getattr(x, "shape", ())))
                self._warned = True
            return
        n, at = len(x), rank()  # every process draws the global batch's flips and takes its share
        flip = torch.rand(n * world_size(), generator=self.generator)[at * n:(at + 1) * n] < self.p
        if bool(flip.any()):
            strategy.mbatch[0] = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
