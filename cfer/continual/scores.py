"""Per-class precision, recall and F1, macro-F1 and accuracy from confusion counts.

The counts are those of :class:`~cfer.continual.confusion.Confusion`: a row per true
class, a column per output of the model. Rows and outputs need not be the same classes:
the basic teacher is shown compound faces it has no output for. :func:`class_scores`
therefore scores **every output** ``c`` (rows that are no output are not scored) as

* ``support``: test faces of class ``c`` (its row's sum; 0 when ``c`` is no row);
* ``recall = TP / support`` with ``TP`` the faces of ``c`` predicted as ``c``;
* ``precision = TP / predicted``, ``predicted`` being the faces of **every** row predicted
  as ``c``: a compound face the teacher puts on a basic output is a false positive of that
  output and lowers its precision (the faces a deployed model would see);
* ``f1 = 2 · precision · recall / (precision + recall)``.

A quotient without faces is 0 (scikit-learn's ``zero_division=0``): an output that predicts
nothing has precision 0, a class without test faces recall 0 and F1 0. Macro-F1 is the
unweighted mean of F1 over the scored classes **with support > 0** (a class without test
faces is left out, not counted as 0); ``None`` if there is none. ``accuracy`` is the share
of the scored classes' faces predicted right (rows without an output are left out, so the
teacher's accuracy is its basic test accuracy); the faces of the rows without an output are
counted in ``unscored``.

With ``closed_set=True`` the rows without an output are left out of precision too: a model is
scored on the faces of its own classes only, the way its accuracy is. That is the fair score
of the basic teacher on the basic classes (it cannot answer a compound face right, so counting
those faces as its false positives measures the task it was not given); ``cfer run`` reports
the teacher so, and keeps the other figure as ``macro_f1_open_set``.

"Basic" and "compound" in :meth:`ClassScores.macro_f1` are the stream's roles: the classes of
its first step and those of the later steps. By default they are the taxonomy's (a class is
compound if it is one of :data:`cfer.taxonomy.COMPOUND`); a stream whose first step and
later steps are other classes (CK+48's basic expressions split into a first step and later
steps) passes its first step's classes as ``basic=``.

Example:
    >>> import numpy as np
    >>> s = class_scores(np.array([[2, 0], [1, 1], [1, 0]]), rows=("happy", "sad", "awed"), outputs=("happy", "sad"))
    >>> [round(float(v), 3) for v in s.precision], s.recall.tolist(), s.support.tolist()
    ([0.5, 1.0], [1.0, 0.5], [2, 2])
    >>> round(s.macro_f1(), 4), s.accuracy, s.unscored
    (0.6667, 0.75, {'awed': 1})
    >>> closed = class_scores(np.array([[2, 0], [1, 1], [1, 0]]), rows=("happy", "sad", "awed"),
    ...                       outputs=("happy", "sad"), closed_set=True)   # the awed face is left out
    >>> [round(float(v), 3) for v in closed.precision], round(closed.macro_f1(), 4), closed.unscored
    ([0.667, 1.0], 0.7333, {'awed': 1})
    >>> class_scores(np.array([[2, 0], [1, 1]]), rows=("happy", "sad"), outputs=("happy", "sad"),
    ...              basic=("happy",)).macro_f1(kind="compound")     # sad came in a later step
    0.6666666666666666
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cfer import taxonomy

__all__ = ["ClassScores", "class_scores", "KINDS"]

KINDS = ("all", "basic", "compound")
"""What :meth:`ClassScores.macro_f1` can average over: every scored class, the basic-step
classes (by default every class that is not compound: neutral counts as basic), the
compound (later-step) classes."""


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


@dataclass(eq=False)
class ClassScores:
    """Per-class precision, recall, F1 and support of one model (see the module notes).

    Attributes:
        classes: The scored classes (the model's outputs, unit order).
        precision: Per class, TP / faces of any row predicted as it (0 if none).
        recall: Per class, TP / its faces (0 if none).
        f1: Per class, the harmonic mean of precision and recall (0 if both are 0).
        support: Per class, its test faces.
        accuracy: Correct share of the scored classes' faces (None without faces).
        unscored: Faces of each row that has no output (a wrong answer each).
        basic: The first step's classes, if the stream's roles differ from the taxonomy's
            (None: a class is compound if :data:`cfer.taxonomy.COMPOUND` has it).
    """

    classes: tuple[str, ...]
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    accuracy: float | None
    unscored: dict[str, int]
    basic: tuple[str, ...] | None = None

    def _is_compound(self, name: str) -> bool:
        return name not in self.basic if self.basic is not None else name in taxonomy.COMPOUND

    def macro_f1(self, *, kind: str = "all") -> float | None:
        """Unweighted mean F1 over the classes of ``kind`` (one of :data:`KINDS`: every class,
        the first step's, the later steps') that have test faces; None if none has."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        keep = [i for i, c in enumerate(self.classes) if self.support[i] > 0 and
                (kind == "all" or self._is_compound(c) == (kind == "compound"))]
        return float(self.f1[keep].mean()) if keep else None

    def to_dict(self) -> dict:
        """JSON form: ``{"per_class": {class: {"precision", "recall", "f1", "support"}},
        "macro_f1", "macro_f1_basic", "macro_f1_compound", "accuracy", "unscored"}``."""
        per_class = {c: {"precision": float(self.precision[i]), "recall": float(self.recall[i]),
                         "f1": float(self.f1[i]), "support": int(self.support[i])}
                     for i, c in enumerate(self.classes)}
        return {"per_class": per_class, "macro_f1": self.macro_f1(), "macro_f1_basic": self.macro_f1(kind="basic"),
                "macro_f1_compound": self.macro_f1(kind="compound"), "accuracy": self.accuracy,
                "unscored": dict(self.unscored)}


