"""``benchmarks/continual_cost.py``: accuracy against step cost, the cost measured against replay in each file."""

import json

import pytest


@pytest.fixture(scope="module")
def cost(load_benchmark):
    return load_benchmark("continual_cost")


def _file(path, results, **args):
    """A continual_compare JSON: ``results`` maps strategy -> [(order, average accuracy, step seconds)]."""
    runs = {s: [{"order": list(o), "average_accuracy": a, "mean_step_time_s": t} for o, a, t in r]
            for s, r in results.items()}
    path.write_text(json.dumps({"args": {"per_step": 1, "epochs": 4, "seed": 0, **args},
                                "results": [{"strategy": s, "runs": r} for s, r in runs.items()]}))
    return path


def test_cost_is_against_replay_in_the_same_file_and_pairs_by_order(cost, tmp_path, capsys):
    # the second file ran on a machine twice as slow: its ratios, not its seconds, count
    a = _file(tmp_path / "a.json", {"replay": [("ab", 0.4, 1.0), ("ba", 0.4, 1.0)],
                                    "cfer": [("ab", 0.70, 4.0), ("ba", 0.66, 4.0)]})
    b = _file(tmp_path / "b.json", {"replay": [("ab", 0.4, 2.0), ("ba", 0.4, 2.0)],
                                    "icarl": [("ab", 0.65, 10.0), ("ba", 0.64, 10.0)],
                                    "cfer+mixed": [("ab", 0.58, 3.0), ("ba", 0.57, 3.0)]})
    runs, ratios, _ = cost.load([a, b])
    assert ratios == {"replay": [1.0, 1.0], "cfer": [4.0], "icarl": [5.0], "cfer+mixed": [1.5]}
    rows = cost.table(runs, ratios, paired_to="icarl")
    assert [r["strategy"] for r in rows] == ["replay", "cfer+mixed", "cfer", "icarl"]  # cheapest first
    by = {r["strategy"]: r for r in rows}
    assert by["cfer"]["mean"] == pytest.approx(0.68) and by["cfer"]["std"] == pytest.approx(0.02)
    assert by["cfer"]["delta"][:2] == pytest.approx((0.035, 0.015)) and by["cfer"]["delta"][2:] == (2, 2)
    assert by["cfer+mixed"]["delta"][0] == pytest.approx(-0.07) and by["cfer+mixed"]["delta"][3] == 0
    assert by["icarl"]["delta"] is None  # no difference from itself

    assert cost.main([str(a), str(b), "--paired-to", "icarl", "--plot", str(tmp_path / "p.png"),
                      "--cost-line", "1.3"]) == 0
    out = capsys.readouterr().out
    assert "| cfer | 2 | 0.680 ± 0.020 | 4.00× | 1 | +0.035 ± 0.015 (2 / 2) |" in out
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_a_file_without_replay_or_of_another_setting_is_refused_with_the_fix(cost, tmp_path):
    a = _file(tmp_path / "a.json", {"replay": [("ab", 0.4, 1.0)], "cfer": [("ab", 0.7, 4.0)]})
    joint = _file(tmp_path / "joint.json", {"joint": [("ab", 0.7, 3.0)]})
    with pytest.raises(SystemExit, match="joint.json: no replay runs.*add replay to its --strategies"):
        cost.load([a, joint])
    three = _file(tmp_path / "three.json", {"replay": [("ab", 0.4, 1.0)]}, per_step=3)
    with pytest.raises(SystemExit, match=r"different settings \(per_step differ in .*three.json\)"):
        cost.load([a, three])
    newer = _file(tmp_path / "newer.json", {"replay": [("ba", 0.4, 1.0)]}, init_per_order=False)
    assert set(cost.load([a, newer])[0]["replay"]) == {("a", "b"), ("b", "a")}  # older files lack the flag
    runs, ratios, _ = cost.load([a])
    with pytest.raises(SystemExit, match="--paired-to icarl: not in the files"):
        cost.table(runs, ratios, paired_to="icarl")
