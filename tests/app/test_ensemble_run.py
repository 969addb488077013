"""`cfer run --arch ensemble:...`: the arch is checked at the start, the teacher stage trains
a late-fusion ensemble, and the report gets a row per member."""

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