def class_scores(counts: np.ndarray | Sequence[Sequence[int]], *, rows: Sequence[str],
                 outputs: Sequence[str], basic: Sequence[str] | None = None,
                 closed_set: bool = False) -> ClassScores:
    """Score every output of a model from its confusion counts.

    Args:
        counts: ``(len(rows), len(outputs))`` counts: true class per row, predicted output
            per column (:attr:`Confusion.counts <cfer.continual.confusion.Confusion.counts>`,
            or the ``"counts"`` of its JSON form).
        rows: The true class of each row (any spelling of a cfer class name).
        outputs: The class of each output unit.
        basic: The stream's first-step classes, where they are not the taxonomy's basic
            classes (what ``macro_f1(kind="basic")`` averages over; the others are
            "compound"). Default: the taxonomy decides.
        closed_set: Count only the faces of the rows that are outputs in precision (the
            model's own classes); by default every row's faces predicted as a class count.
            ``unscored`` lists the faces left out either way.

    Returns:
        A :class:`ClassScores` over ``outputs``.

    Raises:
        ValueError: If ``counts`` does not have one row per class of ``rows`` and one
            column per output, or holds anything but non-negative whole numbers.
    """
    rows, outputs = taxonomy.normalize_many(list(rows)), taxonomy.normalize_many(list(outputs))
    first = None if basic is None else taxonomy.normalize_many(list(basic))
    given = np.asarray(counts)
    if given.size == 0 and len(rows) * len(outputs) == 0:
        given = given.reshape(len(rows), len(outputs))
    if given.shape != (len(rows), len(outputs)):
        raise ValueError(f"counts has shape {given.shape}; it needs one row per true class ({len(rows)}) and one "
                         f"column per output ({len(outputs)})")
    if (given < 0).any() or (given != np.round(given)).any():
        raise ValueError("counts must be non-negative whole numbers: give the confusion counts (Confusion.counts), "
                         "not the row-normalised matrix")
    counts = given.astype(np.int64)
    row_of = {c: i for i, c in enumerate(rows)}
    tp = np.array([counts[row_of[c], j] if c in row_of else 0 for j, c in enumerate(outputs)], np.int64)
    support = np.array([counts[row_of[c]].sum() if c in row_of else 0 for c in outputs], np.int64)
    own = [i for i, c in enumerate(rows) if c in outputs]
    predicted = counts[own].sum(0) if closed_set else counts.sum(0)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    faces = int(support.sum())
    unscored = {c: int(counts[i].sum()) for i, c in enumerate(rows) if c not in outputs}
    return ClassScores(classes=outputs, precision=precision, recall=recall, f1=f1, support=support,
                       accuracy=float(tp.sum() / faces) if faces else None, unscored=unscored,
                       basic=first)
