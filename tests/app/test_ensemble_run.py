"""`cfer run --arch ensemble:...`: the arch is checked at the start, the teacher stage trains
a late-fusion ensemble, and the report gets a row per member."""

import warnings

import pytest

from cfer.app.config_io import config_from_dict
from cfer.app.prepare import check_inputs
from cfer.app.report import summary_table
from cfer.app.stages import STAGES, RunState
from cfer.continual.growing import GrowingEnsemble, load_model

ARCH = "ensemble:cfer_tiny+cfer_tiny@24"


def test_a_bad_ensemble_arch_is_refused_at_the_start_with_close_names():
    check_inputs(config_from_dict({"model": {"arch": ARCH}}))
    with pytest.raises(ValueError, match=r"model.arch: unknown ensemble member 'cfer_tinny'.*'cfer_tiny'"):
        check_inputs(config_from_dict({"model": {"arch": "ensemble:cfer_tinny+cfer_tiny"}}))


def test_the_teacher_stage_trains_an_ensemble_and_reports_each_member(tmp_path):
    config = config_from_dict({"model": {"arch": ARCH}, "teacher": {"epochs": 1}, "fewshot": {"shots": [1], "queries": 1},
                               "data": {"image_size": 32, "synthetic_subjects": [3, 1, 1], "synthetic_per_class": 2}})
    state = RunState(config=config, folder=tmp_path, progress=False)
    stages = {s.name: s for s in STAGES}
    state.outputs["data"] = stages["data"](state)
    model, info = stages["teacher"](state)
    assert isinstance(model, GrowingEnsemble) and model.arch == ARCH
    assert set(info["members"]) == {"cfer_tiny", "cfer_tiny@24"} and info["fusion_weights"] == [0.5, 0.5]
    loaded, _ = load_model(tmp_path / "teacher.pt")  # what --resume reads back
    assert isinstance(loaded, GrowingEnsemble) and loaded.cfer_meta["members"] == info["members"]
    metrics = {"teacher": {k: info[k] for k in ("test_accuracy", "members")}, "continual": {"summary": {}},
               "fewshot": [], "explain": {}}
    text = summary_table(metrics)
    assert "teacher member cfer_tiny (its own head), basic test accuracy" in text
    assert "teacher member cfer_tiny@24 (its own head)" in text


def test_the_teacher_stage_trains_members_one_by_one_when_asked(tmp_path):
    from cfer.app.config_checks import MEMBER_TRAINING
    from cfer.continual.teacher import MEMBER_TRAINING as TEACHER_MEMBER_TRAINING

    assert MEMBER_TRAINING == TEACHER_MEMBER_TRAINING  # the config offers what the teacher takes
    config = config_from_dict({"model": {"arch": ARCH + ",learn_weights=true"},
                               "teacher": {"epochs": 1, "member_training": "one_by_one"},
                               "fewshot": {"shots": [1], "queries": 1},
                               "data": {"image_size": 32, "synthetic_subjects": [3, 1, 1], "synthetic_per_class": 2}})
    state = RunState(config=config, folder=tmp_path, progress=False)
    stages = {s.name: s for s in STAGES}
    state.outputs["data"] = stages["data"](state)
    with warnings.catch_warnings():  # the learnt weights are read without torch's requires_grad warning
        warnings.filterwarnings("error", message="Converting a tensor with requires_grad")
        model, info = stages["teacher"](state)
    assert isinstance(model, GrowingEnsemble)
    assert info["fusion_weights"] != [0.5, 0.5] and sum(info["fusion_weights"]) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def ensemble_into_single_student(tmp_path_factory):
    """The whole job with an ensemble teacher distilled into one cfer_tiny student."""
    import warnings

    from cfer.app.pipeline import run_pipeline

    warnings.filterwarnings("ignore")
    out = tmp_path_factory.mktemp("ens")
    config = config_from_dict({
        "model": {"arch": ARCH, "student_arch": "cfer_tiny"},
        "data": {"image_size": 32, "synthetic_subjects": [3, 1, 2], "synthetic_per_class": 3},
        "teacher": {"epochs": 1}, "continual": {"epochs": 1, "per_step": 8, "orders": 1, "basic_epochs": 2},
        "fewshot": {"episodes": 10, "shots": [1], "queries": 1}, "explain": {"per_class": 1}})
    return out, run_pipeline(config, out_dir=out, progress=False)


