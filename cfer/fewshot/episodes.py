"""N-way K-shot few-shot evaluation over cached embeddings, done so it cannot be gamed.

Each item is embedded **once**; episodes are then sampled in feature space
(:mod:`cfer.fewshot.sampling`: learn2learn's ``NWays``/``KShots`` task transforms, or cfer's
built-in sampler where learn2learn is not installed). Every episode holds ``ways`` classes
with ``shots`` support and ``queries`` query items each, support and query disjoint, and
queries from **every** class of the episode, so a classifier that always answers the same
class scores ``1/ways``, not 100%.

The published one-new-class protocol, scored honestly, is in :mod:`cfer.fewshot.protocols`.

Entry points, from arrays to models:

* :func:`evaluate_embeddings` ``(features, labels)``: embeddings you computed; labels may
  be any integers or strings.
* :func:`evaluate_dataset` ``(data)``: a dataset (:func:`~cfer.fewshot.pools.read_pool`: a
  cfer FaceDataset, any torch dataset with ``targets``, a learn2learn ``MetaDataset``) or a
  learn2learn ``TaskDataset`` whose task transforms draw the episodes; its items are the
  features unless ``model=`` embeds them.
* :func:`evaluate_model` ``(model, data)``: the same with an encoder, a cfer/timm model or
  any model with ``embed_fn=``.

Classifiers fitted on the support set: nearest prototype (``"prototype"``: Euclidean,
``"cosine"``), a logistic-regression probe (``"logistic"``), and fine-tuning a fresh head
(with the encoder) on the support *images* (``"finetune"``; see :func:`finetune_episodes`).

The result is a :class:`FewShotResult`: mean accuracy, a 95% confidence interval
(``1.96 * sd / sqrt(episodes)``, sample standard deviation over episodes), per-class
accuracy and the number of episodes; it serialises to JSON.

Example:
    >>> import torch
    >>> from cfer.fewshot.episodes import EpisodeConfig, evaluate_embeddings
    >>> labels = torch.arange(100, 110).repeat_interleave(20)
    >>> feats = torch.randn(200, 8) + labels[:, None] - 100
    >>> res = evaluate_embeddings(feats, labels, config=EpisodeConfig(ways=5, shots=1, queries=5, episodes=50))
    >>> res.accuracy > 0.5, res.episodes, sorted(res.per_class)[:2]
    (True, 50, ['100', '101'])
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from cfer.distributed import model_device
from cfer.fewshot.config import CLASSIFIERS, SAMPLERS, EpisodeConfig, FewShotResult, confidence_interval
from cfer.fewshot.pools import Pool, is_taskset, read_pool, task_episodes
from cfer.fewshot.sampling import Episode, draw_episodes, encode_labels, sample_episodes
from cfer.models.features import pre_logits

__all__ = [
    "EpisodeConfig",
    "FewShotResult",
    "CLASSIFIERS",
    "SAMPLERS",
    "confidence_interval",
    "embed",
    "sample_episodes",
    "evaluate_embeddings",
    "evaluate_dataset",
    "evaluate_model",
    "finetune_episodes",
]

EmbedFn = Callable[[Any, torch.Tensor], torch.Tensor]
Labels = Sequence[object] | np.ndarray | torch.Tensor
Names = Sequence[str] | Mapping[object, str] | None


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


def _episode_labels(config: EpisodeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.arange(config.ways).repeat_interleave(config.shots),
            torch.arange(config.ways).repeat_interleave(config.queries))


def _result(accs: list[float], hit: np.ndarray, seen: np.ndarray, names: Sequence[str], config: EpisodeConfig,
            sampler: str) -> FewShotResult:
    per_class = {names[c]: float(hit[c] / seen[c]) for c in range(len(names)) if seen[c] > 0}
    return FewShotResult(accuracy=float(np.mean(accs)), ci95=confidence_interval(accs), episodes=len(accs),
                         per_class=per_class, config={**asdict(config), "sampler": sampler}, episode_accuracies=accs)


def _score(feats: torch.Tensor, episodes: list[Episode], names: Sequence[str], config: EpisodeConfig,
           sampler: str) -> FewShotResult:
    """Fit ``config.classifier`` on each episode's support features and score its queries."""
    accs: list[float] = []
    hit, seen = np.zeros(len(names)), np.zeros(len(names))
    sy, qy = _episode_labels(config)
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
    return _result(accs, hit, seen, names, config, sampler)


