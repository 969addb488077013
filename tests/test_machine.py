"""cfer.machine: the record of the machine a measurement ran on, and the note when files differ."""

import json

from cfer.machine import COMPARED, describe, differences, mixed_machines


def test_the_record_is_plain_json_with_what_changes_the_figures():
    record = describe()
    assert set(COMPARED) <= set(record)
    assert json.loads(json.dumps(record)) == record
    assert record["cores"] >= 1 and record["cpu"]
    assert record["torch"].split("+")[0].count(".") == 2


def test_differences_name_each_key_and_a_missing_record_differs_on_all():
    a = describe()
    assert differences(a, dict(a)) == {}
    b = {**a, "torch": "0.0.0", "cores": a["cores"] + 8}  # the core count is not compared
    assert differences(a, b) == {"torch": (a["torch"], "0.0.0")}
    assert set(differences(a, None)) == set(COMPARED)
    assert differences(None, None) == {}


def test_the_note_for_several_files():
    a = describe()
    assert mixed_machines({"x.json": a}) is None  # one file: nothing to pair
    assert mixed_machines({"x.json": a, "y.json": dict(a)}) is None
    note = mixed_machines({"x.json": a, "y.json": {**a, "cpu": "another"}, "z.json": None})
    assert note.startswith("note: 1 of the 3 files record no machine (z.json)")
    assert "the files ran on 2 machines (cpu: " in note and "'another' in y.json" in note


def test_the_ensemble_teacher_summary_says_when_its_files_ran_on_two_machines(load_benchmark, tmp_path):
    bench = load_benchmark("ensemble_teacher")
    keys = [k for k, _ in bench.COLUMNS] + ["forgetting"]
    paths = []
    for i, setup in enumerate(("single", "ensemble->single")):
        run = {"seed": 0, **{k: 0.5 + 0.1 * i for k in keys}}
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps({"machine": {**describe(), "cpu": f"cpu {i}"}, "runs": {setup: [run]}}))
        paths.append(path)
    text = bench.summarise(paths)
    assert text.startswith("note: the files ran on 2 machines (cpu: 'cpu 0' in")
    same = json.loads(paths[1].read_text()) | {"machine": json.loads(paths[0].read_text())["machine"]}
    paths[1].write_text(json.dumps(same))
    assert bench.summarise(paths).startswith("seeds [0]")


def test_the_thread_count_is_recorded_and_two_counts_are_not_paired_unawares():
    import torch

    record = describe()
    assert record["threads"] == torch.get_num_threads()
    note = mixed_machines({"one.json": {**record, "threads": 1}, "two.json": {**record, "threads": 2}})
    assert note.startswith("note: the files ran on 2 thread counts (threads: 1 in one.json, 2 in two.json)")
    note = mixed_machines({"one.json": {**record, "threads": 1}, "two.json": {**record, "threads": 2, "cpu": "y"}})
    assert "ran on 2 machines or thread counts (cpu: " in note


def test_an_older_record_takes_the_thread_count_from_the_runs_arguments(tmp_path):
    from cfer.machine import machines_note, record_of

    old = {k: v for k, v in describe().items() if k != "threads"}  # written before threads were recorded
    assert record_of({"machine": old, "args": {"threads": 2}})["threads"] == 2
    assert "threads" not in record_of({"machine": old, "args": {}})
    assert record_of({"machine": {**old, "threads": 1}, "args": {"threads": 2}})["threads"] == 1  # the record wins
    assert record_of({"args": {"threads": 1}}) is None
    paths = []
    for name, threads in (("a.json", 1), ("b.json", 1), ("c.json", 2)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps({"machine": old, "args": {"threads": threads}}))
    assert machines_note(paths[:2]) is None
    assert "(threads: 1 in " in machines_note(paths) and f"2 in {paths[2]}" in machines_note(paths)