def test_an_ensemble_teacher_distils_into_a_single_student(ensemble_into_single_student):
    out, metrics = ensemble_into_single_student
    student, _ = load_model(out / "students" / "order0.pt")
    assert not isinstance(student, GrowingEnsemble) and student.cfer_meta is not None
    from cfer.models.io import read_model_file

    assert read_model_file(out / "students" / "order0.pt")["arch"] == "cfer_tiny"
    teacher, _ = load_model(out / "teacher.pt")
    assert isinstance(teacher, GrowingEnsemble)
    # the student trained on the basic experience (2 epochs), so its basic accuracy is its own
    assert metrics["continual"]["orders"][0]["matrix"][0][0] > 0


def test_the_report_scores_and_explains_every_teacher_member(ensemble_into_single_student):
    out, metrics = ensemble_into_single_student
    keys = ["teacher-cfer_tiny", "teacher-cfer_tiny@24"]
    for key in keys:
        assert set(metrics["scores"][key]["per_class"]) == set(metrics["scores"]["teacher"]["per_class"])
        assert 0 <= metrics["scores"][key]["macro_f1"] <= 1
        assert metrics["confusion"][key]["outputs"] == metrics["confusion"]["teacher"]["outputs"]
        assert (out / "explain" / key / "overlays.png").is_file() and (out / "explain" / key / "regions.png").is_file()
        assert key in metrics["explain"]
    assert not any(k.startswith("student-") for k in metrics["scores"])  # the student is one network
    page = (out / "report.html").read_text()
    assert page.count("teacher member cfer_tiny@24 F1") == 1  # its column in the per-class table
    assert "Grad-CAM of the teacher member cfer_tiny (one test face per class)" in page
    assert "the student, a cfer_tiny of its own, first learns the basic classes for 2 epochs" in page
    assert "starts as its copy" not in page
    assert "teacher member cfer_tiny@24 (its own head) macro-F1, basic classes" in summary_table(metrics)


def test_a_student_of_its_own_needs_basic_epochs_and_the_teachers_outputs():
    from cfer.continual.growing import build_model
    from cfer.continual.resume import run_order
    from cfer.continual.stream import make_stream
    from cfer.data.synthetic import make_synthetic_splits

    sp = make_synthetic_splits(classes=["happy", "sad", "happily surprised"], subjects=(2, 1, 1), per_class=1,
                               image_size=32, seed=0)
    stream = make_stream(train=sp["train"], test=sp["test"], basic=("happy", "sad"), compound=("happily surprised",),
                         per_step=1, order=("happily surprised",))
    teacher = build_model(arch="cfer_tiny", num_classes=2)
    with pytest.raises(ValueError, match="basic_epochs >= 1"):
        run_order(stream=stream, teacher=teacher, memory_size=4, checkpoint="unused.pt",
                  student=build_model(arch="cfer_tiny", num_classes=2))
    with pytest.raises(ValueError, match=r"3 outputs but the teacher has 2 basic classes.*num_classes=2"):
        run_order(stream=stream, teacher=teacher, memory_size=4, checkpoint="unused.pt", basic_epochs=1,
                  student=build_model(arch="cfer_tiny", num_classes=3))
    with pytest.raises(ValueError, match="student is the teacher itself"):
        run_order(stream=stream, teacher=teacher, memory_size=4, checkpoint="unused.pt", basic_epochs=1,
                  student=teacher)