def evaluate_embeddings(
    features: torch.Tensor | np.ndarray,
    labels: Labels,
    *,
    class_names: Names = None,
    config: EpisodeConfig = EpisodeConfig(),
) -> FewShotResult:
    """Episodic accuracy of a classifier fitted on each episode's support embeddings.

    Args:
        features: ``(N, D)`` embeddings of the pool (computed once, e.g. with :func:`embed`).
        labels: ``N`` labels: any integers (``100..119`` too) or strings.
        class_names: Names to report: a sequence indexed by label (labels ``0..len-1``), a
            mapping ``{label: name}``, or None (classes are named by their labels, as text).
        config: The episodes; ``classifier`` must not be ``"finetune"`` (that one needs
            images: :func:`finetune_episodes`).

    Returns:
        A :class:`FewShotResult`, ``per_class`` keyed by class name.

    Raises:
        ValueError: If the shapes disagree, a class has too few items or the pool too few
            classes (naming them and their counts).
    """
    if config.classifier == "finetune":
        raise ValueError("classifier 'finetune' needs the images: use cfer.fewshot.episodes.finetune_episodes")
    feats = torch.as_tensor(features).detach().float().cpu()
    ids, names, _ = encode_labels(labels, class_names)
    if feats.ndim != 2 or len(feats) != len(ids):
        raise ValueError(f"features must be (N, D) with one row per label; got {tuple(feats.shape)} and "
                         f"{len(ids)} labels")
    episodes, sampler = draw_episodes(ids, names, config)
    return _score(feats, episodes, names, config, sampler)


@torch.no_grad()
def _pre_logits(model: Any, x: torch.Tensor) -> torch.Tensor:
    try:
        return pre_logits(model, x)
    except ValueError as exc:
        raise ValueError(f"{exc}; or give the few-shot evaluation embed_fn=<(model, x) -> features>") from None


def _device_of(model: Any) -> torch.device | None:
    """Where an ``nn.Module`` computes; None for anything else (inputs stay put)."""
    return model_device(model, default=None) if isinstance(model, nn.Module) else None


