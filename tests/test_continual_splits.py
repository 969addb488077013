"""``benchmarks/continual_splits.py``: runs of several subject splits pooled and paired."""

import json

import pytest


@pytest.fixture(scope="module")
def splits(load_benchmark):
    return load_benchmark("continual_splits")


def _file(tmp_path, seed, results, **args):
    path = tmp_path / f"seed{seed}.json"
    runs = {s: [{"order": list(o), "average_accuracy": a, "final_accuracy": a - 0.1, "forgetting": 1.0 - a}
                for o, a in r] for s, r in results.items()}
    path.write_text(json.dumps({"args": {"seed": seed, "data": "d", "per_step": 1, **args},
                                "results": [{"strategy": s, "runs": r} for s, r in runs.items()]}))
    return path


def test_splits_pool_pair_and_count_a_repeated_order_once(splits, tmp_path):
    a = _file(tmp_path, 0, {"cfer": [("ab", 0.8), ("ba", 0.6), ("ab", 0.8)], "icarl": [("ab", 0.7), ("ba", 0.7),
                                                                                       ("ab", 0.7)]})
    b = _file(tmp_path, 1, {"cfer": [("ab", 0.9)], "icarl": [("ab", 0.6)]})
    runs = splits.load_runs([a, b])
    assert len(runs["cfer"]) == 3  # split 0's repeated order "ab" counts once; split 1's "ab" is another run
    table = splits.pooled_table(runs, reference="cfer")
    assert "3 distinct (split, class order) runs over 2 splits" in table
    row = next(line for line in table.splitlines() if line.startswith("| icarl | 3 | +"))
    # differences +0.1, -0.1 (split 0) and +0.3 (split 1): mean +0.1, won 2 of 3, by split 0.0 and +0.3
    assert "+0.100 ± 0.163" in row and "2 / 3" in row and row.endswith("+0.000, +0.300 |")
    assert "| -0.100 ± 0.163 |" in row  # forgetting: 1 - avg acc in these runs


def test_splits_refuse_a_strategy_twice_on_a_seed_or_another_comparison(splits, tmp_path):
    a = _file(tmp_path, 0, {"cfer": [("ab", 0.8)]})
    (tmp_path / "again").mkdir()
    again = _file(tmp_path / "again", 0, {"cfer": [("ab", 0.8)]})
    with pytest.raises(SystemExit, match="both hold cfer on seed 0"):
        splits.load_runs([a, again])
    (tmp_path / "side").mkdir()  # another strategy of the same split, run beside it: joined
    side = _file(tmp_path / "side", 0, {"icarl": [("ab", 0.7)]})
    assert sorted(splits.load_runs([a, side])) == ["cfer", "icarl"]
    other = _file(tmp_path, 1, {"cfer": [("ab", 0.8)]}, per_step=3)
    with pytest.raises(SystemExit, match="per_step"):
        splits.load_runs([a, other])
    with pytest.raises(SystemExit, match="choose --reference"):
        splits.pooled_table(splits.load_runs([a]), reference="icarl")


def test_splits_rename_a_strategy_in_the_files_of_one_folder(splits, tmp_path):
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    old = _file(tmp_path / "before", 0, {"cfer": [("ab", 0.7)], "icarl": [("ab", 0.6)]})
    new = _file(tmp_path / "after", 0, {"cfer": [("ab", 0.8)]})
    runs = splits.load_runs([new, old], renames=[f"{tmp_path / 'before'}:cfer=cfer+old"])
    assert sorted(runs) == ["cfer", "cfer+old", "icarl"]
    assert runs["cfer"][(0, ("a", "b"))]["average_accuracy"] == 0.8  # the other folder's cfer keeps its name
    with pytest.raises(SystemExit, match="FOLDER:OLD=NEW"):
        splits.load_runs([old], renames=["cfer=cfer+old"])


def test_files_of_two_machines_are_flagged(splits, tmp_path, capsys):
    from cfer.machine import describe

    here = describe()
    a = _file(tmp_path, 0, {"cfer": [("ab", 0.8)]})
    b = _file(tmp_path, 1, {"cfer": [("ab", 0.7)]})
    for path, record in ((a, here), (b, here)):
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "machine": record}))
    splits.main([str(a), str(b)])
    assert "machine" not in capsys.readouterr().out  # one machine: nothing to say
    data = json.loads(b.read_text())
    b.write_text(json.dumps({**data, "machine": {**here, "cpu_capability": "AVX2" if here["cpu_capability"] != "AVX2"
                                                 else "AVX512"}}))
    splits.main([str(a), str(b)])
    out = capsys.readouterr().out
    assert out.startswith("note: the files ran on 2 machines (cpu_capability:") and "pair runs of one machine" in out
    data.pop("machine")
    b.write_text(json.dumps(data))
    splits.main([str(a), str(b)])
    assert "1 of the 2 files record no machine" in capsys.readouterr().out
