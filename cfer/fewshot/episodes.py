"""N-way K-shot few-shot evaluation over cached embeddings, done so it cannot be gamed.

Each image is embedded **once**; episodes are then sampled in feature space with
learn2learn's task transforms (``NWays``, ``KShots``, ``LoadData``, ``RemapLabels``).
Every episode holds ``ways`` classes with ``shots`` support and ``queries`` query items
each, support and query disjoint, and queries from **every** class of the episode, so a
classifier that always answers the same class scores ``1/ways``, not 100%.

The published one-new-class protocol, scored honestly, is in :mod:`cfer.fewshot.protocols`.

Classifiers fitted on the support set: nearest prototype (``"prototype"``: Euclidean,
``"cosine"``), a logistic-regression probe (``"logistic"``), and fine-tuning a fresh head
(with the encoder) on the support *images* (``"finetune"``; see :func:`finetune_episodes`).

The result is a :class:`FewShotResult`: mean accuracy, a 95% confidence interval
(``1.96 * sd / sqrt(episodes)``, sample standard deviation over episodes), per-class
accuracy and the number of episodes; it serialises to JSON.

Sampling is seeded and private: Python's global ``random`` (which learn2learn's
``NWays`` draws from) is saved, seeded and restored around sampling, so the same seed
gives the same episodes whatever the caller did before, and the caller's random state
is left as it was.

Example:
    >>> import torch
    >>> from cfer.fewshot.episodes import EpisodeConfig, evaluate_embeddings
    >>> feats = torch.randn(200, 8) + torch.arange(10).repeat_interleave(20)[:, None]
    >>> labels = torch.arange(10).repeat_interleave(20)
    >>> res = evaluate_embeddings(features=feats, labels=labels, class_names=[str(i) for i in range(10)],
    ...                           config=EpisodeConfig(ways=5, shots=1, queries=5, episodes=50))
    >>> res.accuracy > 0.5, res.episodes
    (True, 50)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from cfer.models.features import pre_logits

__all__ = [
    "EpisodeConfig",
    "FewShotResult",
    "CLASSIFIERS",
    "confidence_interval",
    "embed",
    "sample_episodes",
    "evaluate_embeddings",
    "evaluate_model",
    "finetune_episodes",
]

logger = logging.getLogger(__name__)

CLASSIFIERS = ("prototype", "cosine", "logistic", "finetune")


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
    """

    ways: int = 5
    shots: int = 1
    queries: int = 10
    episodes: int = 600
    classifier: str = "prototype"
    seed: int = 0
    finetune_steps: int = 20
    finetune_lr: float = 1e-2

    def __post_init__(self) -> None:
        for name in ("ways", "shots", "queries", "episodes", "finetune_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.ways < 2:
            raise ValueError("ways must be >= 2: a 1-way episode cannot measure recognition")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {self.classifier!r}; choose one of {list(CLASSIFIERS)}")


@dataclass
class FewShotResult:
    """Outcome of an episodic evaluation (JSON-serialisable with :meth:`to_json`)."""

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


@contextlib.contextmanager
def _private_random(seed: int) -> Iterator[None]:
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _check_pool(labels: np.ndarray, class_names: Sequence[str], config: EpisodeConfig) -> None:
    need = config.shots + config.queries
    counts = np.bincount(labels, minlength=len(class_names))
    short = [(class_names[c], int(counts[c])) for c in np.unique(labels) if counts[c] < need]
    if short:
        listing = ", ".join(f"{n!r} has {k}" for n, k in short)
        raise ValueError(
            f"every class needs at least shots + queries = {config.shots} + {config.queries} = {need} items; "
            f"{listing}. Lower --shots/--queries or add data"
        )
    n_classes = len(np.unique(labels))
    if n_classes < config.ways:
        raise ValueError(f"{config.ways}-way episodes need {config.ways} classes, the pool has {n_classes}")


def sample_episodes(
    *, labels: Sequence[int] | np.ndarray | torch.Tensor, config: EpisodeConfig,
    class_names: Sequence[str] | None = None,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Draw episodes as index arrays with learn2learn's task transforms.

    Args:
        labels: Label of every item of the pool.
        config: Ways, shots, queries, episodes and seed.
        class_names: Names for error messages (default: the label ids).

    Returns:
        ``episodes`` tuples ``(support_idx, query_idx, classes)``: pool indices
        (``ways * shots`` and ``ways * queries``, class-major) and the ``ways`` pool labels
        in episode order (episode label ``j`` is ``classes[j]``).

    Raises:
        ValueError: If a class has fewer than ``shots + queries`` items (naming it and
            the counts) or the pool has fewer than ``ways`` classes.
    """
    import learn2learn as l2l
    from learn2learn.data.transforms import KShots, NWays

    lab = np.asarray(torch.as_tensor(labels).cpu().numpy(), dtype=np.int64)
    names = list(class_names) if class_names is not None else [str(i) for i in range(int(lab.max()) + 1)]
    _check_pool(lab, names, config)
    index_ds = _LabelOnly(lab)
    meta = l2l.data.MetaDataset(index_ds)
    per = config.shots + config.queries
    taskset = l2l.data.TaskDataset(meta, task_transforms=[NWays(meta, config.ways), KShots(meta, per)],
                                   num_tasks=-1)
    out = []
    with _private_random(config.seed):
        for _ in range(config.episodes):
            desc = taskset.sample_task_description()
            idx = np.fromiter((d.index for d in desc), dtype=np.int64, count=len(desc))
            classes = list(dict.fromkeys(lab[idx].tolist()))
            by_class = [idx[lab[idx] == c] for c in classes]
            support = np.concatenate([b[: config.shots] for b in by_class])
            query = np.concatenate([b[config.shots:] for b in by_class])
            out.append((support, query, np.asarray(classes)))
    return out


class _LabelOnly(torch.utils.data.Dataset):
    """A dataset of item indices with labels: learn2learn indexes it, we keep the features."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return i, int(self.labels[i])


def _prototype_predict(s: torch.Tensor, sy: torch.Tensor, q: torch.Tensor, ways: int, cosine: bool) -> torch.Tensor:
    if cosine:
        s, q = nn.functional.normalize(s, dim=1), nn.functional.normalize(q, dim=1)
    protos = torch.zeros(ways, s.shape[1], dtype=s.dtype).index_add_(0, sy, s)
    protos /= torch.bincount(sy, minlength=ways).clamp_min(1)[:, None].to(s.dtype)
    if cosine:
        return (q @ nn.functional.normalize(protos, dim=1).T).argmax(1)
    return torch.cdist(q, protos).argmin(1)


def _logistic_predict(s: torch.Tensor, sy: torch.Tensor, q: torch.Tensor, ways: int) -> torch.Tensor:
    from sklearn.linear_model import LogisticRegression

    mu, sd = s.mean(0), s.std(0, unbiased=False) + 1e-6
    clf = LogisticRegression(max_iter=200, C=1.0)
    clf.fit(((s - mu) / sd).numpy(), sy.numpy())
    return torch.as_tensor(clf.predict(((q - mu) / sd).numpy()))


def evaluate_embeddings(
    *,
    features: torch.Tensor,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    config: EpisodeConfig = EpisodeConfig(),
) -> FewShotResult:
    """Episodic accuracy of a classifier fitted on each episode's support embeddings.

    Args:
        features: ``(N, D)`` embeddings of the pool (computed once, e.g. with :func:`embed`).
        labels: ``N`` labels indexing ``class_names``.
        class_names: Name of each label.
        config: The episodes; ``classifier`` must not be ``"finetune"`` (that one needs
            images: :func:`finetune_episodes`).

    Returns:
        A :class:`FewShotResult`.
    """
    if config.classifier == "finetune":
        raise ValueError("classifier 'finetune' needs the images: use cfer.fewshot.episodes.finetune_episodes")
    feats = torch.as_tensor(features).detach().float().cpu()
    lab = torch.as_tensor(labels).long().cpu()
    if feats.ndim != 2 or len(feats) != len(lab):
        raise ValueError(f"features must be (N, D) with one row per label; got {tuple(feats.shape)} and "
                         f"{len(lab)} labels")
    episodes = sample_episodes(labels=lab, config=config, class_names=class_names)
    accs: list[float] = []
    hit, seen = np.zeros(len(class_names)), np.zeros(len(class_names))
    sy = torch.arange(config.ways).repeat_interleave(config.shots)
    qy = torch.arange(config.ways).repeat_interleave(config.queries)
    for support, query, classes in episodes:
        s, q = feats[support], feats[query]
        if config.classifier == "logistic":
            pred = _logistic_predict(s, sy, q, config.ways)
        else:
            pred = _prototype_predict(s, sy, q, config.ways, cosine=config.classifier == "cosine")
        ok = (pred == qy).numpy()
        accs.append(float(ok.mean()))
        np.add.at(hit, classes[qy.numpy()], ok)
        np.add.at(seen, classes[qy.numpy()], 1)
    return _result(accs, hit, seen, class_names, config)


def _result(accs: list[float], hit: np.ndarray, seen: np.ndarray, class_names: Sequence[str],
            config: EpisodeConfig) -> FewShotResult:
    per_class = {class_names[c]: float(hit[c] / seen[c]) for c in range(len(class_names)) if seen[c] > 0}
    return FewShotResult(accuracy=float(np.mean(accs)), ci95=confidence_interval(accs), episodes=len(accs),
                         per_class=per_class, config=asdict(config), episode_accuracies=accs)


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
          embed_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Pre-logit features of every image, in eval mode (the model's mode is restored).

    Args:
        model: Any model with ``forward_features``/``forward_head(pre_logits=True)`` (timm,
            cfer), or pass ``embed_fn``.
        images: ``(N, C, H, W)`` float tensor.
        batch_size: Images per forward pass.
        embed_fn: Custom ``(model, x) -> features``.
    """
    was = model.training
    model.eval()
    fn = embed_fn or pre_logits
    try:
        return torch.cat([fn(model, images[i:i + batch_size]).flatten(1) for i in range(0, len(images), batch_size)])
    finally:
        model.train(was)


def evaluate_model(model: nn.Module, data, *, config: EpisodeConfig = EpisodeConfig(),  # noqa: ANN001
                   classes: Sequence[str] | None = None, batch_size: int = 256) -> FewShotResult:
    """Embed a :class:`~cfer.data.FaceDataset` once with ``model`` and run the episodes.

    Args:
        model: The encoder.
        data: The pool of faces.
        config: The episodes.
        classes: Classes to draw episodes from (default: the compound classes of ``data``,
            novel to a basic encoder).
        batch_size: Images per forward pass.
    """
    from cfer import taxonomy

    names = list(data.classes)
    if classes is None:
        wanted = [c for c in names if c in taxonomy.COMPOUND]
    else:
        wanted = list(taxonomy.normalize_many(list(classes)))
    if not wanted:
        raise ValueError("no classes to draw episodes from: the data has no compound class; pass classes=[...]")
    keep = np.flatnonzero(np.isin(np.asarray(names)[data.labels], wanted))
    pool = data.subset(keep)
    x, y = pool.tensors()
    if config.classifier == "finetune":
        return finetune_episodes(model, images=x, labels=y, class_names=list(pool.classes), config=config)
    feats = embed(model, x, batch_size=batch_size)
    return evaluate_embeddings(features=feats, labels=y, class_names=list(pool.classes), config=config)


def _train_frozen_bn(model: nn.Module) -> None:
    """Train mode, but batch-norm layers keep their running statistics (a few support
    images are too few to estimate them, and one image per batch cannot be normalised)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def finetune_episodes(model: nn.Module, *, images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str],
                      config: EpisodeConfig) -> FewShotResult:
    """Per episode: a copy of the encoder plus a fresh linear head, fine-tuned on the support
    images for ``finetune_steps`` Adam steps, then scored on the queries.

    The caller's model is never modified (each episode trains a copy); batch-norm running
    statistics are kept fixed while fine-tuning.
    """
    import copy

    episodes = sample_episodes(labels=labels, config=config, class_names=class_names)
    sy = torch.arange(config.ways).repeat_interleave(config.shots)
    qy = torch.arange(config.ways).repeat_interleave(config.queries)
    hit, seen, accs = np.zeros(len(class_names)), np.zeros(len(class_names)), []
    gen = torch.Generator().manual_seed(config.seed)
    for support, query, classes in episodes:
        enc = copy.deepcopy(model)
        with torch.no_grad():
            dim = embed(enc, images[support[:1]]).shape[1]
        _train_frozen_bn(enc)
        head = nn.Linear(dim, config.ways)
        with torch.no_grad():
            head.weight.copy_(torch.randn(config.ways, dim, generator=gen) * 0.01)
            head.bias.zero_()
        opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=config.finetune_lr)
        xs = images[support]
        for _ in range(config.finetune_steps):
            opt.zero_grad()
            f = pre_logits(enc, xs)
            nn.functional.cross_entropy(head(f), sy).backward()
            opt.step()
        with torch.no_grad():
            pred = head(embed(enc, images[query])).argmax(1)
        ok = (pred == qy).numpy()
        accs.append(float(ok.mean()))
        np.add.at(hit, classes[qy.numpy()], ok)
        np.add.at(seen, classes[qy.numpy()], 1)
    return _result(accs, hit, seen, class_names, config)

