import math

import pytest

from cfer.continual.metrics import ContinualResults, experience_accuracies


def _results():
    r = ContinualResults(n_test=[60, 20, 20])
    r.add_step(accuracies=[0.9], seconds=2.0)
    r.add_step(accuracies=[0.7, 0.8], seconds=1.0)
    r.add_step(accuracies=[0.6, 0.5, 1.0], seconds=3.0)
    return r


def test_seen_accuracy_pools_items_of_seen_experiences():
    r = _results()
    assert r.seen_accuracy == pytest.approx([0.9, (0.7 * 60 + 0.8 * 20) / 80, (0.6 * 60 + 0.5 * 20 + 1.0 * 20) / 100])
    assert r.average_accuracy == pytest.approx(sum(r.seen_accuracy) / 3)
    assert r.final_accuracy == pytest.approx(0.66)


def test_basic_newest_compound_and_forgetting():
    r = _results()
    assert r.basic_kept == [0.9, 0.7, 0.6]
    assert r.newest_accuracy == [0.9, 0.8, 1.0]
    assert math.isnan(r.compound_accuracy[0])
    assert r.compound_accuracy[2] == pytest.approx(0.75)
    # exp 0: best before last 0.9 -> 0.6 ; exp 1: 0.8 -> 0.5
    assert r.forgetting == pytest.approx(((0.9 - 0.6) + (0.8 - 0.5)) / 2)
    d = r.to_dict()
    assert d["final_basic_accuracy"] == 0.6 and d["mean_step_time_s"] == pytest.approx(2.0)
    assert d["mean_newest_accuracy"] == pytest.approx(0.9)


def test_add_step_checks_its_input():
    r = ContinualResults(n_test=[10, 10])
    with pytest.raises(ValueError, match="step 0 needs accuracies on experiences 0..0, got 2"):
        r.add_step(accuracies=[0.1, 0.2], seconds=1)
    r.add_step(accuracies=[0.5], seconds=1)
    r.add_step(accuracies=[0.5, 0.5], seconds=1)
    with pytest.raises(ValueError, match="only 2 experiences"):
        r.add_step(accuracies=[0.5, 0.5, 0.5], seconds=1)


def test_experience_accuracies_reads_avalanche_metric_names():
    m = {
        "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp001": 0.25,
        "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp000": 0.75,
        "Top1_Acc_Stream/eval_phase/test_stream/Task000": 0.5,
    }
    assert experience_accuracies(m, n_experiences=2) == [0.75, 0.25]
    with pytest.raises(KeyError, match=r"no test_stream accuracy for experiences \[2\]"):
        experience_accuracies(m, n_experiences=3)


def test_names_without_a_task_segment_are_read_too():
    """Avalanche 0.6's new-style benchmarks name experience accuracies without /Task000/."""
    metrics = {"Top1_Acc_Exp/eval_phase/valid_stream/Exp000": 0.75, "Top1_Acc_Exp/eval_phase/valid_stream/Exp001": 0.5,
               "Top1_Acc_Exp/eval_phase/test_stream/Exp000": 0.1}
    assert experience_accuracies(metrics, n_experiences=2, stream="valid_stream") == [0.75, 0.5]
    with pytest.raises(KeyError, match=r"no test_stream accuracy for experiences \[1\]"):
        experience_accuracies(metrics, n_experiences=2)
