"""Fit the new classes' head rows before a step trains the whole student (an Avalanche plugin).

When a step begins, the rows of the head for its new classes are random. The first
mini-batches then give the new faces a large loss, and its gradient runs through the whole
network: the features the old classes rest on move most at the start of each step, before
the new rows have learnt anything (fine-tuning with a random head distorts the features
it starts from: Kumar et al. 2022, "Fine-tuning can distort pretrained features", whose
remedy is to fit the head first, LP-FT; in continual learning the dip at the start of each
task is the stability gap, De Lange et al. 2023). :class:`HeadWarmStartPlugin` fits only
the new rows first, on the frozen student's features of the step's training items (the new
data and, with concatenated replay, the memory), and stops as soon as the new classes' mean
cross-entropy is no higher than the old classes': the new rows then start as well placed as
the old ones, and the step's training goes on from there.

It costs one forward pass over the step's items without gradients, and a few hundred
steps of a linear layer on their features. Measured with cfer's preset on validation
subjects, it learns each new class worse and does not raise average accuracy
(``docs/benchmarks.md``): an option, not part of a preset.

Example:
    >>> plugin = HeadWarmStartPlugin(max_iterations=200, lr=1e-3)
    >>> plugin.max_iterations
    200
"""

from __future__ import annotations

import logging

import torch
from avalanche.core import SupervisedPlugin
from torch import nn
from torch.utils.data import DataLoader

from cfer.models.features import pre_logits

__all__ = ["HeadWarmStartPlugin"]

logger = logging.getLogger(__name__)


def _linear_head(model: nn.Module) -> nn.Linear | None:
    head = getattr(getattr(model, "head", None), "classifier", None)
    return head if type(head) is nn.Linear else None


