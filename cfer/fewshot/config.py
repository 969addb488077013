"""What an episodic evaluation asks for and what it gives back.

:class:`EpisodeConfig` is the question (ways, shots, queries, episodes, classifier, seed and
the sampler that draws the episodes), :class:`FewShotResult` the answer (mean accuracy, a
95% confidence interval, per-class accuracy). Both live here, below the samplers
(:mod:`cfer.fewshot.sampling`) and the evaluation (:mod:`cfer.fewshot.episodes`), which
re-exports them.

Example:
    >>> EpisodeConfig(ways=5, shots=1).sampler
    'auto'
    >>> round(confidence_interval([0.5, 0.7, 0.6, 0.8]), 4)
    0.1265
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["CLASSIFIERS", "SAMPLERS", "EpisodeConfig", "FewShotResult", "confidence_interval"]

CLASSIFIERS = ("prototype", "cosine", "logistic", "finetune")
SAMPLERS = ("auto", "learn2learn", "builtin")


@dataclass(frozen=True)
class EpisodeConfig:
    """An episodic evaluation.

    Attributes:
        ways: Classes per episode (N).
        shots: Support items per class (K).
        queries: Query items per class (Q).
        episodes: Number of episodes.
        classifier: One of :data:`CLASSIFIERS`.
        seed: Seed of the episode sampler.
        finetune_steps: Optimiser steps for ``"finetune"``.
        finetune_lr: Learning rate for ``"finetune"``.
        sampler: Who draws the episodes (:data:`SAMPLERS`): ``"learn2learn"`` (its
            ``NWays``/``KShots`` task transforms; learn2learn must be installed),
            ``"builtin"`` (cfer's own sampler: same contract, other episodes for a seed), or
            ``"auto"`` (learn2learn when it imports, else the built-in one). A result's
            ``config`` records the sampler that actually drew its episodes.
    """

    ways: int = 5
    shots: int = 1
    queries: int = 10
    episodes: int = 600
    classifier: str = "prototype"
    seed: int = 0
    finetune_steps: int = 20
    finetune_lr: float = 1e-2
    sampler: str = "auto"

    def __post_init__(self) -> None:
        for name in ("ways", "shots", "queries", "episodes", "finetune_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.ways < 2:
            raise ValueError("ways must be >= 2: a 1-way episode cannot measure recognition")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {self.classifier!r}; choose one of {list(CLASSIFIERS)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {list(SAMPLERS)}")


@dataclass
class FewShotResult:
    """Outcome of an episodic evaluation (JSON-serialisable with :meth:`to_json`).

    Attributes:
        accuracy: Mean query accuracy over the episodes.
        ci95: Half-width of its 95% confidence interval (:func:`confidence_interval`).
        episodes: Number of episodes.
        per_class: Query accuracy of each class, keyed by class name (the original label,
            as text, when the classes have no names).
        config: The :class:`EpisodeConfig` as run, ``sampler`` resolved to the one that drew
            the episodes (``"learn2learn"`` or ``"builtin"``; ``"learn2learn"`` too for
            episodes that a learn2learn TaskDataset drew), so ``EpisodeConfig(**config)``
            draws the same episodes again.
        episode_accuracies: The accuracy of every episode (left out of :meth:`to_dict`
            unless asked for).
    """

    accuracy: float
    ci95: float
    episodes: int
    per_class: dict[str, float]
    config: dict
    episode_accuracies: list[float] = field(default_factory=list, repr=False)

    def to_dict(self, *, with_episodes: bool = False) -> dict:
        d = asdict(self)
        if not with_episodes:
            d.pop("episode_accuracies")
        return d

    def to_json(self, **kwargs) -> str:  # noqa: ANN003
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self) -> str:
        c = self.config
        return (f"{c['ways']}-way {c['shots']}-shot ({c['classifier']}): {100 * self.accuracy:.2f}% "
                f"± {100 * self.ci95:.2f} (95% CI, {self.episodes} episodes)")


def confidence_interval(accuracies: Sequence[float]) -> float:
    """Half-width of the 95% normal confidence interval of the mean: ``1.96 * sd / sqrt(n)``.

    ``sd`` is the sample standard deviation (``ddof=1``); one value gives 0.

    Example:
        >>> round(confidence_interval([0.5, 0.7, 0.6, 0.8]), 4)
        0.1265
    """
    a = np.asarray(accuracies, float)
    if len(a) < 2:
        return 0.0
    return float(1.96 * a.std(ddof=1) / math.sqrt(len(a)))
