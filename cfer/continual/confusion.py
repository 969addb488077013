"""Confusion matrices of a classifier on a :class:`~cfer.data.FaceDataset`, and where the
errors on compound classes go: to their constituent basic classes or elsewhere.

A compound face the model gets wrong is most telling when the wrong answer is one of
its constituents ("happily surprised" read as happy or as surprised,
:data:`cfer.taxonomy.CONSTITUENTS`). :func:`confusion` counts predictions per true class;
:func:`constituent_share` splits each compound class's errors into those that fall on a
constituent and those that fall on any other class, next to the share uniform guessing
among the wrong outputs would give. A model without an output for a compound class (the
basic teacher) gets every face of it "wrong": its share says where those faces go among
the basic classes. :meth:`Confusion.scores` gives per-class precision, recall and F1 and
macro-F1 from the counts (:mod:`cfer.continual.scores`).

Example:
    >>> import numpy as np, torch
    >>> from cfer.data.base import FaceDataset
    >>> faces = FaceDataset(images=np.zeros((3, 4, 4, 3), np.uint8), labels=np.array([0, 1, 1]),
    ...                     classes=("happy", "surprised"))
    >>> model = lambda x: torch.tensor([[1.0, 0.0]]).repeat(len(x), 1)   # always "happy"
    >>> c = confusion(model, faces, classes=("happy", "surprised"))
    >>> c.counts.tolist(), c.matrix.tolist()
    ([[1, 0], [2, 0]], [[1.0, 0.0], [1.0, 0.0]])
    >>> c.scores().to_dict()["per_class"]["surprised"]   # never predicted: precision 0 by rule
    {'precision': 0.0, 'recall': 0.0, 'f1': 0.0, 'support': 2}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from cfer import taxonomy
from cfer.continual.scores import ClassScores, class_scores
from cfer.data.base import FaceDataset
from cfer.distributed import model_device

__all__ = ["Confusion", "confusion", "constituent_share", "predict"]


@torch.no_grad()
def predict(model: Callable[[torch.Tensor], torch.Tensor], data: FaceDataset, *, batch_size: int = 256) -> np.ndarray:
    """The output unit ``model`` scores highest for each item of ``data`` (eval mode).

    An ``nn.Module`` may be on any device (the faces go to its first parameter's); other
    callables get the faces on the CPU."""
    was = getattr(model, "training", None)
    if was is not None:
        model.eval()
    device = model_device(model) if isinstance(model, torch.nn.Module) else torch.device("cpu")
    x, _ = data.tensors()
    out = [model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    if was is not None:
        model.train(was)
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


@dataclass
class Confusion:
    """Prediction counts of one model: a row per true class, a column per output.

    Attributes:
        rows: The true classes (canonical names), one per row.
        outputs: The model's output classes, one per column (unit order).
        counts: ``(len(rows), len(outputs))`` integer counts.
    """

    rows: tuple[str, ...]
    outputs: tuple[str, ...]
    counts: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """Row-normalised counts (each row sums to 1; a row without items is 0)."""
        n = self.counts.sum(1, keepdims=True)
        return np.divide(self.counts, n, out=np.zeros(self.counts.shape), where=n > 0)

    def scores(self, *, basic: Sequence[str] | None = None) -> ClassScores:
        """Per-class precision, recall, F1 and support of every output, macro-F1 and accuracy
        (:func:`cfer.continual.scores.class_scores`: rows without an output are not scored,
        but their faces lower the precision of the outputs they land on). ``basic``: the
        stream's first-step classes where they are not the taxonomy's basic classes."""
        return class_scores(self.counts, rows=self.rows, outputs=self.outputs, basic=basic)

    def to_dict(self) -> dict:
        """JSON form: classes, outputs, the row-normalised matrix, counts and constituent shares."""
        return {"classes": list(self.rows), "outputs": list(self.outputs),
                "matrix": np.round(self.matrix, 4).tolist(), "counts": self.counts.tolist(),
                "constituent_share": constituent_share(self)}


def confusion(model: Callable[[torch.Tensor], torch.Tensor], data: FaceDataset, *, classes: Sequence[str],
              rows: Sequence[str] | None = None, batch_size: int = 256) -> Confusion:
    """Count the predictions of ``model`` per true class of ``data``.

    Args:
        model: A classifier (``model(x)`` gives logits, one column per class of ``classes``).
        data: Labelled faces (items of classes outside ``rows`` are ignored).
        classes: The model's output classes, in unit order.
        rows: True classes to count (default: those of ``classes`` that ``data`` holds);
            they may include classes the model has no output for (compound faces shown to
            the basic teacher).
        batch_size: Items per forward pass.

    Returns:
        A :class:`Confusion`.

    Raises:
        ValueError: If a class of ``rows`` has no item in ``data``.
    """
    outputs = taxonomy.normalize_many(list(classes))
    names = np.asarray([taxonomy.normalize(c) for c in data.classes])[data.labels]
    if rows is None:
        rows = tuple(c for c in outputs if (names == c).any())
    rows = taxonomy.normalize_many(list(rows))
    missing = [c for c in rows if not (names == c).any()]
    if missing:
        raise ValueError(f"classes {missing} have no items in the data; leave them out of rows= "
                         f"(the data has {sorted(set(names.tolist()))})")
    keep = np.flatnonzero(np.isin(names, rows))
    pred = predict(model, data.subset(keep), batch_size=batch_size)
    counts = np.zeros((len(rows), len(outputs)), np.int64)
    index = {c: i for i, c in enumerate(rows)}
    np.add.at(counts, ([index[c] for c in names[keep]], pred), 1)
    return Confusion(rows=rows, outputs=outputs, counts=counts)


def constituent_share(result: Confusion) -> dict[str, dict]:
    """For each compound row: how many of its errors fall on its constituent basic classes.

    Returns:
        ``{compound: {"n", "accuracy", "errors", "to_constituents", "to_other", "chance"}}``:
        faces, share predicted as itself (0 when the model has no such output), errors,
        the share of the errors predicted as a constituent and as any other class (None
        without errors), and the share of errors a constituent would get if the wrong
        answers were spread uniformly over the wrong outputs.
    """
    out = {}
    for i, c in enumerate(result.rows):
        if c not in taxonomy.COMPOUND:
            continue
        row = result.counts[i]
        n = int(row.sum())
        own = int(row[result.outputs.index(c)]) if c in result.outputs else 0
        parts = [j for j, o in enumerate(result.outputs) if o in taxonomy.CONSTITUENTS[c]]
        errors = n - own
        to_constituents = int(row[parts].sum()) if parts else 0
        wrong = len(result.outputs) - (c in result.outputs)
        out[c] = {"n": n, "accuracy": own / n if n else None, "errors": errors,
                  "to_constituents": to_constituents / errors if errors else None,
                  "to_other": (errors - to_constituents) / errors if errors else None,
                  "chance": len(parts) / wrong if wrong else None}
    return out
