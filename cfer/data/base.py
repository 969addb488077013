"""The in-memory face dataset every cfer reader and the synthetic renderer return.

A :class:`FaceDataset` holds decoded uint8 images of one size, integer labels that
index its ``classes`` (canonical names from :mod:`cfer.taxonomy`), and optional
subject ids and split names. It is a ``torch.utils.data.Dataset`` with a ``targets``
attribute, so Avalanche accepts it as a classification dataset as it is.

Example:
    >>> import numpy as np
    >>> ds = FaceDataset(images=np.zeros((2, 8, 8, 1), np.uint8), labels=[0, 1],
    ...                  classes=["happy", "sad"], subjects=["a", "b"])
    >>> x, y = ds[1]
    >>> tuple(x.shape), y
    ((1, 8, 8), 1)
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cfer import taxonomy

__all__ = ["FaceDataset"]


class FaceDataset(Dataset):
    """Decoded face images with labels, subjects and splits.

    Args:
        images: uint8 array ``(N, H, W, C)`` with ``C`` 1 (grey) or 3 (RGB).
        labels: ``N`` integer labels, each an index into ``classes``.
        classes: Class names; normalised through :func:`cfer.taxonomy.normalize`.
        subjects: Optional ``N`` subject ids (anything hashable; stored as strings).
        splits: Optional ``N`` split names (e.g. ``"train"``/``"test"``).
        paths: Optional ``N`` source paths, for error messages and provenance.
        transform: Optional callable applied to the float image tensor ``(C, H, W)``.
        skipped: Optional record of the items the reader left out, reason -> count
            (e.g. ``{"corrupt image": 2}``); see :attr:`skipped`.

    Attributes:
        targets: ``torch.LongTensor`` of labels (what Avalanche reads).

    Example:
        >>> ds = FaceDataset(images=np.zeros((1, 4, 4, 1), np.uint8), labels=[0], classes=["sad"],
        ...                  skipped={"corrupt image": 2})
        >>> ds.skipped, ds.subset([0]).skipped
        ({'corrupt image': 2}, {'corrupt image': 2})
    """

    def __init__(
        self,
        *,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        subjects: Sequence[object] | np.ndarray | None = None,
        splits: Sequence[str] | np.ndarray | None = None,
        paths: Sequence[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        skipped: Mapping[str, int] | None = None,
    ) -> None:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(
                f"images must be an array (N, H, W, C) with C 1 or 3, got shape {images.shape}"
            )
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {images.dtype}; convert with .astype(np.uint8)")
        n = len(images)
        labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels_arr) != n:
            raise ValueError(f"{n} images but {len(labels_arr)} labels")
        self.classes: tuple[str, ...] = taxonomy.normalize_many(list(classes))
        if n and (labels_arr.min() < 0 or labels_arr.max() >= len(self.classes)):
            raise ValueError(
                f"labels must lie in [0, {len(self.classes) - 1}] (indices into classes), "
                f"got range [{labels_arr.min()}, {labels_arr.max()}]"
            )
        self.images = images
        self.labels = labels_arr
        self.subjects = None if subjects is None else np.asarray([str(s) for s in subjects])
        self.splits = None if splits is None else np.asarray([str(s) for s in splits])
        self.paths = None if paths is None else list(paths)
        for name, arr in (("subjects", self.subjects), ("splits", self.splits), ("paths", self.paths)):
            if arr is not None and len(arr) != n:
                raise ValueError(f"{n} images but {len(arr)} {name}")
        self.transform = transform
        self.targets = torch.from_numpy(labels_arr.copy())
        self._skipped = _check_skipped(skipped)

    @property
    def skipped(self) -> dict[str, int]:
        """What the reader left out of the data on disk: reason -> number of items.

        Bad items skipped with ``skip_invalid=True`` (``"corrupt image"``,
        ``"unknown label"``, ...), plus what is left out without being an error: files
        whose extension is not read (``"unsupported extension"``) and repeated RAF-DB
        entries with the same label (``"duplicate entry"``). Empty when nothing was left
        out. The record describes the read the dataset came from, so subsets and splits
        carry it unchanged. A copy: editing it does not change the dataset.
        """
        return dict(self._skipped)

    # -- torch Dataset -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[index]).permute(2, 0, 1).float().div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[index])

    # -- conveniences ----------------------------------------------------------------
    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def channels(self) -> int:
        """1 for grey images, 3 for RGB."""
        return int(self.images.shape[3])

    @property
    def class_names(self) -> list[str]:
        """The class name of every item."""
        return [self.classes[i] for i in self.labels]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as one float tensor ``(N, C, H, W)`` in [0, 1] and the labels."""
        x = torch.from_numpy(self.images).permute(0, 3, 1, 2).float().div_(255.0)
        return x, self.targets.clone()

    def counts(self) -> dict[str, int]:
        """Number of items per class name, in ``classes`` order."""
        c = Counter(self.labels.tolist())
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}

    def subset(self, indices: Sequence[int] | np.ndarray) -> "FaceDataset":
        """A new dataset with the given items (views where numpy allows, same classes)."""
        idx = np.asarray(indices, dtype=np.int64)
        return self._take(idx)

    def _take(self, idx: np.ndarray) -> "FaceDataset":
        return FaceDataset(
            images=self.images[idx],
            labels=self.labels[idx],
            classes=self.classes,
            subjects=None if self.subjects is None else self.subjects[idx],
            splits=None if self.splits is None else self.splits[idx],
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            transform=self.transform,
            skipped=self._skipped,
        )

    def select_split(self, name: str) -> "FaceDataset":
        """The items whose split is ``name``.

        Raises:
            ValueError: If the dataset has no splits or none is called ``name``.
        """
        if self.splits is None:
            raise ValueError(
                "this dataset has no split column; make one with cfer.data.subject_split(...)"
            )
        mask = self.splits == name
        if not mask.any():
            raise ValueError(f"no items in split {name!r}; splits present: {sorted(set(self.splits))}")
        return self.subset(np.flatnonzero(mask))

    def summary(self) -> str:
        """A short multi-line description: size, image shape, classes and counts."""
        h, w = self.image_size
        n_subj = "unknown" if self.subjects is None else str(len(set(self.subjects)))
        lines = [
            f"{type(self).__name__}: {len(self)} images {h}x{w}x{self.channels}, "
            f"{len(self.classes)} classes, subjects: {n_subj}"
        ]
        return "\n".join(lines + split_and_class_lines(self.splits, self.counts()))

    def __repr__(self) -> str:
        h, w = self.image_size
        return f"{type(self).__name__}(n={len(self)}, size={h}x{w}x{self.channels}, classes={len(self.classes)})"


def split_and_class_lines(splits: np.ndarray | None, counts: Mapping[str, int]) -> list[str]:
    """The lines of a dataset summary after its first: items per split, then per class with its kind."""
    lines = []
    if splits is not None:
        sc = Counter(splits.tolist())
        lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in sorted(sc.items())))
    width = max((len(c) for c in counts), default=0)
    for name, count in counts.items():
        kind = "basic" if name in taxonomy.BASIC else "compound" if name in taxonomy.COMPOUND else "neutral"
        lines.append(f"  {name:<{width}}  {kind:<8}  {count}")
    return lines


def _check_skipped(skipped: Mapping[str, int] | None) -> dict[str, int]:
    if skipped is None:
        return {}
    if not isinstance(skipped, Mapping):
        raise ValueError(f"skipped must be a mapping reason -> count, got {type(skipped).__name__}")
    out: dict[str, int] = {}
    for reason, n in skipped.items():
        if not isinstance(reason, str) or isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"skipped must map reason strings to counts >= 0, got {reason!r}: {n!r}")
        if n:
            out[reason] = int(n)
    return out
