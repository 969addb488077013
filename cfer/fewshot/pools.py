"""The pools few-shot episodes are drawn from: cfer faces, any labelled torch dataset,
learn2learn's ``MetaDataset`` and ``TaskDataset``.

:func:`read_pool` turns a dataset into labels, class names and a loader of its items;
:func:`task_episodes` reads the episodes a learn2learn ``TaskDataset`` draws. Neither
imports learn2learn: its objects are recognised by their attributes
(``indices_to_labels``; ``sample_task_description``).

Example:
    >>> import torch
    >>> class Points(torch.utils.data.Dataset):
    ...     targets = [7, 7, 9]
    ...     def __len__(self): return 3
    ...     def __getitem__(self, i): return torch.full((2,), float(i)), self.targets[i]
    >>> pool = read_pool(Points())
    >>> pool.labels.tolist(), pool.load([0, 2]).tolist()
    ([7, 7, 9], [[0.0, 0.0], [2.0, 2.0]])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from cfer.fewshot.config import EpisodeConfig
from cfer.fewshot.sampling import Episode, encode_labels, label_array, private_random

__all__ = ["Pool", "read_pool", "is_taskset", "task_episodes"]

_KINDS = ("a cfer FaceDataset, a torch Dataset with a `targets` attribute (one label per item, items (x, y)), "
          "or a learn2learn MetaDataset or TaskDataset")


@dataclass
class Pool:
    """The items episodes are drawn from.

    Attributes:
        labels: The label of every item (original values: integers or strings).
        class_names: Names of the labels (for :func:`~cfer.fewshot.sampling.encode_labels`),
            or None when the labels name themselves.
        load: ``load(positions)`` gives the items at those pool positions as one tensor.
    """

    labels: np.ndarray
    class_names: Sequence[str] | Mapping[object, str] | None
    load: Callable[[Sequence[int] | np.ndarray], torch.Tensor]

    def __len__(self) -> int:
        return len(self.labels)


def is_taskset(data: object) -> bool:
    """Whether ``data`` is a learn2learn ``TaskDataset``/``Taskset`` (by its attributes)."""
    return hasattr(data, "sample_task_description") and hasattr(getattr(data, "dataset", None), "indices_to_labels")


def _absent(missing: Sequence[object], counts: Mapping[object, int]) -> ValueError:
    holds = ", ".join(f"{k!r} ({v})" for k, v in counts.items()) or "nothing"
    return ValueError(f"classes {', '.join(repr(m) for m in missing)} have no items in the data (0 each); it holds "
                      f"{holds}. Ask only for classes the data has")


def _stack(data: Any, indices: np.ndarray) -> torch.Tensor:
    items = []
    for i in indices:
        x = data[int(i)][0]
        if not isinstance(x, (torch.Tensor, np.ndarray)):
            raise TypeError(f"item {int(i)} of the data is a {type(x).__module__}.{type(x).__name__}, not a tensor: "
                            "give the dataset a transform that makes tensors (e.g. torchvision's ToTensor())")
        items.append(torch.as_tensor(x))
    shapes = {tuple(x.shape) for x in items}
    if len(shapes) > 1:
        raise ValueError(f"the items have different shapes {sorted(shapes)[:3]}: resize them in the dataset's "
                         "transform so they stack")
    return torch.stack(items) if items else torch.empty(0)


def _face_pool(data: Any, classes: Sequence[str] | None) -> Pool:
    from cfer import taxonomy

    names = list(data.classes)
    if classes is None:
        wanted = [c for c in names if c in taxonomy.COMPOUND]
        if not wanted:
            raise ValueError("no classes to draw episodes from: the data has no compound class; pass classes=[...]")
    else:
        wanted = list(taxonomy.normalize_many(list(classes)))
    counts = {k: v for k, v in data.counts().items() if v}
    missing = [c for c in wanted if c not in counts]
    if missing:
        raise _absent(missing, counts)
    pool = data.subset(np.flatnonzero(np.isin(np.asarray(names)[data.labels], wanted)))
    return Pool(labels=pool.labels.copy(), class_names=list(pool.classes),
                load=lambda pos: pool.subset(np.asarray(pos, dtype=np.int64)).tensors()[0])


def _names_of(data: Any, labels: np.ndarray) -> list[str] | None:
    """The dataset's ``classes`` (torchvision style) when they index its integer labels."""
    for source in (data, getattr(data, "dataset", None)):
        names = getattr(source, "classes", None)
        if (isinstance(names, Sequence) and not isinstance(names, str) and names
                and all(isinstance(n, str) for n in names)
                and labels.dtype.kind in "iu" and len(labels) and 0 <= labels.min() and labels.max() < len(names)):
            return list(names)
    return None


