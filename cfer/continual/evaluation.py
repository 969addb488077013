"""Accuracy of a classifier on faces or clips, and lazy inputs for clip data sets.

:class:`LazyItems` lets training and evaluation index a lazy dataset (clips) like a
tensor of inputs, so clips are decoded batch by batch instead of being held in memory.

Example:
    >>> from cfer.data import FaceDataset
    >>> ds = FaceDataset(images=np.zeros((2, 4, 4, 1), np.uint8), labels=[0, 1], classes=["sad", "happy"])
    >>> tuple(inputs_of(ds).shape)
    (2, 1, 4, 4)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cfer.data.base import FaceDataset
from cfer.distributed import model_device

__all__ = ["LazyItems", "evaluate", "evaluate_classes", "inputs_of"]


class LazyItems:
    """The inputs of a lazy dataset (e.g. :class:`cfer.data.video.ClipDataset`), indexable
    like a tensor: ``items[idx]`` loads and stacks just those items.

    Training and evaluation index the inputs batch by batch, so a data set of clips is
    decoded one batch at a time (through the dataset's bounded cache) instead of being held
    in memory whole; a :class:`~cfer.data.FaceDataset`'s images are small and stay a tensor.

    Example:
        >>> from cfer.data import FaceDataset
        >>> ds = FaceDataset(images=np.zeros((3, 4, 4, 1), np.uint8), labels=[0, 1, 0], classes=["sad", "happy"])
        >>> items = LazyItems(ds, np.array([2, 0]))
        >>> len(items), tuple(items[torch.tensor([1, 0])].shape), tuple(items[0:1].shape)
        (2, (2, 1, 4, 4), (1, 1, 4, 4))
    """

    def __init__(self, dataset: object, keep: np.ndarray) -> None:
        self.dataset, self.keep = dataset, np.asarray(keep, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, idx: torch.Tensor | slice | int) -> torch.Tensor:
        if isinstance(idx, slice):
            pos = range(len(self.keep))[idx]
        else:
            pos = torch.as_tensor(idx).reshape(-1).tolist()
        return torch.stack([self.dataset[int(self.keep[i])][0] for i in pos])


def inputs_of(data: object, keep: np.ndarray | None = None) -> torch.Tensor | LazyItems:
    """``data``'s inputs at ``keep`` (all by default): a tensor for in-memory faces, else lazy."""
    keep = np.arange(len(data)) if keep is None else np.asarray(keep)
    if isinstance(data, FaceDataset):
        return torch.from_numpy(data.images[keep]).permute(0, 3, 1, 2).float().div_(255.0)
    return LazyItems(data, keep)


def evaluate(model: nn.Module, data: FaceDataset, *, batch_size: int = 256,
             label_map: np.ndarray | None = None) -> float:
    """Accuracy of ``model`` on ``data`` (labels optionally mapped to output units).

    ``data`` is a :class:`~cfer.data.FaceDataset` or any dataset with ``labels`` whose items
    are ``(input, label)`` (e.g. :class:`cfer.data.video.ClipDataset`, loaded batch by batch).
    The model may be on any device: each batch goes to the device of its first parameter.
    """
    was = model.training
    model.eval()
    device = model_device(model)
    x, y = inputs_of(data), torch.as_tensor(np.asarray(data.labels))
    if label_map is not None:
        y = torch.as_tensor(label_map[y.numpy()])
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            pred = model(x[i:i + batch_size].to(device)).argmax(1).cpu()
            correct += (pred == y[i:i + batch_size]).sum().item()
    model.train(was)
    return correct / max(len(x), 1)


def evaluate_classes(model: nn.Module, data: FaceDataset, *, classes: tuple[str, ...]) -> tuple[float, int]:
    """Accuracy of ``model`` (outputs in ``classes`` order) on the items of ``data`` whose class
    is one of ``classes``; returns ``(accuracy, number of items)``.

    Example:
        >>> acc, n = evaluate_classes(teacher, test, classes=("happy", "sad"))   # doctest: +SKIP
    """
    sub = data.subset(np.flatnonzero(np.isin(np.asarray(data.classes)[data.labels], list(classes))))
    label_map = np.array([classes.index(c) if c in classes else -1 for c in sub.classes])
    return evaluate(model, sub, label_map=label_map), len(sub)