class HeadWarmStartPlugin(SupervisedPlugin, supports_distributed=True):
    """Fit the head rows of each step's new classes on frozen features before the step trains.

    The model must be a growing classifier with a linear head (``model.head.classifier``, as
    :class:`~cfer.continual.growing.GrowingClassifier` has); other models are left alone,
    with a warning. The first experience is left alone (there are no old rows to match).
    The old classes' items are those of the step's training data (concatenated replay puts
    the memory there) or, when it has none, of the replay buffers of the strategy's plugins
    (Avalanche's ``ReplayPlugin`` and its half-memory mini-batches); a step with neither is
    left alone, with a warning.
    The new rows (weights and biases) are fitted by Adam on the cross-entropy over every
    training item of the step, over the classes seen so far, with the other rows fixed; with
    ``logit_adjustment=tau`` the logits get ``tau · log(class share)`` as
    :class:`~cfer.continual.plugins.logit_adjustment.LogitAdjustmentPlugin` gives them in
    training. Fitting stops when the new classes' items have a mean cross-entropy no higher
    than the old classes' items, or after ``max_iterations``. Under ``torchrun`` every
    process fits on its own copy of the same items and so ends with the same rows.

    Args:
        max_iterations: Most Adam steps on the new rows.
        lr: Adam's learning rate.
        logit_adjustment: ``tau`` of the strategy's logit adjustment (0: none).
        batch_size: Items a forward pass embeds at once.

    Attributes:
        history: One dict per step fitted: ``classes`` (the new ones), ``iterations``, and the
            mean cross-entropy of the new and the old classes' items before and after.
    """

    def __init__(self, *, max_iterations: int = 500, lr: float = 1e-3, logit_adjustment: float = 0.0,
                 batch_size: int = 256) -> None:
        super().__init__()
        if max_iterations < 1 or not lr > 0 or batch_size < 1:
            raise ValueError(f"max_iterations and batch_size must be >= 1 and lr > 0; got {max_iterations}, "
                             f"{batch_size} and {lr}")
        if not logit_adjustment >= 0:
            raise ValueError(f"logit_adjustment must be >= 0 (0: none), got {logit_adjustment}")
        self.max_iterations, self.lr, self.batch_size = int(max_iterations), float(lr), int(batch_size)
        self.logit_adjustment = float(logit_adjustment)
        self.seen: set[int] = set()
        self.history: list[dict] = []
        self._warned = False

    @torch.no_grad()
    def _features(self, strategy, data) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
        model = strategy.model
        was_training = model.training
        model.eval()
        feats, labels = [], []
        try:
            for batch in DataLoader(data, batch_size=self.batch_size, shuffle=False):
                feats.append(pre_logits(model, batch[0].to(strategy.device)).float())
                labels.append(batch[1].to(strategy.device))
        finally:
            model.train(was_training)
        return torch.cat(feats), torch.cat(labels).long()

    @staticmethod
    def _memory(strategy) -> list:  # noqa: ANN001
        """The replay buffers of the strategy's plugins (Avalanche's ``storage_policy.buffer``)."""
        buffers = [getattr(getattr(p, "storage_policy", None), "buffer", None) for p in strategy.plugins]
        return [b for b in buffers if b is not None and len(b)]

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        classes = {int(c) for c in strategy.experience.classes_in_this_experience}
        new, old = sorted(classes - self.seen), sorted(self.seen)
        self.seen |= classes
        if not new or not old:
            return
        head = _linear_head(strategy.model)
        if head is None:
            if not self._warned:
                logger.warning("HeadWarmStartPlugin fits a linear head at model.head.classifier; %s has none, so "
                               "the new rows start as they are", type(strategy.model).__name__)
                self._warned = True
            return
        feats, labels = self._features(strategy, strategy.adapted_dataset)

        def has_old() -> bool:
            return bool(torch.isin(labels, torch.tensor(old, device=labels.device)).any())

        if not has_old():
            # half-memory mini-batches: the step's dataset is the new data alone; the old
            # classes' items are in the replay buffer
            for buffer in self._memory(strategy):
                more = self._features(strategy, buffer)
                feats, labels = torch.cat([feats, more[0]]), torch.cat([labels, more[1]])
        if not has_old():
            logger.warning("HeadWarmStartPlugin: no item of an old class in the step's data or a replay buffer, so "
                           "the new rows of step %d start as they are", strategy.clock.train_exp_counter)
            return
        self.history.append(self._fit(head, feats, labels, new=new, old=old))

    @torch.enable_grad()
    def _fit(self, head: nn.Linear, feats: torch.Tensor, labels: torch.Tensor, *, new: list[int],
             old: list[int]) -> dict:
        known = torch.tensor(old + new, device=feats.device)
        keep = torch.isin(labels, known)
        feats, labels = feats[keep], labels[keep]
        position = torch.full((int(known.max()) + 1,), -1, dtype=torch.long, device=feats.device)
        position[known] = torch.arange(len(known), device=feats.device)
        target = position[labels]
        is_new = torch.isin(labels, torch.tensor(new, device=feats.device))
        counts = torch.bincount(target, minlength=len(known)).float()
        offset = self.logit_adjustment * torch.log((counts + 1) / (counts + 1).sum())
        w_old, b_old = head.weight[old].detach(), head.bias[old].detach()
        w_new = head.weight[new].detach().clone().requires_grad_()
        b_new = head.bias[new].detach().clone().requires_grad_()
        opt = torch.optim.Adam([w_new, b_new], lr=self.lr)

        def losses() -> tuple[torch.Tensor, torch.Tensor]:
            logits = feats @ torch.cat([w_old, w_new]).T + torch.cat([b_old, b_new]) + offset
            ce = nn.functional.cross_entropy(logits, target, reduction="none")
            return ce[is_new].mean(), ce[~is_new].mean()

        start_new, start_old = (float(v) for v in losses())
        iterations = 0
        for iterations in range(1, self.max_iterations + 1):
            ce_new, ce_old = losses()
            if float(ce_new) <= float(ce_old):
                iterations -= 1
                break
            opt.zero_grad()
            (ce_new * is_new.float().mean() + ce_old * (~is_new).float().mean()).backward()
            opt.step()
        with torch.no_grad():
            head.weight[new] = w_new.detach().to(head.weight.dtype)
            head.bias[new] = b_new.detach().to(head.bias.dtype)
            end_new, end_old = (float(v) for v in losses())
        return {"classes": new, "iterations": iterations, "new_ce_before": start_new, "old_ce_before": start_old,
                "new_ce_after": end_new, "old_ce_after": end_old}