def read_pool(data: Any, classes: Sequence[object] | None = None) -> Pool:
    """The labels, names and items of a dataset, restricted to ``classes``.

    Args:
        data: A cfer :class:`~cfer.data.FaceDataset`; any torch ``Dataset`` with a
            ``targets`` attribute whose items are ``(x, y)`` (torchvision's datasets,
            Avalanche's); or a learn2learn ``MetaDataset`` (labels from its bookkeeping).
        classes: The classes to keep: names or labels. Default: the compound classes of a
            FaceDataset (novel to a basic encoder), every class of other datasets.

    Raises:
        ValueError: If a requested class has no items (naming it, with the data's counts).
        TypeError: If ``data`` is none of the kinds above.
    """
    from cfer.data import FaceDataset

    if isinstance(data, FaceDataset):
        return _face_pool(data, classes)
    if hasattr(data, "indices_to_labels"):
        labels = [data.indices_to_labels[i] for i in range(len(data))]
    elif hasattr(data, "targets"):
        labels = data.targets
    else:
        raise TypeError(f"cannot draw episodes from a {type(data).__name__}: give {_KINDS}; for arrays use "
                        "evaluate_embeddings(features, labels)")
    lab = label_array(labels)
    names = _names_of(data, lab)
    keep = np.arange(len(lab))
    if classes is not None:
        counts = Counter(lab.tolist())
        value_of = {(names[v] if names is not None else v): v for v in counts}
        wanted, missing = [], []
        for c in classes:
            v = value_of.get(c, c)  # a class name, else a label
            if counts.get(v, 0):
                wanted.append(v)
            else:
                missing.append(c)
        if missing:
            raise _absent(missing, {k: counts[v] for k, v in sorted(value_of.items(), key=lambda kv: kv[1])})
        keep = np.flatnonzero(np.isin(lab, np.asarray(wanted, dtype=lab.dtype)))
    return Pool(labels=lab[keep], class_names=names,
                load=lambda pos: _stack(data, keep[np.asarray(pos, dtype=np.int64)]))


def task_episodes(tasks: Any, config: EpisodeConfig) -> tuple[np.ndarray, list[Episode], np.ndarray, list[str],
                                                              Pool]:
    """The episodes a learn2learn ``TaskDataset`` draws, checked against ``config``.

    Its task transforms choose the classes and items (e.g. ``NWays(meta, ways)``,
    ``KShots(meta, shots + queries)``); per class, the first ``config.shots`` items of a
    task are its support, the rest its queries. Episode ``e`` is task ``e`` (cached in the
    TaskDataset as ``tasks[e]`` would) for a finite ``num_tasks``, cycling when
    ``config.episodes`` is larger, and a fresh draw when ``num_tasks`` is -1; Python's
    ``random``, which the transforms draw from, is seeded with ``config.seed`` and restored
    after. Data transforms (``LoadData``, ``RemapLabels``) are not run: items are read from
    ``tasks.dataset`` and labels from its bookkeeping.

    Returns:
        ``(ids, episodes, values, names, pool)``: class ids of the pool's items, the
        episodes as pool positions and class ids, each id's original label and name, and the
        pool (only the items some episode uses).

    Raises:
        ValueError: If a task has another number of classes than ``config.ways`` or of items
            per class than ``config.shots + config.queries`` (naming the transforms to use).
    """
    meta = tasks.dataset
    need = config.shots + config.queries
    drawn = []
    with private_random(config.seed):
        for e in range(config.episodes):
            if tasks.num_tasks == -1:
                desc = tasks.sample_task_description()
            else:
                i = e % tasks.num_tasks
                if i not in tasks.sampled_descriptions:
                    tasks.sampled_descriptions[i] = tasks.sample_task_description()
                desc = tasks.sampled_descriptions[i]
            idx = [int(d.index) for d in desc]
            by_class: dict[object, list[int]] = {}
            for j in idx:
                by_class.setdefault(meta.indices_to_labels[j], []).append(j)
            sizes = sorted({len(v) for v in by_class.values()})
            if len(by_class) != config.ways or sizes != [need]:
                raise ValueError(f"the TaskDataset drew a task of {len(by_class)} classes with {sizes} items per "
                                 f"class; config asks for {config.ways}-way tasks with shots + queries = "
                                 f"{config.shots} + {config.queries} = {need} items per class: build it with "
                                 f"NWays(meta, {config.ways}) and KShots(meta, {need}), or change the EpisodeConfig")
            drawn.append(list(by_class.values()))
    used = np.unique(np.asarray([j for task in drawn for cls in task for j in cls], dtype=np.int64))
    position = {int(j): p for p, j in enumerate(used)}
    labels = [meta.indices_to_labels[int(j)] for j in used]
    lab = label_array(labels)
    pool = Pool(labels=lab, class_names=_names_of(meta, lab), load=lambda pos: _stack(meta, used[np.asarray(pos)]))
    ids, names, values = encode_labels(pool.labels, pool.class_names)
    episodes = []
    for task in drawn:
        pos = [np.asarray([position[j] for j in cls], dtype=np.int64) for cls in task]
        episodes.append((np.concatenate([p[:config.shots] for p in pos]),
                         np.concatenate([p[config.shots:] for p in pos]), np.asarray([ids[p[0]] for p in pos])))
    return ids, episodes, values, names, pool
