"""Which clips a dataset holds and how they are labelled, and views of them.

:class:`LabelledClips` is the bookkeeping half of
:class:`~cfer.data.video.dataset.ClipDataset`: per item, the source clip it is, its
label (an index into ``classes``), subject, split and path; and the views cfer's
training code takes from a :class:`cfer.data.FaceDataset` too (``subset``,
``select_split``, ``class_names``, ``counts``) plus ``relabelled``. A view copies every
attribute of the dataset (so a ``ClipDataset``'s views share its source and cache) and
re-indexes the per-item ones.

Example:
    >>> import numpy as np
    >>> clips = LabelledClips()
    >>> clips._set_items(ids=np.arange(3), labels=[0, 1, 0], classes=["happy", "sad"], subjects=None,
    ...                  splits=["train", "test", "train"], paths=None)
    >>> clips.select_split("train").class_names, clips.counts()
    (['happy', 'happy'], {'happy': 2, 'sad': 1})
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from cfer import taxonomy

__all__ = ["LabelledClips"]

_Clips = TypeVar("_Clips", bound="LabelledClips")


def _check_labels(labels: Sequence[int] | np.ndarray, classes: Sequence[str], *,
                  n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """``labels`` as int64, one per item, and ``classes`` normalised; labels must index them."""
    labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels_arr) != n:
        raise ValueError(f"{n} clips but {len(labels_arr)} labels")
    names: tuple[str, ...] = taxonomy.normalize_many(list(classes))
    if n and (labels_arr.min() < 0 or labels_arr.max() >= len(names)):
        raise ValueError(
            f"labels must lie in [0, {len(names) - 1}] (indices into classes), "
            f"got range [{labels_arr.min()}, {labels_arr.max()}]"
        )
    return labels_arr, names


class LabelledClips(Dataset):
    """Items that are source clips, with labels, classes, subjects, splits and paths.

    Attributes:
        classes: Canonical class names (:func:`cfer.taxonomy.normalize_many`).
        labels: int64 ``(N,)``, indices into ``classes``.
        targets: ``torch.LongTensor`` of labels (what Avalanche reads).
        subjects: Subject id per item (strings), or None.
        splits: Split name per item, or None.
        paths: Source path per item (named in error messages), or None.
    """

    def _set_items(self, *, ids: np.ndarray, labels: Sequence[int] | np.ndarray, classes: Sequence[str],
                   subjects: Sequence[object] | np.ndarray | None, splits: Sequence[str] | np.ndarray | None,
                   paths: Sequence[str] | None) -> None:
        """Check and set the per-item columns; ``ids`` are the items' source clip indices.

        Raises:
            ValueError: If a column has another length than ``ids`` or a label does not
                index ``classes``.
        """
        n = len(ids)
        labels_arr, self.classes = _check_labels(labels, classes, n=n)
        self.labels = labels_arr
        self.subjects = None if subjects is None else np.asarray([str(s) for s in subjects])
        self.splits = None if splits is None else np.asarray([str(s) for s in splits])
        self.paths = None if paths is None else [str(p) for p in paths]
        for name, arr in (("subjects", self.subjects), ("splits", self.splits), ("paths", self.paths)):
            if arr is not None and len(arr) != n:
                raise ValueError(f"{n} clips but {len(arr)} {name}")
        self.targets = torch.from_numpy(labels_arr.copy())
        self._ids = ids

    # -- views -----------------------------------------------------------------------
    def _view(self: _Clips, idx: np.ndarray) -> _Clips:
        ds = type(self).__new__(type(self))
        ds.__dict__.update(self.__dict__)
        ds.labels = self.labels[idx]
        ds.targets = torch.from_numpy(ds.labels.copy())
        ds.subjects = None if self.subjects is None else self.subjects[idx]
        ds.splits = None if self.splits is None else self.splits[idx]
        ds.paths = None if self.paths is None else [self.paths[i] for i in idx]
        ds._ids = self._ids[idx]
        return ds

    def subset(self: _Clips, indices: Sequence[int] | np.ndarray) -> _Clips:
        """A dataset of the given items that shares this one's source and cache.

        Example:
            >>> ds.subset([0, 2]).cache_info() == ds.cache_info()  # doctest: +SKIP
            True
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset indices must lie in [0, {len(self) - 1}], got range [{idx.min()}, {idx.max()}]")
        return self._view(idx)

    def select_split(self: _Clips, name: str) -> _Clips:
        """The items whose split is ``name`` (sharing the cache).

        Raises:
            ValueError: If the dataset has no splits or none is called ``name``.
        """
        if self.splits is None:
            raise ValueError("this dataset has no split column; make one with cfer.data.subject_split(...)")
        mask = self.splits == name
        if not mask.any():
            raise ValueError(f"no items in split {name!r}; splits present: {sorted(set(self.splits.tolist()))}")
        return self.subset(np.flatnonzero(mask))

    def with_splits(self: _Clips, splits: Sequence[str] | np.ndarray) -> _Clips:
        """The same clips with a new split name per item (what :func:`cfer.data.apply_split`
        assigns), sharing the cache.

        Raises:
            ValueError: If there is not one split name per item.
        """
        names = np.asarray([str(s) for s in splits])
        if len(names) != len(self):
            raise ValueError(f"{len(self)} clips but {len(names)} split names; give one per clip")
        ds = self._view(np.arange(len(self)))
        ds.splits = names
        return ds

    def relabelled(self: _Clips, *, labels: Sequence[int] | np.ndarray, classes: Sequence[str]) -> _Clips:
        """The same clips with new labels, indices into new ``classes``, sharing the cache.

        Everything else stays: the source and cache, subjects, splits, paths, layout,
        training flag and seed. ``classes`` are normalised like the constructor's
        (:func:`cfer.taxonomy.normalize_many`). The continual stream uses it to give
        items global class ids.

        Args:
            labels: One int per item, an index into ``classes``.
            classes: The new class names.

        Raises:
            ValueError: If there is not one label per item, a label does not index
                ``classes``, or a class name is unknown.

        Example:
            >>> ds.classes  # doctest: +SKIP
            ('happy', 'sad')
            >>> ds.relabelled(labels=ds.labels + 1, classes=["neutral", "happy", "sad"]).class_names  # doctest: +SKIP
            ['happy', 'sad', 'happy']
        """
        labels_arr, names = _check_labels(labels, classes, n=len(self))
        ds = self._view(np.arange(len(self)))
        ds.classes, ds.labels, ds.targets = names, labels_arr, torch.from_numpy(labels_arr.copy())
        return ds

    # -- items -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def _check_index(self, index: int) -> int:
        if isinstance(index, (torch.Tensor, np.ndarray)):
            index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        return index % len(self)

    def _where(self, index: int) -> str:
        return self.paths[index] if self.paths is not None else f"#{int(self._ids[index])}"

    @property
    def class_names(self) -> list[str]:
        """The class name of every item."""
        return [self.classes[i] for i in self.labels]

    def counts(self) -> dict[str, int]:
        """Number of items per class name, in ``classes`` order."""
        c = Counter(self.labels.tolist())
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}
