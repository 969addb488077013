"""A class-balanced fine-tuning pass on the replay memory at the end of each step (an Avalanche plugin).

During a step the new classes fill half of every mini-batch, so the classifier ends the
step biased towards them. After the replay memory has been updated (it then holds the
same number of items for every class seen, the new ones included), this plugin trains
the model for a few more epochs on the memory alone, with a small learning rate: every
class now weighs the same (the balanced fine-tuning of End-to-End Incremental Learning,
Castro et al. 2018). With ``head_only=True`` only the classifier's parameters move.

The plugin must come after the replay plugin in the strategy's plugin list (its
``after_training_exp`` needs the updated memory); :func:`cfer.continual.factory.make_strategy`
puts it there. The first experience is skipped (its memory is as balanced as its data).

Example:
    >>> from cfer.continual.plugins.balanced import BalancedFinetunePlugin
    >>> BalancedFinetunePlugin(epochs=2, lr=1e-4).epochs
    2
"""

from __future__ import annotations

import logging

import torch
from avalanche.core import SupervisedPlugin
from torch import nn
from torch.utils.data import DataLoader

from cfer.continual.plugins.ncm import _memory_of

__all__ = ["BalancedFinetunePlugin"]

logger = logging.getLogger(__name__)


class BalancedFinetunePlugin(SupervisedPlugin, supports_distributed=True):
    """Fine-tune on the class-balanced replay memory after each step (see the module docstring).

    Args:
        epochs: Passes over the memory (0 switches the plugin off).
        lr: Adam learning rate of the pass.
        batch_size: Mini-batch size (default: the strategy's).
        head_only: Train only the head (``model.head``, else the last ``nn.Linear``).
        seed: Seed of the pass's shuffling (a private generator).

    Raises:
        ValueError: For a negative ``epochs`` or a ``lr`` that is not positive.
    """

    def __init__(self, *, epochs: int = 1, lr: float = 1e-4, batch_size: int | None = None,
                 head_only: bool = False, seed: int = 0) -> None:
        super().__init__()
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.epochs, self.lr, self.batch_size, self.head_only = epochs, lr, batch_size, head_only
        self.seed = seed
        self.passes = 0  # how many fine-tuning passes ran (one per step after the first)

    def _parameters(self, model: nn.Module) -> list[nn.Parameter]:
        if not self.head_only:
            return [p for p in model.parameters() if p.requires_grad]
        head = getattr(model, "head", None)
        if head is None:
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise ValueError(f"head_only=True needs model.head or an nn.Linear in {type(model).__name__}")
            head = linears[-1]
        return list(head.parameters())

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if self.epochs == 0 or strategy.clock.train_exp_counter == 0:  # the first experience
            return
        memory = _memory_of(strategy)
        if memory is None or len(memory) == 0:
            logger.warning("balanced fine-tuning: the strategy has no replay memory; skipped")
            return
        model = strategy.model
        params = self._parameters(model)
        opt = torch.optim.Adam(params, lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed + strategy.clock.train_exp_counter)
        loader = DataLoader(memory, batch_size=self.batch_size or strategy.train_mb_size, shuffle=True, generator=gen)
        was = model.training
        model.train()
        try:
            for _ in range(self.epochs):
                for x, y, *_ in loader:
                    x, y = x.to(strategy.device), y.to(strategy.device).long()
                    loss = nn.functional.cross_entropy(model(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        finally:
            model.train(was)
            for p in params:
                p.grad = None
        self.passes += 1
        logger.debug("balanced fine-tuning: %d epochs on %d memory items", self.epochs, len(memory))
