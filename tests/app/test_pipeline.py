"""The whole job on tiny synthetic data: files, metrics, report (rendered in Chromium)."""

import csv
import json
import re
import warnings
from dataclasses import asdict

import pytest

from cfer.app.config_io import config_from_dict, with_overrides
from cfer.app.pipeline import RunExistsError, load_run_config, run_pipeline
from cfer.app.report import summary_table
from cfer.continual.presets import PRESETS

TINY = {
    "model": {"arch": "cfer_tiny"},
    "data": {"image_size": 32, "synthetic_subjects": [4, 2, 3], "synthetic_per_class": 6},
    "teacher": {"epochs": 2},
    "continual": {"epochs": 1, "per_step": 4, "orders": 2},
    "fewshot": {"episodes": 50, "shots": [1, 3]},
    "explain": {"per_class": 2},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    warnings.filterwarnings("ignore")
    out = tmp_path_factory.mktemp("run")
    config = config_from_dict(TINY)
    metrics = run_pipeline(config, out_dir=out, progress=False)
    return out, config, metrics


def test_the_run_folder_holds_every_artefact(tiny_run):
    out, config, metrics = tiny_run
    for rel in ("config.yaml", "teacher.pt", "checkpoints/order0.pt", "checkpoints/order1.pt", "students/order0.pt",
                "results/order0.json", "fewshot.json", "metrics.json", "timing.json", "report.html",
                "tables/steps.csv", "tables/fewshot.csv", "tables/regions.csv", "tables/accuracy_matrix_order1.csv",
                "figures/accuracy_matrix.png", "figures/accuracy_vs_step.png", "figures/fewshot.png",
                "figures/regions_basic_vs_compound.png", "explain/teacher/overlays.png", "explain/student/regions.png",
                "confusion.json", "figures/confusion_student.png", "figures/confusion_teacher.png",
                "tables/confusion_student.csv", "tables/constituents.csv", "explain/student/similarity.png",
                "tables/class_scores.csv"):
        assert (out / rel).is_file(), rel
    assert load_run_config(out) == config
    assert not list(out.rglob("*.tmp")), "no temporary file may be left behind"


def test_metrics_describe_the_stream_episodes_and_maps(tiny_run):
    out, _, metrics = tiny_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["data"]["holdout"] == metrics["data"]["holdout"] and len(saved["data"]["holdout"]) == 5
    assert not set(saved["data"]["holdout"]) & set(saved["data"]["compound"])  # hold-out never streamed
    orders = saved["continual"]["orders"]
    assert len(orders) == 2 and orders[0]["order"] != orders[1]["order"]
    # 10 stream classes at (at most) 4 per step: 3 steps of even size, larger first
    assert [len(s) for s in orders[0]["step_classes"]] == [6, 4, 3, 3]
    assert len(orders[0]["matrix"]) == 4 and len(orders[0]["matrix"][-1]) == 4
    assert saved["continual"]["summary"]["average_accuracy"]["n"] == 2
    from cfer.machine import describe

    assert saved["machine"] == describe()  # what it ran on: runs repeat to the digit on one machine only
    assert orders[0]["memory_size"] == int(0.3 * 4 * 6 * 16)  # M = floor(0.3 |train|), 16 stream classes
    # the quotas the report shows: a basic class half a compound class's share (6 * 0.5 + 10 = 13 shares)
    assert (orders[0]["memory_per_basic_class"], orders[0]["memory_per_class"]) == (115 // 2 // 13, 115 // 13) == (4, 8)
    assert saved["data"]["unused"] == {} and saved["data"]["skipped"] == {}
    strategy = saved["continual"]["strategy"]  # the preset and every option it resolved to
    assert strategy["preset"] == "cfer" and strategy["options"] == json.loads(json.dumps(asdict(PRESETS["cfer"])))
    assert "the <b>cfer</b> strategy" in (out / "report.html").read_text()
    fs = {(r["encoder"], r["config"]["shots"]): r for r in saved["fewshot"]}
    assert set(fs) == {("teacher", 1), ("teacher", 3), ("student", 1), ("student", 3)}
    assert all(0 <= r["accuracy"] <= 1 and r["ci95"] > 0 and r["episodes"] == 50 for r in fs.values())
    assert set(fs[("teacher", 1)]["per_class"]) == set(saved["data"]["holdout"])
    assert set(saved["explain"]) == {"teacher", "student"}
    assert "localisation" in saved["explain"]["teacher"]
    text = summary_table(metrics)
    assert "average accuracy over steps" in text
    assert "± std over 2 class orders" in text and "± 95% CI over 50 episodes" in text  # every ± says what it is


def test_the_confusion_matrices_cover_every_class_and_split_compound_errors(tiny_run):
    out, _, metrics = tiny_run
    saved = json.loads((out / "metrics.json").read_text())["confusion"]
    assert saved == json.loads((out / "confusion.json").read_text())
    student, teacher = saved["student"], saved["teacher"]
    learnt = metrics["continual"]["orders"][0]["class_names"]
    assert student["classes"] == student["outputs"] == learnt  # basic and compound, rows and columns
    assert teacher["outputs"] == metrics["data"]["basic"]
    assert teacher["classes"] == metrics["data"]["basic"] + metrics["data"]["compound"]
    for c in (student, teacher):
        assert [sum(r) for r in c["matrix"]] == pytest.approx([1] * len(c["classes"]), abs=1e-3)
        assert set(c["constituent_share"]) == set(metrics["data"]["compound"])
    for share in teacher["constituent_share"].values():
        assert share["accuracy"] == 0 and share["errors"] == share["n"] > 0  # no compound output
        assert share["chance"] == pytest.approx(2 / 6)
        assert share["to_constituents"] + share["to_other"] == pytest.approx(1)
    rows = list(csv.DictReader((out / "tables" / "constituents.csv").open()))
    assert len(rows) == 2 * len(metrics["data"]["compound"]) and "_" in rows[0]["compound"]  # canonical in CSV


def test_per_class_scores_and_macro_f1_of_both_models_come_from_the_confusion_counts(tiny_run):
    out, _, metrics = tiny_run
    saved = json.loads((out / "metrics.json").read_text())
    scores, confusions = saved["scores"], saved["confusion"]
    assert set(scores) == {"student", "teacher"}
    learnt, basic = metrics["continual"]["orders"][0]["class_names"], metrics["data"]["basic"]
    student, teacher = scores["student"], scores["teacher"]
    assert list(student["per_class"]) == learnt and list(teacher["per_class"]) == basic
    assert set(teacher["unscored"]) == set(metrics["data"]["compound"]) and student["unscored"] == {}
    for model, sc in scores.items():
        counts, rows = confusions[model]["counts"], confusions[model]["classes"]
        for j, (c, v) in enumerate(sc["per_class"].items()):
            i = rows.index(c)
            # the faces of the model's own classes only: not the teacher's compound faces
            predicted = sum(row[j] for row, r in zip(counts, rows) if r in sc["per_class"])
            assert v["support"] == sum(counts[i]) > 0
            assert v["recall"] == pytest.approx(counts[i][j] / v["support"])
            assert v["precision"] == pytest.approx(counts[i][j] / predicted if predicted else 0)
            p, r = v["precision"], v["recall"]
            assert v["f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0)
        f1 = {c: v["f1"] for c, v in sc["per_class"].items()}
        assert sc["macro_f1"] == pytest.approx(sum(f1.values()) / len(f1))
        assert sc["macro_f1_basic"] == pytest.approx(sum(f1[c] for c in basic) / len(basic))
    compound = [c for c in learnt if c not in basic]
    assert student["macro_f1_compound"] == pytest.approx(sum(student["per_class"][c]["f1"] for c in compound)
                                                         / len(compound))
    assert teacher["macro_f1_compound"] is None
    # the open-set figure counts the compound faces the teacher puts on a basic output as its false positives
    assert "macro_f1_open_set" not in student
    t_counts = confusions["teacher"]["counts"]
    open_f1 = []
    for j, c in enumerate(basic):
        tp, support = t_counts[confusions["teacher"]["classes"].index(c)][j], teacher["per_class"][c]["support"]
        p, r = tp / max(sum(row[j] for row in t_counts), 1), tp / support
        open_f1.append(2 * p * r / (p + r) if p + r else 0)
    assert teacher["macro_f1_open_set"] == pytest.approx(sum(open_f1) / len(open_f1))
    assert teacher["macro_f1_open_set"] <= teacher["macro_f1"]
    # accuracy agrees with the stages that measured it by their own forward passes
    assert teacher["accuracy"] == pytest.approx(metrics["teacher"]["test_accuracy"])
    assert student["accuracy"] == pytest.approx(metrics["continual"]["orders"][0]["final_accuracy"])
    rows = list(csv.DictReader((out / "tables" / "class_scores.csv").open()))
    assert [(r["model"], r["class"]) for r in rows] == [("student", c) for c in learnt] + [("teacher", c) for c in basic]
    assert {r["kind"] for r in rows if r["class"] in compound} == {"compound"}
    assert {r["kind"] for r in rows if r["class"] in basic} == {"basic"}
    assert float(rows[0]["f1"]) == pytest.approx(student["per_class"][learnt[0]]["f1"])
    text = summary_table(metrics)
    for label in ("teacher macro-F1, basic classes", "final macro-F1, all learnt classes",
                  "final macro-F1, basic classes", "final macro-F1, compound classes"):
        assert label in text
    assert f"{student['macro_f1']:.3f}" in text and f"{teacher['macro_f1']:.3f}" in text
    html = (out / "report.html").read_text()
    section = html[html.index("<h2>Per-class precision, recall and F1</h2>"):]
    table = section[: section.index("</table>")]
    assert "<th>student F1</th><th>teacher F1</th>" in table
    assert compound[0].replace("_", " ") in table and compound[0] not in table  # display names
    assert table.count("<tr>") == 1 + len(learnt) + 1  # header, a row per learnt class, macro-F1


def test_tables_agree_with_the_metrics(tiny_run):
    out, _, metrics = tiny_run
    rows = list(csv.DictReader((out / "tables" / "steps.csv").open()))
    assert len(rows) == 8
    first = metrics["continual"]["orders"][0]
    assert [float(r["seen_accuracy"]) for r in rows if r["order"] == "0"] == pytest.approx(first["seen_accuracy"])
    fs = list(csv.DictReader((out / "tables" / "fewshot.csv").open()))
    assert float(fs[0]["accuracy"]) == pytest.approx(metrics["fewshot"][0]["accuracy"])


def test_basic_and_compound_in_the_scores_are_the_streams_roles(tiny_run, tmp_path):
    """A stream whose first step is not the taxonomy's basic classes (CK+48 split into a first
    step and later steps): its macro-F1s and class_scores.csv follow the stream's roles."""
    from cfer.app.pipeline import _scores
    from cfer.app.report import _tables

    _, _, metrics = tiny_run
    learnt = metrics["continual"]["orders"][0]["class_names"]
    first = learnt[:2]  # as if only two classes had made the first step
    scores = _scores(metrics["confusion"], basic=tuple(first))
    f1 = {c: v["f1"] for c, v in scores["student"]["per_class"].items()}
    assert scores["student"]["macro_f1_basic"] == pytest.approx(sum(f1[c] for c in first) / 2)
    later = [c for c in learnt if c not in first]
    assert scores["student"]["macro_f1_compound"] == pytest.approx(sum(f1[c] for c in later) / len(later))
    assert scores["student"]["macro_f1"] == pytest.approx(metrics["scores"]["student"]["macro_f1"])
    _tables(tmp_path, {**metrics, "data": {**metrics["data"], "basic": first}, "scores": scores})
    kinds = {r["class"]: r["kind"] for r in csv.DictReader((tmp_path / "tables" / "class_scores.csv").open())
             if r["model"] == "student"}
    assert kinds == {c: "basic" if c in first else "compound" for c in learnt}


def test_every_figure_of_the_report_loads_in_headless_chromium(tiny_run):
    from browser import page_images, require_chromium

    require_chromium()
    out, _, _ = tiny_run
    page = page_images(out / "report.html")
    srcs = [i["src"] for i in page["images"]]
    # 4 run figures, 2 confusion matrices, 3 Grad-CAM figures (overlays, regions, similarity) per model
    assert len(srcs) == 12 and len(set(srcs)) == 12
    assert {"figures/confusion_student.png", "explain/student/overlays.png", "explain/teacher/similarity.png"} <= set(srcs)
    html = (out / "report.html").read_text()
    assert set(re.findall(r'<img src="([^"]+)"', html)) == set(srcs)
    broken = [i["src"] for i in page["images"] if not (i["complete"] and i["naturalWidth"] > 0)]
    assert broken == []
    assert all(i["naturalWidth"] > 300 for i in page["images"])
    assert page["overflow"] == []  # nothing is wider than the page
    column = 1100  # the report's max-width: a figure drawn wider would be shrunk, its labels with it
    assert [i["src"] for i in page["images"] if i["naturalWidth"] > column] == []
    assert page["title"] == "cfer run report"
    assert page["console_errors"] == []


def test_the_page_shows_display_names_and_step_sizes(tiny_run):
    out, _, metrics = tiny_run
    html = (out / "report.html").read_text()
    tables = " ".join(re.findall(r"<table>.*?</table>", html, re.S))
    compound = [c for c in metrics["data"]["compound"] if "_" in c]
    assert compound and all(c not in tables for c in compound)  # no underscore names on the page
    assert compound[0].replace("_", " ") in tables
    assert "6 basic, then 4, 3, 3" in html  # the order table's classes per step
    memory = metrics["continual"]["orders"][0]["memory_size"]
    assert f"{memory} (4 per basic class, 8 per compound class)" in html
    assert "± std over 2 class orders" in html


def test_a_folder_with_a_run_is_not_overwritten_and_resume_checks_the_config(tiny_run):
    out, config, metrics = tiny_run
    with pytest.raises(RunExistsError, match="already holds a run; resume it with `cfer run --resume"):
        run_pipeline(config, out_dir=out, progress=False)
    with pytest.raises(ValueError, match="differs from the one"):
        run_pipeline(with_overrides(config, {"seed": 9}), out_dir=out, resume=True, progress=False)
    # Resuming a finished run redoes nothing and reports the same numbers.
    stamp = (out / "confusion.json").stat().st_mtime_ns
    again = run_pipeline(config, out_dir=out, resume=True, progress=False)
    assert again["continual"] == metrics["continual"] and again["fewshot"] == metrics["fewshot"]
    assert again["confusion"] == metrics["confusion"] and (out / "confusion.json").stat().st_mtime_ns == stamp
    assert again["scores"] == metrics["scores"]  # from confusion.json: no forward pass, the same numbers


def test_data_problems_are_reported_before_training(tmp_path):
    cfg = config_from_dict({**TINY, "fewshot": {"holdout": 5, "shots": [5], "queries": 20}})
    with pytest.raises(ValueError, match="need 25 test faces per class"):
        run_pipeline(cfg, out_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "teacher.pt").exists()
    cfg = config_from_dict({**TINY, "classes": {"compound": ["awed", "hatred", "appalled"]},
                            "fewshot": {"holdout": 5}})
    with pytest.raises(ValueError, match=r"leaves no compound class for the stream.*also pass --ways 3 or fewer"):
        run_pipeline(cfg, out_dir=tmp_path / "r2", progress=False)


def test_the_report_says_how_many_grad_cam_maps_are_empty():
    from cfer.app.report import _empty_maps_note

    note = _empty_maps_note({"explain": {"teacher": {"empty_maps": 0.25}, "student": {"empty_maps": 0.0}}})
    assert "All-zero maps" in note and "teacher 25.0%" in note and "student" not in note
    assert _empty_maps_note({"explain": {"teacher": {"empty_maps": 0.0}}}) == ""


def test_a_resumed_run_keeps_the_method_it_was_started_with(tiny_run, tmp_path, caplog):
    """``method.json`` pins the preset's resolved options: a run started before the preset
    changed (here: without mirror images) finishes its remaining orders without them."""
    import shutil

    from cfer.app.stages import run_method, strategy_options
    from cfer.models.io import load_checkpoint

    out, config, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    pinned = json.loads((run / "method.json").read_text())
    assert pinned == asdict(strategy_options(config)) and pinned["mirror_training"] is True
    pinned["mirror_training"] = False  # as an older cfer's preset would have written it
    del pinned["cache_teacher"]  # an option added to cfer since: today's value
    del pinned["psmr_first_step_weight"]  # added since, with the value that does what cfer did before it
    del pinned["shift_training"]  # the same (no shifts)
    (run / "method.json").write_text(json.dumps(pinned))
    for rel in ("checkpoints/order1.pt", "results/order1.json", "metrics.json"):  # order 1 is still to train
        (run / rel).unlink()
    with caplog.at_level("WARNING", logger="cfer.app.stages"):
        metrics = run_pipeline(config, out_dir=run, resume=True, progress=False)
    assert "goes on with the method it was started with: " in caplog.text
    assert "mirror_training=False (today's preset: True)" in caplog.text
    assert metrics["continual"]["strategy"]["options"]["mirror_training"] is False
    assert "psmr_first_step_weight=1.0 (today's preset: 0.5)" in caplog.text
    assert "shift_training=" not in caplog.text  # 0, as today's preset
    assert metrics["continual"]["strategy"]["options"]["cache_teacher"] is True
    saved = load_checkpoint(run / "checkpoints/order1.pt")["settings"]["cfer"]
    assert saved["mirror_training"] is False and saved["psmr_first_step_weight"] == 1.0
    assert saved["shift_training"] == 0
    (run / "method.json").write_text(json.dumps({**pinned, "warp_drive": 1}))
    with pytest.raises(ValueError, match=r"names options this version of cfer does not have \(warp_drive\)"):
        run_method(config, run)
