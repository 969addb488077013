"""The report's figures label what they show."""

from cfer import taxonomy
from cfer.app.figures import _short


def test_an_experience_label_counts_its_classes_by_kind():
    assert _short(list(taxonomy.BASIC)) == "6 basic"
    assert _short(list(taxonomy.COMPOUND[:5])) == "5 compound"  # was "5 basic" for a compound step
    assert _short([*taxonomy.BASIC[:2], *taxonomy.COMPOUND[:2]]) == "4 classes"
    assert _short(["happily_surprised", "awed"]) == "happily surprised, awed"


def test_the_region_figure_groups_classes_by_their_role_in_the_run():
    """A run on basic expressions only (first step happy, sad; later angry, fearful) still
    compares its first step with its later classes, and the values are the groups' means."""
    import matplotlib

    matplotlib.use("Agg")
    from cfer.app.figures import region_comparison

    def att(v):
        return {r: v for r in taxonomy.REGIONS}

    metrics = {"data": {"basic": ["happy", "sad"], "compound": ["angry"], "holdout": ["fearful"]},
               "explain": {"student": {"region_attention": {"happy": att(0.1), "sad": att(0.3),
                                                            "angry": att(0.5), "fearful": att(0.7)}}}}
    fig = region_comparison(metrics)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["student, basic", "student, compound"]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    n = len(taxonomy.REGIONS)
    assert heights[:n] == [0.2] * n and heights[n:] == [0.6] * n  # means of (0.1, 0.3) and (0.5, 0.7)
