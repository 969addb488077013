"""`cfer compare` on two tiny runs: the CSV against both metrics.json, the page in Chromium, errors."""

import copy
import csv
import json
import re
import shutil
import warnings

import pytest
from test_pipeline import TINY

from cfer.app.cli import main
from cfer.app.compare import MISSING, read_runs, write_comparison
from cfer.app.config_io import config_from_dict
from cfer.app.pipeline import run_pipeline


def _variant(**changes) -> dict:
    values = copy.deepcopy(TINY)
    values["continual"]["orders"] = 2
    values["explain"] = {"per_class": 1}
    for key, value in changes.items():
        head, _, tail = key.partition(".")
        if tail:
            values.setdefault(head, {})[tail] = value
        else:
            values[head] = value
    return values


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    warnings.filterwarnings("ignore")
    root = tmp_path_factory.mktemp("compare")
    a, b = root / "run_a", root / "run_b"
    run_pipeline(config_from_dict(_variant()), out_dir=a, progress=False)
    run_pipeline(config_from_dict(_variant(**{"seed": 3, "continual.epochs": 2, "fewshot.shots": [1]})),
                 out_dir=b, progress=False)
    out = root / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    return a, b, out


def _fake_run(path, *, metrics: bool = True):
    """A folder that passes the run-folder checks (the error tests need no real run)."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("seed: 0\n")
    if metrics:
        (path / "metrics.json").write_text("{}")
    return path


def _csv_rows(out):
    rows = list(csv.DictReader((out / "compare.csv").open()))
    return {(r["section"], r["key"]): r for r in rows}


@pytest.mark.slow
def test_the_csv_holds_both_runs_numbers_as_in_their_metrics(two_runs):
    a, b, out = two_runs
    rows = _csv_rows(out)
    for run in (a, b):
        m = json.loads((run / "metrics.json").read_text())
        s = m["continual"]["summary"]
        for key in ("average_accuracy", "final_accuracy", "final_basic_accuracy", "final_compound_accuracy",
                    "forgetting"):
            assert float(rows[("metric", key)][run.name]) == pytest.approx(s[key]["mean"])
            assert float(rows[("metric", f"{key}.std")][run.name]) == pytest.approx(s[key]["std"])
        assert int(rows[("metric", "n_orders")][run.name]) == 2 == s["average_accuracy"]["n"]
        assert float(rows[("metric", "teacher.test_accuracy")][run.name]) == pytest.approx(
            m["teacher"]["test_accuracy"])
        for r in m["fewshot"]:
            key = f"fewshot.{r['encoder']}.{r['config']['ways']}way.{r['config']['shots']}shot"
            assert float(rows[("metric", key)][run.name]) == pytest.approx(r["accuracy"])
            assert float(rows[("metric", f"{key}.ci95")][run.name]) == pytest.approx(r["ci95"])
    assert rows[("metric", "average_accuracy.std")]["label"].endswith("std over class orders")
    # Run b measured 1-shot only: its 3-shot cells are empty, run a's are not.
    assert rows[("metric", "fewshot.student.5way.3shot")]["run_b"] == ""
    assert rows[("metric", "fewshot.student.5way.3shot")]["run_a"] != ""


@pytest.mark.slow
def test_the_config_rows_mark_exactly_the_keys_that_differ(two_runs):
    _, _, out = two_runs
    rows = _csv_rows(out)
    differs = {k for (section, k), r in rows.items() if section == "config" and r["differs"] == "yes"}
    assert differs == {"seed", "continual.epochs", "fewshot.shots"}
    assert (rows[("config", "continual.epochs")]["run_a"], rows[("config", "continual.epochs")]["run_b"]) == ("1", "2")
    assert rows[("config", "model.arch")]["run_a"] == rows[("config", "model.arch")]["run_b"] == "cfer_tiny"
    page = (out / "compare.html").read_text()
    marked = set(re.findall(r"<tr class=differs><td>([^<]+)</td>", page))
    assert marked == differs
    assert "<tr class=same><td>model.arch</td>" in page
    assert "3 of " in page and "keys differ" in page
    assert "mean ± std over class orders" in page and "mean ± 95% CI over episodes" in page
    assert f"<td class=missing>{MISSING}</td>" in page  # run b's 3-shot cells


@pytest.mark.slow
def test_the_page_loads_in_chromium_with_every_image_and_no_overflow(two_runs):
    from browser import page_images, require_chromium

    require_chromium()
    _, _, out = two_runs
    page = page_images(out / "compare.html")
    assert page["title"] == "cfer run comparison"
    assert sorted(i["src"] for i in page["images"]) == ["figures/accuracy_vs_step.png", "figures/fewshot.png"]
    assert [i["src"] for i in page["images"] if not (i["complete"] and i["naturalWidth"] > 300)] == []
    assert page["overflow"] == []
    assert page["console_errors"] == []


@pytest.mark.slow
def test_runs_with_different_step_counts_still_compare(two_runs, tmp_path):
    a, b, _ = two_runs
    short = tmp_path / "short"
    shutil.copytree(a, short, ignore=shutil.ignore_patterns("*.pt"))
    m = json.loads((short / "metrics.json").read_text())
    for r in m["continual"]["orders"]:
        r["seen_accuracy"] = r["seen_accuracy"][:2]
    m["fewshot"] = []
    del m["continual"]["summary"]["forgetting"]
    (short / "metrics.json").write_text(json.dumps(m))
    paths = write_comparison([short, b], out_dir=tmp_path / "cmp")
    rows = _csv_rows(tmp_path / "cmp")
    assert rows[("metric", "n_steps")]["short"] == "2"
    assert int(rows[("metric", "n_steps")]["run_b"]) > 2
    assert rows[("metric", "forgetting")]["short"] == "" and rows[("metric", "forgetting")]["run_b"] != ""
    assert rows[("metric", "fewshot.teacher.5way.1shot")]["short"] == ""
    assert paths["fewshot"].is_file() and paths["accuracy_vs_step"].is_file()


@pytest.mark.slow
def test_the_page_names_each_runs_machine_and_warns_when_they_differ(two_runs, tmp_path):
    a, b, out = two_runs
    page = (out / "compare.html").read_text()
    machine = json.loads((a / "metrics.json").read_text())["machine"]
    assert f"{machine['cpu']}, {machine['cpu_capability']}, torch {machine['torch']}" in page
    assert "machines" not in page  # both runs here: one machine, no warning
    other = tmp_path / "elsewhere"
    shutil.copytree(b, other, ignore=shutil.ignore_patterns("*.pt"))
    m = json.loads((other / "metrics.json").read_text())
    m["machine"] = {**m["machine"], "cpu_capability": "another"}
    (other / "metrics.json").write_text(json.dumps(m))
    write_comparison([a, other], out_dir=tmp_path / "cmp")
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "the runs ran on 2 machines (cpu_capability:" in page and "pair runs of one machine" in page


def test_a_run_recorded_before_the_thread_count_takes_its_configs(tmp_path):
    from cfer.app.compare import RunRecord, _machine, _machine_record
    from cfer.machine import describe, mixed_machines

    old = {k: v for k, v in describe().items() if k != "threads"}

    def run(name, machine, threads):
        return RunRecord(name=name, path=tmp_path / name, config={"threads": threads}, metrics={"machine": machine},
                         timing={})

    a, b = run("a", old, 1), run("b", {**old, "threads": 1}, 2)
    assert _machine_record(a)["threads"] == 1 and _machine_record(b)["threads"] == 1  # the record wins
    assert _machine(_machine_record(a)).endswith(", 1 thread") and _machine({"threads": 2}).endswith(", 2 threads")
    assert mixed_machines({r.name: _machine_record(r) for r in (a, b)}, what="runs") is None
    c = run("c", old, 2)
    assert "ran on 2 thread counts" in mixed_machines({r.name: _machine_record(r) for r in (a, c)}, what="runs")


def test_a_folder_name_shared_by_two_runs_gets_its_parent(tmp_path):
    for parent in ("x", "y"):
        _fake_run(tmp_path / parent / "run")
    names = [r.name for r in read_runs([tmp_path / "x" / "run", tmp_path / "y" / "run"])]
    assert names == ["x/run", "y/run"]


def test_errors_are_one_line_and_name_the_fix(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b")
    half = _fake_run(tmp_path / "half", metrics=False)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["compare", str(a)], "at least two run folders, got 1"),
        (["compare", str(a), str(tmp_path)], f"{tmp_path} is not a cfer run folder: it has no config.yaml; make one "
                                             f"with `cfer run --out {tmp_path}`"),
        (["compare", str(a), str(half)], f"no metrics.json; finish it with `cfer run --resume {half}`"),
        (["compare", str(a), str(a / ".." / a.name)], "is given twice"),
        (["compare", str(a), str(b), "--out", str(a_file)], f"{a_file} is a file; give a folder"),
        (["compare", str(a), str(tmp_path / "nope")], "does not exist"),
        (["compare", str(a), str(a_file)], f"{a_file} is a file, not a run folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("cfer compare: error: ") and message in err, err
        assert err.count("\n") == 1, err


@pytest.mark.slow
def test_the_default_out_is_a_new_dated_folder_printed_at_the_end(two_runs, tmp_path, monkeypatch, capsys):
    a, b, _ = two_runs
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(a), str(b)]) == 0
    made = list((tmp_path / "runs").glob("compare-*"))
    assert len(made) == 1 and re.fullmatch(r"compare-\d{8}-\d{6}", made[0].name)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"comparison: {(made[0] / 'compare.html').resolve()}"