def _to(x: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    return x if device is None else x.to(device)


def embed(model: Any, images: torch.Tensor, *, batch_size: int = 256, embed_fn: EmbedFn | None = None) -> torch.Tensor:
    """Pre-logit features of every image, in eval mode (an ``nn.Module``'s mode is restored).

    Args:
        model: Any ``nn.Module``: its features before the classifier are read with
            :func:`cfer.models.features.pre_logits` (timm's feature API where the model
            has it, else a forward hook on the classifier's input); or any model (or
            callable) with ``embed_fn``.
        images: ``(N, ...)`` tensor of inputs.
        batch_size: Images per forward pass.
        embed_fn: Custom ``(model, x) -> features``, e.g. ``lambda m, x: m(x)`` for a model
            whose output is the features.

    Returns:
        ``(N, D)`` features, on the model's device: an ``nn.Module`` with parameters gets each
        batch on the device of its first parameter (other models get the images as given).
    """
    was = model.training if isinstance(model, nn.Module) else None
    if was is not None:
        model.eval()
    device = _device_of(model)
    fn = embed_fn or _pre_logits
    try:
        return torch.cat([fn(model, _to(images[i:i + batch_size], device)).flatten(1)
                          for i in range(0, len(images), batch_size)])
    finally:
        if was is not None:
            model.train(was)


def _embed_pool(pool: Pool, model: Any, embed_fn: EmbedFn | None, batch_size: int) -> torch.Tensor:
    chunks = []
    for i in range(0, len(pool), batch_size):
        x = pool.load(np.arange(i, min(i + batch_size, len(pool))))
        f = x.detach().float() if model is None else embed(model, x, batch_size=batch_size, embed_fn=embed_fn)
        chunks.append(f.flatten(1).cpu())
    return torch.cat(chunks)


def evaluate_dataset(
    data: Any,
    *,
    config: EpisodeConfig = EpisodeConfig(),
    model: Any = None,
    embed_fn: EmbedFn | None = None,
    classes: Sequence[object] | None = None,
    batch_size: int = 256,
) -> FewShotResult:
    """Episodes over a dataset: its items are the features, or ``model`` embeds them once.

    Args:
        data: One of

            * a cfer :class:`~cfer.data.FaceDataset` (default classes: its compound ones);
            * any torch ``Dataset`` with a ``targets`` attribute whose items are ``(x, y)``
              (torchvision's, Avalanche's; class names from its ``classes`` when they index
              integer targets);
            * a learn2learn ``MetaDataset`` over a dataset of ``(x, y)`` (labels from its
              bookkeeping); ``config`` draws the episodes;
            * a learn2learn ``TaskDataset``: **its** task transforms draw the episodes, which
              must match ``config`` (``NWays(meta, ways)``, ``KShots(meta, shots +
              queries)``); see :func:`~cfer.fewshot.pools.task_episodes`.
        config: The episodes.
        model: The encoder; None: the items are the features (flattened).
        embed_fn: ``(model, x) -> features`` (default: the timm pre-logit features).
        classes: Classes to draw from, by name or label (not with a TaskDataset: filter its
            classes with learn2learn's ``FilterLabels``).
        batch_size: Items per forward pass.

    Raises:
        ValueError: If a requested class has no items, a class too few, or the pool too
            few classes (naming them with their counts).
        TypeError: If ``data`` is none of the kinds above.
    """
    if embed_fn is not None and model is None:
        raise ValueError("embed_fn is called as embed_fn(model, x): pass model= too, or no embed_fn when the items "
                         "are the features")
    if config.classifier == "finetune" and not isinstance(model, nn.Module):
        raise ValueError("classifier 'finetune' trains a copy of the encoder: pass model= (an nn.Module)")
    if is_taskset(data):
        if classes is not None:
            raise ValueError("a TaskDataset's task transforms choose the classes: filter them with learn2learn's "
                             "FilterLabels(meta, labels), or pass its MetaDataset (tasks.dataset) with classes=")
        _, episodes, _, names, pool = task_episodes(data, config)
        sampler = "learn2learn"
    else:
        pool = read_pool(data, classes)
        ids, names, _ = encode_labels(pool.labels, pool.class_names)
        episodes, sampler = draw_episodes(ids, names, config)
    if config.classifier == "finetune":
        return _finetune(model, pool.load(np.arange(len(pool))), episodes, names, config, sampler, embed_fn)
    return _score(_embed_pool(pool, model, embed_fn, batch_size), episodes, names, config, sampler)


def evaluate_model(model: Any, data: Any, *, config: EpisodeConfig = EpisodeConfig(),
                   classes: Sequence[object] | None = None, batch_size: int = 256,
                   embed_fn: EmbedFn | None = None) -> FewShotResult:
    """Embed a dataset once with ``model`` and run the episodes (:func:`evaluate_dataset`).

    Args:
        model: The encoder: a cfer/timm model (pre-logit features), or any model (or
            callable) with ``embed_fn``.
        data: The pool: a cfer :class:`~cfer.data.FaceDataset`, any torch dataset with
            ``targets``, a learn2learn ``MetaDataset`` or ``TaskDataset``.
        config: The episodes.
        classes: Classes to draw episodes from (default: the compound classes of a
            FaceDataset, novel to a basic encoder; every class of other datasets).
        batch_size: Images per forward pass.
        embed_fn: ``(model, x) -> features``, e.g. ``lambda m, x: m(x)``.
    """
    if model is None:
        raise ValueError("evaluate_model needs a model; for items that are already features use "
                         "evaluate_dataset(data) or evaluate_embeddings(features, labels)")
    return evaluate_dataset(data, config=config, model=model, embed_fn=embed_fn, classes=classes,
                            batch_size=batch_size)


def _train_frozen_bn(model: nn.Module) -> None:
    """Train mode, but batch-norm layers keep their running statistics (a few support
    images are too few to estimate them, and one image per batch cannot be normalised)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def finetune_episodes(model: nn.Module, images: torch.Tensor, labels: Labels, *, class_names: Names = None,
                      config: EpisodeConfig, embed_fn: EmbedFn | None = None) -> FewShotResult:
    """Per episode: a copy of the encoder plus a fresh linear head, fine-tuned on the support
    images for ``finetune_steps`` Adam steps, then scored on the queries.

    The caller's model is never modified (each episode trains a copy); batch-norm running
    statistics are kept fixed while fine-tuning. ``labels`` and ``class_names`` are as in
    :func:`evaluate_embeddings`; ``embed_fn`` as in :func:`embed` (it must keep gradients).
    """
    ids, names, _ = encode_labels(labels, class_names)
    episodes, sampler = draw_episodes(ids, names, config)
    return _finetune(model, images, episodes, names, config, sampler, embed_fn)


def _finetune(model: nn.Module, images: torch.Tensor, episodes: list[Episode], names: Sequence[str],
              config: EpisodeConfig, sampler: str, embed_fn: EmbedFn | None) -> FewShotResult:
    features = embed_fn or pre_logits
    sy, qy = _episode_labels(config)
    hit, seen, accs = np.zeros(len(names)), np.zeros(len(names)), []
    gen = torch.Generator().manual_seed(config.seed)
    device = _device_of(model)
    for support, query, classes in episodes:
        enc = copy.deepcopy(model)
        with torch.no_grad():
            probe = embed(enc, images[support[:1]], embed_fn=embed_fn)
        dim = probe.shape[1]
        _train_frozen_bn(enc)
        head = nn.Linear(dim, config.ways).to(probe.device)  # initialised on the CPU, then moved
        with torch.no_grad():
            head.weight.copy_(torch.randn(config.ways, dim, generator=gen) * 0.01)
            head.bias.zero_()
        opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=config.finetune_lr)
        xs, sy_at = _to(images[support], device), sy.to(probe.device)
        for _ in range(config.finetune_steps):
            opt.zero_grad()
            nn.functional.cross_entropy(head(features(enc, xs).flatten(1)), sy_at).backward()
            opt.step()
        with torch.no_grad():
            pred = head(embed(enc, images[query], embed_fn=embed_fn)).argmax(1).cpu()
        ok = (pred == qy).numpy()
        accs.append(float(ok.mean()))
        np.add.at(hit, classes[qy.numpy()], ok)
        np.add.at(seen, classes[qy.numpy()], 1)
    return _result(accs, hit, seen, names, config, sampler)
