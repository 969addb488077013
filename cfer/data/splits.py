"""Subject-disjoint, class-stratified train/val/test splits.

No person may appear in two splits: a model that has seen a subject's face in training
recognises the person, not the expression, and test accuracy goes up for the wrong
reason. :func:`subject_split` assigns whole subjects to splits and, within that
constraint, keeps each split's class histogram close to its share of every class.

Example:
    >>> import numpy as np
    >>> subjects = np.repeat([f"s{i}" for i in range(20)], 6)
    >>> labels = np.tile(["happy", "sad", "awed"], 40)
    >>> names = subject_split(subjects=subjects, labels=labels, seed=0)
    >>> sorted(set(names.tolist()))
    ['test', 'train', 'val']
"""

from __future__ import annotations

import logging
import warnings
from typing import Sequence

import numpy as np

from cfer.data.base import FaceDataset

__all__ = ["subject_split", "apply_split"]

logger = logging.getLogger(__name__)

_DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
_DEFAULT_NAMES = ("train", "val", "test")


def _check_fractions(fractions: Sequence[float], names: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    frac = np.asarray(list(fractions), dtype=np.float64)
    names = tuple(str(n) for n in names)
    if frac.ndim != 1 or len(frac) < 1:
        raise ValueError(f"fractions must be a non-empty sequence of numbers, got {fractions!r}")
    if len(frac) != len(names):
        raise ValueError(
            f"{len(frac)} fractions but {len(names)} names ({list(names)}); give one fraction per split name"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"split names must be distinct, got {list(names)}")
    if not np.all(np.isfinite(frac)) or np.any(frac <= 0):
        raise ValueError(f"fractions must all be positive, got {list(fractions)}; drop a split rather than give it 0")
    if abs(frac.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {list(fractions)} (sum {frac.sum():.6g})")
    return frac, names


def subject_split(
    *,
    subjects: Sequence[object] | np.ndarray,
    labels: Sequence[object] | np.ndarray,
    fractions: Sequence[float] = _DEFAULT_FRACTIONS,
    names: Sequence[str] = _DEFAULT_NAMES,
    seed: int = 0,
) -> np.ndarray:
    """Assign every item to a split so that no subject is in two splits.

    Subjects are visited largest first (ties in a seeded random order) and each goes
    to the split whose class histogram and size fall furthest short of their targets
    (``fraction * class count``; every class weighs the same, so rare classes stay
    spread too). Every split gets at least one subject. With few subjects the
    fractions can only be met roughly; the achieved sizes are logged.

    Args:
        subjects: Subject id of each item (anything hashable).
        labels: Class of each item (ints or names).
        fractions: Target share of items per split; positive, summing to 1.
        names: Split names, one per fraction.
        seed: Seed for ``numpy.random.default_rng`` (the global RNG is never used).

    Returns:
        A string array with the split name of each item.

    Raises:
        ValueError: For mismatched lengths, bad fractions, or fewer subjects than splits.

    Example:
        >>> subject_split(subjects=["a", "a", "b", "c"], labels=[0, 1, 0, 1],
        ...               fractions=(0.5, 0.25, 0.25), seed=1).tolist()
        ['train', 'train', 'val', 'test']
    """
    frac, names = _check_fractions(fractions, names)
    subj = np.asarray([str(s) for s in subjects])
    lab = np.asarray(labels).reshape(-1)
    if len(subj) != len(lab):
        raise ValueError(f"{len(subj)} subjects but {len(lab)} labels; give one subject and one label per item")
    if len(subj) == 0:
        raise ValueError("no items to split (subjects and labels are empty)")
    subj_ids, subj_of = np.unique(subj, return_inverse=True)
    _, class_of = np.unique(lab, return_inverse=True)
    n_subj, n_split = len(subj_ids), len(frac)
    if n_subj < n_split:
        raise ValueError(
            f"{n_subj} subject(s) cannot fill {n_split} disjoint splits {list(names)}; "
            f"need at least {n_split} subjects: add subjects or use fewer splits"
        )
    n_class = int(class_of.max()) + 1
    hist = np.zeros((n_subj, n_class), dtype=np.float64)
    np.add.at(hist, (subj_of, class_of), 1.0)
    class_total = hist.sum(axis=0)
    sizes = hist.sum(axis=1)
    n = float(sizes.sum())

    rng = np.random.default_rng(seed)
    order = rng.permutation(n_subj)
    order = order[np.argsort(-sizes[order], kind="stable")]

    # Columns: one per class (scaled by its count, so each class weighs the same) plus
    # one for the split's total size.
    target = np.concatenate([frac[:, None] * class_total[None, :], frac[:, None] * n], axis=1)
    scale = np.concatenate([class_total, [n]])
    have = np.zeros_like(target)
    assigned = np.full(n_subj, -1, dtype=np.int64)
    n_members = np.zeros(n_split, dtype=np.int64)
    for rank, s in enumerate(order):
        h = np.concatenate([hist[s], [sizes[s]]])
        # Change in sum((have - target)^2 / scale^2) if s joins each split.
        delta = (h[None, :] * (2.0 * (have - target) + h[None, :]) / scale[None, :] ** 2).sum(axis=1)
        empty = np.flatnonzero(n_members == 0)
        if len(empty) >= n_subj - rank:  # only enough subjects left to fill the empty splits
            k = int(empty[np.argmin(delta[empty])])
        else:
            k = int(np.argmin(delta))
        assigned[s] = k
        have[k] += h
        n_members[k] += 1

    out = np.asarray(names)[assigned[subj_of]]
    logger.info(
        "subject_split: %s",
        ", ".join(
            f"{name}={int(have[k, -1])} items/{int(n_members[k])} subjects "
            f"({have[k, -1] / n:.0%}, target {frac[k]:.0%})"
            for k, name in enumerate(names)
        ),
    )
    return out


def apply_split(
    dataset: FaceDataset,
    *,
    fractions: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    seed: int = 0,
    respect_existing: bool = True,
) -> dict[str, FaceDataset]:
    """Split a dataset by subject into named parts.

    If the dataset already has a ``splits`` column (RAF-DB, FER2013, a manifest's
    ``split`` column) and ``respect_existing`` is true, those splits are returned as
    they are. Otherwise :func:`subject_split` makes new ones from the subjects.

    Args:
        dataset: A dataset with subject ids.
        fractions: Target shares per split (default ``(0.7, 0.15, 0.15)``). Not allowed
            together with existing splits unless ``respect_existing=False``.
        names: Split names (default ``("train", "val", "test")``).
        seed: Seed for the assignment.
        respect_existing: Keep the dataset's own split column when it has one.

    Returns:
        ``{split name: FaceDataset}``; every part's ``splits`` column holds its name.

    Raises:
        ValueError: If the dataset has no subjects (and no splits to keep), or
            ``fractions``/``names`` are given while existing splits are kept.

    Example:
        >>> parts = apply_split(ds, fractions=(0.8, 0.2), names=("train", "test"))  # doctest: +SKIP
        >>> {k: len(v) for k, v in parts.items()}  # doctest: +SKIP
        {'train': 96, 'test': 24}
    """
    if respect_existing and dataset.splits is not None:
        if fractions is not None or names is not None:
            raise ValueError(
                f"dataset already has splits {sorted(set(dataset.splits.tolist()))}; "
                "pass respect_existing=False to re-split it with fractions/names, or drop fractions/names"
            )
        present = list(dict.fromkeys(dataset.splits.tolist()))
        order = [n for n in _DEFAULT_NAMES if n in present] + sorted(n for n in present if n not in _DEFAULT_NAMES)
        if dataset.subjects is not None:
            _check_disjoint(dataset)
        return {name: dataset.select_split(name) for name in order}
    if dataset.subjects is None:
        raise ValueError(
            "dataset has no subject ids, so a subject-disjoint split is impossible; read it with "
            "subjects (read_image_folder(..., subject_pattern=r'^(s\\d+)_') or a 'subject' column in "
            "a CSV manifest), or call subject_split(subjects=..., labels=dataset.labels) with your own ids"
        )
    assignment = subject_split(
        subjects=dataset.subjects,
        labels=dataset.labels,
        fractions=_DEFAULT_FRACTIONS if fractions is None else fractions,
        names=_DEFAULT_NAMES if names is None else names,
        seed=seed,
    )
    if not isinstance(dataset, FaceDataset):  # clips (cfer.data.video.ClipDataset): same clips, new splits
        labelled = dataset.with_splits(assignment)
        return {str(name): labelled.select_split(str(name)) for name in (_DEFAULT_NAMES if names is None else names)}
    labelled = FaceDataset(
        images=dataset.images,
        labels=dataset.labels,
        classes=dataset.classes,
        subjects=dataset.subjects,
        splits=assignment,
        paths=dataset.paths,
        transform=dataset.transform,
        skipped=dataset.skipped,
    )
    order = list(_DEFAULT_NAMES if names is None else names)
    return {str(name): labelled.select_split(str(name)) for name in order}


def _check_disjoint(dataset: FaceDataset) -> None:
    assert dataset.subjects is not None and dataset.splits is not None
    owners: dict[str, set[str]] = {}
    for s, sp in zip(dataset.subjects.tolist(), dataset.splits.tolist()):
        owners.setdefault(s, set()).add(sp)
    shared = sorted(s for s, sp in owners.items() if len(sp) > 1)
    if shared:
        warnings.warn(
            f"the dataset's own splits share {len(shared)} subject(s) (e.g. {shared[:3]}); "
            "results on them are not subject-independent; pass respect_existing=False to re-split by subject",
            stacklevel=3,
        )
