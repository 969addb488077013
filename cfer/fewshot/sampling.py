"""Drawing N-way K-shot episodes: learn2learn's task transforms, or cfer's built-in sampler.

Two samplers keep one contract: every episode holds ``ways`` distinct classes with
``shots`` support and ``queries`` query items each, support and query disjoint, and the
same seed gives the same episodes (whatever the caller's random state, which is left as it
was).

* ``"learn2learn"``: learn2learn's ``NWays`` and ``KShots`` over a label-only
  ``MetaDataset``. They draw from Python's global ``random``, which is saved, seeded and
  restored around sampling.
* ``"builtin"``: the same draw with a private ``numpy`` generator, for environments
  without learn2learn (it is not among cfer's pip requirements: its 0.2.0 sdist does not
  build on Python 3.11 without a Cython rebuild, :data:`LEARN2LEARN_INSTALL`).
* ``"auto"`` (the default of :class:`~cfer.fewshot.config.EpisodeConfig`): learn2learn
  when it imports, else the built-in sampler, said once in the log (INFO). The two draw
  different episodes for one seed; a result's ``config["sampler"]`` says which one ran.

Labels may be any integers (``100..119``) or strings: they are coded as contiguous ids
internally (:func:`encode_labels`), and results and errors name the original classes.

Example:
    >>> import numpy as np
    >>> from cfer.fewshot.config import EpisodeConfig
    >>> labels = np.repeat([100, 101, 102, 103], 6)
    >>> (s, q, c), = sample_episodes(labels, config=EpisodeConfig(ways=3, shots=1, queries=2, episodes=1,
    ...                                                            sampler="builtin"))
    >>> len(s), len(q), sorted(set(labels[s])) == sorted(c.tolist())
    (3, 6, True)
"""

from __future__ import annotations

import contextlib
import gc
import logging
import random
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from cfer.fewshot.config import EpisodeConfig

__all__ = ["LEARN2LEARN_INSTALL", "label_array", "encode_labels", "check_pool", "resolve_sampler", "draw_episodes",
           "sample_episodes", "gc_paused"]

logger = logging.getLogger(__name__)

LEARN2LEARN_INSTALL = ("pip install --no-deps gym==0.26.2 && "
                       "pip install --no-deps -C--build-option=build_ext learn2learn==0.2.0")
"""How to install learn2learn 0.2.0 next to cfer on Python 3.11 (its shipped C files need
the Cython rebuild that ``build_ext`` triggers; ``--no-deps`` keeps its own requirements
from pulling numpy below 2; it imports gym at top level)."""

Episode = tuple[np.ndarray, np.ndarray, np.ndarray]
_said_builtin = False


