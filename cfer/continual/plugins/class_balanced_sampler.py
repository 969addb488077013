"""Class-balanced mini-batches over the new data and the replay memory (an Avalanche plugin).

With the memory concatenated to the new data (``CferConfig(replay_batches="concat")``) an
epoch is one pass over both, and a class is drawn as often as it has items: at one
compound class a step the new class brings 64 faces and each old class keeps about 20 in
a 422-item memory, so the newest class fills three times its share of every mini-batch.
This plugin replaces the strategy's training loader by one whose sampler draws every item
with probability proportional to ``1 / (items of its class)`` (torch's
``WeightedRandomSampler``, with replacement), as many draws an epoch as there are items:
each class then fills the same share of an epoch in expectation, the few memory items of
an old class being drawn several times and the new class's items fewer. It works with
any strategy whose training loader is a plain ``torch.utils.data.DataLoader`` (Avalanche's
own ``Naive`` without a replay plugin, or with cfer's ``ConcatReplayPlugin``); the
mixed replay loader already balances new data and memory by halves and is refused, and so
is a ``torchrun`` job (its loader's shards would be undone).

Logit adjustment counts the classes of the mini-batches it sees, so with this sampler it
sees a flat prior and adjusts nothing; the two are alternatives, not a pair.

Example:
    >>> from cfer.continual.plugins.class_balanced_sampler import class_balanced_weights
    >>> class_balanced_weights([0, 0, 0, 1]).tolist()
    [0.3333333432674408, 0.3333333432674408, 0.3333333432674408, 1.0]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from avalanche.core import SupervisedPlugin
from torch.utils.data import DataLoader, WeightedRandomSampler

__all__ = ["ClassBalancedSamplerPlugin", "class_balanced_weights"]

logger = logging.getLogger(__name__)


def class_balanced_weights(labels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``1 / (items of the item's class)`` for every item: the sampling weights under which
    each class is drawn equally often.

    Raises:
        ValueError: If ``labels`` is empty or holds a negative label.
    """
    y = torch.as_tensor(list(labels) if not torch.is_tensor(labels) else labels).long()
    if y.numel() == 0:
        raise ValueError("no items to sample from")
    if int(y.min()) < 0:
        raise ValueError(f"labels must be >= 0, got {int(y.min())}")
    return 1.0 / torch.bincount(y)[y].float()


class ClassBalancedSamplerPlugin(SupervisedPlugin):
    """Train every experience on class-balanced draws of its data (see the module docstring).

    Args:
        num_samples: Draws an epoch; default: the number of items (an epoch as long as a
            pass over the data).

    Raises:
        ValueError: On ``num_samples`` < 1.
    """

    def __init__(self, *, num_samples: int | None = None) -> None:
        super().__init__()
        if num_samples is not None and num_samples < 1:
            raise ValueError(f"num_samples must be >= 1 (None: as many as the items), got {num_samples}")
        self.num_samples = num_samples
        self.class_counts: list[list[int]] = []

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        from cfer.distributed import world_size

        if world_size() > 1:
            raise RuntimeError("the class-balanced sampler draws one process's mini-batches and would undo the shards "
                               "of a torchrun job; run it in a single process")
        loader = strategy.dataloader
        if type(loader) is not DataLoader:
            raise ValueError(f"the class-balanced sampler replaces a plain DataLoader, but this strategy trains with "
                             f"{type(loader).__name__}; with cfer use CferConfig(replay_batches='concat')")
        data = strategy.adapted_dataset
        labels = torch.as_tensor(list(data.targets)).long()
        weights = class_balanced_weights(labels)
        self.class_counts.append(torch.bincount(labels).tolist())
        sampler = WeightedRandomSampler(weights, num_samples=self.num_samples or len(weights), replacement=True)
        strategy.dataloader = DataLoader(data, batch_size=loader.batch_size, sampler=sampler,
                                         num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                                         pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                                         persistent_workers=loader.persistent_workers)
        logger.debug("class-balanced sampler: %d items of %d classes", len(weights), int(labels.unique().numel()))
