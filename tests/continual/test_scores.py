"""Per-class precision, recall, F1 and macro-F1 from confusion counts, against hand-computed values."""

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from cfer.continual.confusion import Confusion
from cfer.continual.scores import class_scores

OUTPUTS = ("happy", "surprised", "sad", "happily_surprised")
ROWS = ("happy", "surprised", "happily_surprised")  # sad has no test face
COUNTS = np.array([[3, 0, 1, 0],    # happy: 3 right, 1 read as sad
                   [1, 2, 0, 0],    # surprised: 2 right, 1 read as happy
                   [1, 1, 0, 0]])   # happily surprised: never predicted by anyone


def test_per_class_scores_match_hand_computed_values_and_scikit_learn():
    s = class_scores(COUNTS, rows=ROWS, outputs=OUTPUTS)
    assert s.classes == OUTPUTS and s.support.tolist() == [4, 3, 0, 2]
    # happy: TP 3 of 5 predicted, 3 of 4 faces; surprised: 2 of 3 both ways
    assert s.precision == pytest.approx([3 / 5, 2 / 3, 0, 0])  # sad: 1 prediction, 0 right; compound: none (0 by rule)
    assert s.recall == pytest.approx([3 / 4, 2 / 3, 0, 0])     # sad: no support (0 by rule)
    assert s.f1 == pytest.approx([2 / 3, 2 / 3, 0, 0])
    assert s.accuracy == pytest.approx(5 / 9) and s.unscored == {}
    # macro-F1 leaves out the class without support (sad), keeps the one never predicted
    assert s.macro_f1() == pytest.approx(4 / 9)
    assert s.macro_f1(kind="basic") == pytest.approx(2 / 3) and s.macro_f1(kind="compound") == 0
    # the same as scikit-learn with zero_division=0, from the faces the counts stand for
    rows = [OUTPUTS.index(r) for r in ROWS]
    true = np.repeat([rows[i] for i in range(3) for j in range(4)], COUNTS.ravel())
    pred = np.repeat([j for i in range(3) for j in range(4)], COUNTS.ravel())
    p, r, f, n = precision_recall_fscore_support(true, pred, labels=range(4), zero_division=0)
    assert (s.precision, s.recall, s.f1) == (pytest.approx(p), pytest.approx(r), pytest.approx(f))
    assert s.support.tolist() == n.tolist()
    _, _, macro, _ = precision_recall_fscore_support(true, pred, labels=[0, 1, 3], average="macro", zero_division=0)
    assert s.macro_f1() == pytest.approx(macro)


def test_rows_without_an_output_lower_the_precision_of_the_outputs_they_land_on():
    # the basic teacher: outputs happy and sad; the compound row has no output
    rows, outputs = ("happy", "sad", "happily surprised"), ("happy", "sad")
    counts = [[2, 0], [1, 1], [2, 1]]
    s = class_scores(counts, rows=rows, outputs=outputs)
    assert s.classes == ("happy", "sad") and s.unscored == {"happily_surprised": 3}
    assert s.precision == pytest.approx([2 / 5, 1 / 2])  # the compound faces are false positives
    assert s.recall == pytest.approx([1, 1 / 2]) and s.support.tolist() == [2, 2]
    assert s.accuracy == pytest.approx(3 / 4)  # over the basic faces only: the teacher's basic accuracy
    assert s.macro_f1() == pytest.approx((4 / 7 + 1 / 2) / 2) and s.macro_f1(kind="compound") is None
    alone = class_scores(counts[:2], rows=rows[:2], outputs=outputs)
    assert alone.precision[0] == pytest.approx(2 / 3) and alone.recall.tolist() == s.recall.tolist()
    # closed set: the same model scored on the faces of its own classes, as if the compound row were absent
    closed = class_scores(counts, rows=rows, outputs=outputs, closed_set=True)
    assert closed.precision.tolist() == alone.precision.tolist() and closed.f1.tolist() == alone.f1.tolist()
    assert closed.unscored == {"happily_surprised": 3} and closed.accuracy == s.accuracy
    assert closed.macro_f1() == pytest.approx((4 / 5 + 2 / 3) / 2) and closed.macro_f1() > s.macro_f1()


def test_confusion_scores_and_their_json_form():
    c = Confusion(rows=ROWS, outputs=OUTPUTS, counts=COUNTS)
    d = c.scores().to_dict()
    assert list(d["per_class"]) == list(OUTPUTS)
    assert d["per_class"]["happy"] == {"precision": pytest.approx(0.6), "recall": 0.75,
                                       "f1": pytest.approx(2 / 3), "support": 4}
    assert d["macro_f1"] == pytest.approx(4 / 9) and d["macro_f1_basic"] == pytest.approx(2 / 3)
    assert d["macro_f1_compound"] == 0 and d["accuracy"] == pytest.approx(5 / 9) and d["unscored"] == {}
    # the JSON form of the confusion scores the same
    again = class_scores(c.to_dict()["counts"], rows=c.to_dict()["classes"], outputs=c.to_dict()["outputs"])
    assert again.to_dict() == d


def test_the_streams_first_step_decides_what_basic_and_compound_mean_when_given():
    # CK+48-like: basic expressions only, happy in the first step, surprised and sad in later steps
    s = class_scores(COUNTS, rows=ROWS, outputs=OUTPUTS, basic=("happy",))
    assert s.macro_f1(kind="basic") == pytest.approx(2 / 3)  # happy alone
    assert s.macro_f1(kind="compound") == pytest.approx((2 / 3 + 0) / 2)  # surprised and happily surprised (sad: no face)
    assert s.macro_f1() == class_scores(COUNTS, rows=ROWS, outputs=OUTPUTS).macro_f1()  # "all" does not change
    d = Confusion(rows=ROWS, outputs=OUTPUTS, counts=COUNTS).scores(basic=["Happy"]).to_dict()  # any spelling
    assert d["macro_f1_basic"] == pytest.approx(2 / 3) and d["macro_f1_compound"] == pytest.approx(1 / 3)
    # a basic-only stream without the option: every class counts as basic, none as compound
    only_basic = class_scores([[2, 0], [1, 1]], rows=("happy", "sad"), outputs=("happy", "sad"))
    assert only_basic.macro_f1(kind="compound") is None
    assert class_scores([[2, 0], [1, 1]], rows=("happy", "sad"), outputs=("happy", "sad"),
                        basic=("happy",)).macro_f1(kind="compound") == pytest.approx(2 / 3)


def test_wrong_counts_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"one row per true class \(3\) and one column per output \(4\)"):
        class_scores(COUNTS[:2], rows=ROWS, outputs=OUTPUTS)
    with pytest.raises(ValueError, match="give the confusion counts"):
        class_scores(COUNTS / COUNTS.sum(1, keepdims=True), rows=ROWS, outputs=OUTPUTS)
    with pytest.raises(ValueError, match="kind must be one of"):
        class_scores(COUNTS, rows=ROWS, outputs=OUTPUTS).macro_f1(kind="old")
    empty = class_scores(np.zeros((0, 2), int), rows=(), outputs=("happy", "sad"))
    assert empty.accuracy is None and empty.macro_f1() is None and empty.f1.tolist() == [0, 0]