@contextlib.contextmanager
def private_random(seed: int) -> Iterator[None]:
    """Seed Python's global ``random`` for the block and restore the caller's state after."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block, then restore its state.

    learn2learn's task transforms allocate a few small objects per sampled item, freed by
    reference counting; the collections they trigger scan the whole heap (torch's objects
    included) and took three to five times the sampling itself (benchmarks.md).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def label_array(labels: Sequence[object] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Labels as a 1-D ``int64`` or string array (integral floats become integers).

    Raises:
        TypeError: If the labels are neither all integers nor all strings.
    """
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be one-dimensional (one label per item), got shape {arr.shape}")
    if arr.dtype.kind == "O":
        if all(isinstance(v, str) for v in arr):
            arr = arr.astype(str)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in arr):
            arr = arr.astype(np.int64)
        else:
            kinds = sorted({type(v).__name__ for v in arr})
            raise TypeError(f"labels must be all integers or all strings, got a mix of {kinds}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise TypeError("labels must be integers or strings, got non-integer floats; pass class ids or names")
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iuU":
        raise TypeError(f"labels must be integers or strings, got dtype {arr.dtype}")
    return arr


def encode_labels(
    labels: Sequence[object] | np.ndarray | torch.Tensor,
    class_names: Sequence[str] | Mapping[object, str] | None = None,
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Code any integer or string labels as contiguous ids ``0..C-1``.

    Args:
        labels: One label per item: integers (any values, e.g. ``100..119``) or strings.
        class_names: The names to report: a sequence indexed by label (labels must then
            be ``0..len-1``), a mapping ``{label: name}``, or None (each class is named by
            its label, as text).

    Returns:
        ``(ids, names, values)``: the id of every item, the name of every id and the
        original label of every id (sorted).

    Raises:
        ValueError: If a label has no name in ``class_names`` (naming the labels).
        TypeError: If the labels are neither integers nor strings.

    Example:
        >>> ids, names, values = encode_labels(["b", "a", "b"])
        >>> ids.tolist(), names
        ([1, 0, 1], ['a', 'b'])
    """
    arr = label_array(labels)
    values, ids = np.unique(arr, return_inverse=True)
    plain = [v.item() for v in values]
    if class_names is None:
        names = [str(v) for v in plain]
    elif isinstance(class_names, Mapping):
        missing = [v for v in plain if v not in class_names]
        if missing:
            raise ValueError(f"labels {missing[:10]} have no name in class_names; add them to the mapping "
                             "or leave class_names out to name classes by their labels")
        names = [str(class_names[v]) for v in plain]
    else:
        seq = list(class_names)
        if arr.dtype.kind == "U":
            missing = [v for v in plain if v not in seq]
            if missing:
                raise ValueError(f"labels {missing[:10]} are not in class_names; leave class_names out for "
                                 "string labels (they name themselves)")
            names = [str(v) for v in plain]
        else:
            bad = [v for v in plain if not 0 <= v < len(seq)]
            if bad:
                raise ValueError(f"labels {bad[:10]} do not index class_names ({len(seq)} names, for labels "
                                 f"0..{len(seq) - 1}); pass class_names as a dict {{label: name}}, or leave it "
                                 "out to name classes by their labels")
            names = [str(seq[v]) for v in plain]
    return ids.reshape(-1).astype(np.int64), names, values


def check_pool(ids: np.ndarray, names: Sequence[str], config: EpisodeConfig) -> None:
    """Refuse a pool that cannot give ``config``'s episodes, naming the classes and counts.

    Raises:
        ValueError: If a class has fewer than ``shots + queries`` items, or the pool has
            fewer than ``ways`` classes.
    """
    need = config.shots + config.queries
    counts = np.bincount(ids, minlength=len(names))
    present = np.flatnonzero(counts)
    short = [(names[c], int(counts[c])) for c in present if counts[c] < need]
    if short:
        listing = ", ".join(f"{n!r} has {k}" for n, k in short)
        enough = len(present) - len(short)
        raise ValueError(
            f"every class needs at least shots + queries = {config.shots} + {config.queries} = {need} items; "
            f"{listing} ({enough} of {len(present)} classes have enough; {config.ways}-way episodes need "
            f"{config.ways}). Lower shots/queries (--shots/--queries), leave those classes out, or add data"
        )
    if len(present) < config.ways:
        listing = ", ".join(f"{names[c]!r} ({int(counts[c])})" for c in present)
        raise ValueError(f"{config.ways}-way episodes need {config.ways} classes, the pool has {len(present)}: "
                         f"{listing}. Lower ways (--ways) or add classes")


def _learn2learn_error() -> Exception | None:
    """None when learn2learn's task transforms import, else the error."""
    try:
        import learn2learn.data  # noqa: F401
        from learn2learn.data.transforms import KShots, NWays  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken install (not only a missing one) falls back too
        return exc
    return None


def resolve_sampler(name: str) -> str:
    """The sampler that ``name`` (one of :data:`~cfer.fewshot.config.SAMPLERS`) stands for here.

    Returns:
        ``"learn2learn"`` or ``"builtin"``.

    Raises:
        ImportError: If ``name`` is ``"learn2learn"`` and learn2learn cannot be imported
            (naming the install command).
    """
    global _said_builtin
    if name == "builtin":
        return "builtin"
    error = _learn2learn_error()
    if error is None:
        return "learn2learn"
    if name == "learn2learn":
        raise ImportError(f"sampler='learn2learn' needs learn2learn, which cannot be imported "
                          f"({type(error).__name__}: {error}). On Python 3.11 install it with: "
                          f"{LEARN2LEARN_INSTALL}; or use EpisodeConfig(sampler='builtin') (or 'auto') for cfer's "
                          "own sampler") from error
    if not _said_builtin:
        logger.info("learn2learn cannot be imported (%s: %s); few-shot episodes are drawn by cfer's built-in "
                    "sampler (same N-way K-shot contract, other episodes for a seed). For learn2learn's: %s",
                    type(error).__name__, error, LEARN2LEARN_INSTALL)
        _said_builtin = True
    return "builtin"


def _builtin(ids: np.ndarray, n_classes: int, config: EpisodeConfig) -> list[Episode]:
    rng = np.random.default_rng(config.seed)
    members = [np.flatnonzero(ids == c) for c in range(n_classes)]
    present = np.asarray([c for c in range(n_classes) if len(members[c])])
    out = []
    for _ in range(config.episodes):
        classes = rng.choice(present, size=config.ways, replace=False)
        picks = [rng.choice(members[c], size=config.shots + config.queries, replace=False) for c in classes]
        out.append((np.concatenate([p[:config.shots] for p in picks]),
                    np.concatenate([p[config.shots:] for p in picks]), classes.astype(np.int64)))
    return out


class _LabelOnly(torch.utils.data.Dataset):
    """A dataset of item indices with labels: learn2learn indexes it, we keep the features."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return i, int(self.labels[i])


def _learn2learn(ids: np.ndarray, config: EpisodeConfig) -> list[Episode]:
    import learn2learn as l2l
    from learn2learn.data.transforms import KShots, NWays

    meta = l2l.data.MetaDataset(_LabelOnly(ids))
    per = config.shots + config.queries
    taskset = l2l.data.Taskset(meta, task_transforms=[NWays(meta, config.ways), KShots(meta, per)], num_tasks=-1)
    out = []
    with private_random(config.seed), gc_paused():
        for _ in range(config.episodes):
            desc = taskset.sample_task_description()
            idx = np.fromiter((d.index for d in desc), dtype=np.int64, count=len(desc))
            classes = list(dict.fromkeys(ids[idx].tolist()))
            by_class = [idx[ids[idx] == c] for c in classes]
            out.append((np.concatenate([b[:config.shots] for b in by_class]),
                        np.concatenate([b[config.shots:] for b in by_class]), np.asarray(classes, dtype=np.int64)))
    return out


def draw_episodes(ids: np.ndarray, names: Sequence[str], config: EpisodeConfig) -> tuple[list[Episode], str]:
    """Episodes over contiguous class ids (:func:`encode_labels`), and the sampler that drew them.

    Returns:
        ``(episodes, sampler)``: ``config.episodes`` tuples ``(support_idx, query_idx,
        class_ids)`` (pool indices, class-major; episode label ``j`` is ``class_ids[j]``) and
        ``"learn2learn"`` or ``"builtin"``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    check_pool(ids, names, config)
    used = resolve_sampler(config.sampler)
    episodes = _learn2learn(ids, config) if used == "learn2learn" else _builtin(ids, len(names), config)
    return episodes, used


def sample_episodes(
    labels: Sequence[object] | np.ndarray | torch.Tensor, *, config: EpisodeConfig,
    class_names: Sequence[str] | Mapping[object, str] | None = None,
) -> list[Episode]:
    """Draw episodes as index arrays with ``config.sampler``.

    Args:
        labels: Label of every item of the pool: any integers or strings.
        config: Ways, shots, queries, episodes, seed and sampler.
        class_names: Names for error messages (:func:`encode_labels`; default: the labels).

    Returns:
        ``episodes`` tuples ``(support_idx, query_idx, classes)``: pool indices
        (``ways * shots`` and ``ways * queries``, class-major) and the ``ways`` original
        labels in episode order (episode label ``j`` is ``classes[j]``).

    Raises:
        ValueError: If a class has fewer than ``shots + queries`` items (naming it and
            the counts) or the pool has fewer than ``ways`` classes.
        ImportError: If ``config.sampler`` is ``"learn2learn"`` and it is not installed.
    """
    ids, names, values = encode_labels(labels, class_names)
    episodes, _ = draw_episodes(ids, names, config)
    return [(s, q, values[c]) for s, q, c in episodes]
