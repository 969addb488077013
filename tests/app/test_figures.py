"""The report's figures label what they show."""

from cfer import taxonomy
from cfer.app.figures import _short


def test_an_experience_label_counts_its_classes_by_kind():
    assert _short(list(taxonomy.BASIC)) == "6 basic"
    assert _short(list(taxonomy.COMPOUND[:5])) == "5 compound"  # was "5 basic" for a compound step
    assert _short([*taxonomy.BASIC[:2], *taxonomy.COMPOUND[:2]]) == "4 classes"
    assert _short(["happily_surprised", "awed"]) == "happily surprised, awed"
