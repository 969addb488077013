"""Predictive Sorting Memory Replay (PSMR) as an Avalanche storage policy.

Per class, predict on that class's training samples, sort them by the output for their
**true** class (highest first) and keep the top ``m``. The budget ``M`` is shared by
``total_classes`` classes: ``m = floor(M / total_classes)``.

* ``mode="grow"``: each new class adds ``m`` items, so the buffer grows by ``m`` per
  class and reaches at most ``M``.
* ``mode="limit"``: the buffer holds ``M`` items from the start, re-balanced at every step
  to ``floor(M / seen classes)`` per class.
* ``first_step_weight=w``: a class of the first experience gets ``w`` shares of the budget
  and a later class one (``floor(M * w / (w * first + later))`` items; grow mode counts
  every class the stream will have). The first experience's classes are the ones the
  frozen basic teacher knows and keeps distilling on every input, so ``w < 1`` gives the
  classes that only the memory keeps more of it; 1 is the published method.

Old classes are only **truncated** (their existing order is kept and the tail cut), as
in the reference code; ``rescore_old=True`` re-sorts them with the current scorer first.
New-class samples are chosen by predictive sorting (``new_class_selection="sorted"``,
the method as described), at random (``"random"``, as the reference code does), or by
``"sorted_herding"``: predictive sorting keeps the better-recognised half of the class
(at least the quota), and herding (Welling 2009, iCaRL's rule) picks from it, in order,
the items whose running feature mean stays closest to that half's mean, so the memory
holds well-recognised items that are not near-copies of each other. The
scorer is the strategy's current model (``scorer="current"``) or a given frozen model
(``scorer="teacher"``). The buffer stores index subsets of the experience datasets, never
copies of the images.

Example:
    >>> from avalanche.training.plugins import ReplayPlugin
    >>> policy = PredictiveSortingBuffer(max_size=300, total_classes=21, mode="grow")
    >>> replay = ReplayPlugin(mem_size=300, storage_policy=policy)        # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import warnings
from typing import Literal

import numpy as np
import torch
from avalanche.benchmarks.utils import concat_datasets
from avalanche.training.plugins import ReplayPlugin
from avalanche.training.storage_policy import BalancedExemplarsBuffer, ExemplarsBuffer, ExemplarsSelectionStrategy
from torch import nn
from torch.utils.data import DataLoader

from cfer.continual.plugins.herding import herding_order
from cfer.distributed import gather_shards, model_device, shard, world_size

__all__ = ["PredictiveSortingSelection", "PredictiveSortingBuffer", "psmr_plugin", "ConcatReplayPlugin",
           "class_quotas", "herding_order", "MemoryBudgetWarning"]

logger = logging.getLogger(__name__)


class MemoryBudgetWarning(UserWarning):
    """The replay budget is smaller than the number of classes: some or all classes get
    no replay items."""


class PredictiveSortingSelection(ExemplarsSelectionStrategy):
    """Sort a class's samples by the model's output for their true class, highest first.

    Args:
        scorer: ``"current"`` (the strategy's model) or ``"teacher"`` (``teacher``).
        teacher: The frozen model used when ``scorer="teacher"``.
        score: ``"softmax"`` (probability of the true class), ``"logit"``, or ``"margin"``
            (the true class's logit minus the highest other logit: how far an item is
            from the nearest other class, not only how sure the model is of its own).
        batch_size: Items per forward pass (default: the strategy's eval batch size).
    """

    def __init__(self, *, scorer: Literal["current", "teacher"] = "current", teacher: nn.Module | None = None,
                 score: Literal["softmax", "logit", "margin"] = "softmax", batch_size: int | None = None) -> None:
        if scorer not in ("current", "teacher"):
            raise ValueError(f"scorer must be 'current' or 'teacher', got {scorer!r}")
        if scorer == "teacher" and teacher is None:
            raise ValueError("scorer='teacher' needs teacher=<frozen model>")
        if score not in ("softmax", "logit", "margin"):
            raise ValueError(f"score must be 'softmax', 'logit' or 'margin', got {score!r}")
        self.scorer, self.teacher, self.score, self.batch_size = scorer, teacher, score, batch_size

    @torch.no_grad()
    def scores(self, strategy, data) -> torch.Tensor:  # noqa: ANN001
        """Output for the true class of every item of ``data``.

        With ``scorer="teacher"``, items of classes the teacher has no output for (the
        compound classes of a basic teacher) are scored by the strategy's model instead:
        sorting happens within a class, so each class is ranked by one model.

        Under ``torchrun`` each process scores every ``world_size``-th item and the scores
        are gathered, so every process sorts the same scores and keeps the same items."""
        teacher = self.teacher if self.scorer == "teacher" else None
        models = [m for m in (teacher, strategy.model) if m is not None]
        modes = [m.training for m in models]
        for m in models:
            m.eval()
        at = {id(m): model_device(m) for m in models}
        out = []
        n = len(data)
        if world_size() > 1:
            data = data.subset(shard(list(range(n))))
        try:
            bs = self.batch_size or getattr(strategy, "eval_mb_size", None) or 256
            for x, y, *_ in DataLoader(data, batch_size=bs, shuffle=False):
                y = y.long()
                vals, rest = torch.empty(len(y)), torch.arange(len(y))
                if teacher is not None:  # the teacher scores the classes it has an output for
                    logits = teacher(x.to(at[id(teacher)]))
                    known = y < logits.shape[1]
                    mine = known.to(logits.device)
                    vals[known] = self._true_class(logits[mine], y[known].to(logits.device)).float().cpu()
                    rest = (~known).nonzero()[:, 0]
                if len(rest):  # the strategy's model scores the rest (every item for scorer="current")
                    logits = strategy.model((x if len(rest) == len(y) else x[rest]).to(at[id(strategy.model)]))
                    vals[rest] = self._true_class(logits, y[rest].to(logits.device)).float().cpu()
                out.append(vals)
        finally:
            for m, was in zip(models, modes):
                m.train(was)
        return gather_shards(torch.cat(out) if out else torch.empty(0), total=n)

    def _true_class(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The score of each row's class ``y`` (-inf under ``"logit"`` for a class past the outputs)."""
        if self.score == "softmax":
            return torch.softmax(logits, 1).gather(1, y[:, None])[:, 0]
        if self.score == "margin":
            return _margins(logits.float(), y)
        vals = logits.gather(1, y.clamp_max(logits.shape[1] - 1)[:, None])[:, 0]
        return torch.where(y < logits.shape[1], vals, torch.full_like(vals, -float("inf")))

    def make_sorted_indices(self, strategy, data) -> list[int]:  # noqa: ANN001
        s = self.scores(strategy, data)
        return torch.argsort(-s, stable=True).tolist()


class _ClassBuffer(ExemplarsBuffer):
    """One class's exemplars, kept in sorted order; resizing only truncates.

    ``source`` records where the items come from (experience id and item indices in that
    experience's dataset, in buffer order), so the buffer can be saved and rebuilt.
    """

    def __init__(self, max_size: int) -> None:
        super().__init__(max_size)
        self.source: tuple[int, list[int]] = (-1, [])

    def take(self, data, experience: int, indices: list[int]) -> None:  # noqa: ANN001
        """Hold items ``indices`` of ``data`` (experience ``experience``'s dataset), in that order."""
        self.buffer = data.subset(indices)
        self.source = (experience, list(indices))

    def reorder(self, order: list[int]) -> None:
        self.buffer = self.buffer.subset(order)
        self.source = (self.source[0], [self.source[1][i] for i in order])

    def resize(self, strategy, new_size: int) -> None:  # noqa: ANN001
        self.max_size = new_size
        if len(self.buffer) > new_size:
            self.reorder(list(range(new_size)))


class PredictiveSortingBuffer(BalancedExemplarsBuffer):
    """The PSMR storage policy (see the module docstring).

    Args:
        max_size: The budget ``M`` in items.
        total_classes: Classes the stream will have (``m = floor(M / total_classes)``).
        mode: ``"grow"`` or ``"limit"``.
        scorer: ``"current"`` or ``"teacher"``.
        teacher: Frozen model for ``scorer="teacher"``.
        score: ``"softmax"``, ``"logit"`` or ``"margin"``.
        rescore_old: Re-sort old classes with the scorer before truncating them.
        new_class_selection: ``"sorted"``, ``"random"`` or ``"sorted_herding"``.
        seed: Seed of the random selection (a private generator).
        first_step_weight: A class of the first experience keeps this many times the items
            of a later class (1: every class alike, the published method). With a frozen
            teacher that knows the first experience's classes and is distilled on every
            input, those classes need fewer memory items than the classes only the memory
            keeps.

    Raises:
        ValueError: For a negative ``max_size``, ``total_classes`` < 1, an unknown ``mode``
            or ``new_class_selection``, or a ``first_step_weight`` that is not positive.
    """

    def __init__(
        self,
        *,
        max_size: int,
        total_classes: int,
        mode: Literal["grow", "limit"] = "grow",
        scorer: Literal["current", "teacher"] = "current",
        teacher: nn.Module | None = None,
        score: Literal["softmax", "logit", "margin"] = "softmax",
        rescore_old: bool = False,
        new_class_selection: Literal["sorted", "random", "sorted_herding"] = "sorted",
        seed: int = 0,
        first_step_weight: float = 1.0,
    ) -> None:
        if max_size < 0:
            raise ValueError(f"max_size must be >= 0, got {max_size}")
        if total_classes < 1:
            raise ValueError(f"total_classes must be >= 1, got {total_classes}")
        if mode not in ("grow", "limit"):
            raise ValueError(f"mode must be 'grow' or 'limit', got {mode!r}")
        if not first_step_weight > 0:
            raise ValueError(f"first_step_weight must be > 0 (1: every class alike), got {first_step_weight}")
        if new_class_selection not in ("sorted", "random", "sorted_herding"):
            raise ValueError("new_class_selection must be 'sorted', 'random' or 'sorted_herding', "
                             f"got {new_class_selection!r}")
        super().__init__(max_size, adaptive_size=True)
        self.total_classes = total_classes
        self.mode = mode
        self.rescore_old = rescore_old
        self.new_class_selection = new_class_selection
        self.selection = PredictiveSortingSelection(scorer=scorer, teacher=teacher, score=score)
        self._rng = np.random.default_rng(seed)
        self.first_step_weight = float(first_step_weight)
        self.first_classes: set[int] | None = None  # the first experience's classes, once seen
        if 0 < max_size < total_classes:
            end = ("every class gets 0 items and the buffer stays empty" if mode == "grow"
                   else f"once more than {max_size} classes are seen, every class gets 0 items")
            warnings.warn(MemoryBudgetWarning(
                f"a replay budget of {max_size} items for {total_classes} classes is less than one item per class: "
                f"{end}; raise the budget to at least {total_classes} items (--memory-size)"), stacklevel=2)

    @property
    def per_class_quota(self) -> int:
        """Items per class: ``m`` (grow) or ``floor(M / seen classes)`` (limit); with a
        ``first_step_weight`` other than 1, the quota of a class of a later step."""
        if self.first_step_weight != 1.0 and self.first_classes:
            return self._quotas()[1]
        if self.mode == "grow":
            return self.max_size // self.total_classes
        return self.max_size // max(1, len(self.buffer_groups))

    def quota_of(self, c: int) -> int:
        """Items class ``c`` may keep now (see ``first_step_weight``).

        Example:
            >>> policy = PredictiveSortingBuffer(max_size=90, total_classes=10, mode="limit", first_step_weight=0.5)
            >>> policy.first_classes = {0, 1}
            >>> policy.buffer_groups = {c: None for c in range(4)}  # four classes seen
            >>> [policy.quota_of(c) for c in range(4)]
            [15, 15, 30, 30]
        """
        if self.first_step_weight == 1.0 or not self.first_classes:
            return self.per_class_quota
        return self._quotas()[0 if c in self.first_classes else 1]

    def _quotas(self) -> tuple[int, int]:
        """A first-step class's and a later class's quota (grow mode counts every class to come)."""
        first = len(self.first_classes)
        classes = self.total_classes if self.mode == "grow" else len(self.buffer_groups)
        return class_quotas(self.max_size, first=first, later=max(0, classes - first), weight=self.first_step_weight)

    def post_adapt(self, agent, exp) -> None:  # noqa: ANN001
        data = exp.dataset
        targets = np.asarray([int(t) for t in data.targets])
        new_classes = [int(c) for c in np.unique(targets) if int(c) not in self.buffer_groups]
        for c in new_classes:
            self.buffer_groups[c] = _ClassBuffer(0)
        if self.first_classes is None:
            self.first_classes = set(new_classes)
        if self.rescore_old:
            for c, buf in self.buffer_groups.items():
                if c not in new_classes and len(buf.buffer):
                    buf.reorder(self.selection.make_sorted_indices(agent, buf.buffer))
        for c in new_classes:
            quota = self.quota_of(c)
            members = np.flatnonzero(targets == c)
            if self.new_class_selection == "sorted":
                order = self.selection.make_sorted_indices(agent, data.subset(members.tolist()))
            elif self.new_class_selection == "sorted_herding":
                ranked = self.selection.make_sorted_indices(agent, data.subset(members.tolist()))
                pool = ranked[: max(quota, (len(ranked) + 1) // 2)]
                order = [pool[i] for i in herding_order(self._features(agent, data.subset(members[pool].tolist())),
                                                        n=quota)]
            else:
                order = self._rng.permutation(len(members)).tolist()
            experience = int(getattr(exp, "current_experience", -1))
            self.buffer_groups[c].take(data, experience, members[order[:quota]].tolist())
        for c, buf in self.buffer_groups.items():
            buf.resize(agent, self.quota_of(c))
        logger.debug("PSMR buffer: %d classes, %d items", len(self.buffer_groups), len(self.buffer))

    def _features(self, agent, data) -> torch.Tensor:  # noqa: ANN001
        """L2-normalised pre-logit features of ``data`` under the scorer."""
        from cfer.continual.plugins.ncm import normalised_features
        from cfer.models.features import find_feature_layer

        model = self.selection.teacher if self.selection.scorer == "teacher" else agent.model
        return normalised_features(model, data, layer=find_feature_layer(model), device=model_device(model))[0]

    def resize(self, strategy, new_size: int) -> None:  # noqa: ANN001
        self.max_size = new_size
        for buf in self.buffer_groups.values():
            buf.resize(strategy, self.per_class_quota)

    def state_dict(self) -> dict:
        """What rebuilds the buffer: per class, its experience and item indices (no images).

        Example:
            >>> state = policy.state_dict()                              # doctest: +SKIP
            >>> policy2.load_state_dict(state, datasets=[e.dataset for e in stream.train_stream])  # doctest: +SKIP
        """
        return {
            "max_size": int(self.max_size),
            "classes": {int(c): {"experience": int(b.source[0]), "indices": list(b.source[1]),
                                 "max_size": int(b.max_size)} for c, b in self.buffer_groups.items()},
            "rng": json.dumps(self._rng.bit_generator.state),
            "first_classes": sorted(self.first_classes or ()),
        }

    def load_state_dict(self, state: dict, *, datasets) -> None:  # noqa: ANN001
        """Rebuild the buffer from :meth:`state_dict` and the experiences' datasets.

        Args:
            state: What :meth:`state_dict` returned.
            datasets: The training datasets of the stream's experiences, by experience id
                (the same stream, rebuilt with the same seed).

        Raises:
            ValueError: If an experience id or item index does not exist in ``datasets``.
        """
        datasets = list(datasets)
        self.max_size = int(state["max_size"])
        self.buffer_groups = {}
        for c, entry in sorted(state["classes"].items()):
            e, idx = int(entry["experience"]), [int(i) for i in entry["indices"]]
            if not 0 <= e < len(datasets) or (idx and max(idx) >= len(datasets[e])):
                raise ValueError(f"buffer state for class {c} points at experience {e} items beyond the given "
                                 f"datasets; rebuild the same stream (same data, seed and class order)")
            buf = _ClassBuffer(int(entry["max_size"]))
            buf.take(datasets[e], e, idx)
            self.buffer_groups[int(c)] = buf
        self._rng.bit_generator.state = json.loads(state["rng"])
        if "first_classes" in state:
            self.first_classes = {int(c) for c in state["first_classes"]} or None
        else:  # a checkpoint from before the weight existed: the classes of the earliest experience
            first = min((int(e["experience"]) for e in state["classes"].values()), default=None)
            self.first_classes = ({int(c) for c, e in state["classes"].items() if int(e["experience"]) == first}
                                  or None)


def class_quotas(max_size: int, *, first: int, later: int, weight: float) -> tuple[int, int]:
    """Items a first-step class and a later class keep when ``first`` and ``later`` classes
    share ``max_size``, a first-step class with ``weight`` shares (``first_step_weight``)."""
    shares = weight * first + later
    return int(max_size * weight // shares), int(max_size // shares)


def _margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each row's logit for its class ``y`` minus its highest other logit (``-inf`` for a
    class beyond the head)."""
    n = logits.shape[1]
    inside = y < n
    true = logits.gather(1, y.clamp_max(n - 1)[:, None])[:, 0]
    others = logits.scatter(1, y.clamp_max(n - 1)[:, None], -float("inf")).amax(1) if n > 1 else torch.zeros_like(true)
    return torch.where(inside, true - others, torch.full_like(true, -float("inf")))


def psmr_plugin(*, max_size: int, total_classes: int, batches: Literal["mixed", "concat"] = "mixed",
                **kwargs) -> ReplayPlugin:  # noqa: ANN003
    """Avalanche's ``ReplayPlugin`` with a :class:`PredictiveSortingBuffer`.

    Args:
        max_size: The budget ``M``.
        total_classes: Classes the stream will have.
        batches: ``"mixed"``: every mini-batch is half new data, half memory, and an epoch
            is one pass over the new data (Avalanche's ``ReplayPlugin``, the published
            method); ``"concat"``: an epoch is one pass over the new data and the whole
            memory together (as iCaRL trains; about ``1 + M / new items`` times the updates).
        **kwargs: :class:`PredictiveSortingBuffer`'s options.
    """
    if batches not in ("mixed", "concat"):
        raise ValueError(f"batches must be 'mixed' or 'concat', got {batches!r}")
    policy = PredictiveSortingBuffer(max_size=max_size, total_classes=total_classes, **kwargs)
    if batches == "concat":
        return ConcatReplayPlugin(mem_size=max_size, storage_policy=policy)
    return ReplayPlugin(mem_size=max_size, storage_policy=policy)


class ConcatReplayPlugin(ReplayPlugin, supports_distributed=True):
    """Avalanche's ``ReplayPlugin``, training on the new data and the whole memory concatenated
    (an epoch is one pass over both) instead of half-memory mini-batches."""

    def after_train_dataset_adaptation(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if len(self.storage_policy.buffer):
            strategy.adapted_dataset = concat_datasets((strategy.adapted_dataset, self.storage_policy.buffer))

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        return None  # the strategy's own loader, over the concatenated data
