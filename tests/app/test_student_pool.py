"""`cfer run --student-arch member:NAME --distil-pool ...`: a copy of an ensemble teacher's member
as the student, distilled from the fused ensemble on unlabelled faces before the stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from cfer.app import cli
from cfer.app.config_io import config_from_dict
from cfer.app.prepare import check_inputs

ARCH = "ensemble:cfer_tiny+manet_tiny"
DATA = {"image_size": 32, "synthetic_subjects": [3, 1, 2], "synthetic_per_class": 2}


def test_the_flags_set_the_student_section(capsys):
    assert cli.main(["run", "--arch", ARCH, "--student-arch", "member:1", "--distil-pool", "synthetic",
                     "--distil-pool-epochs", "3", "--distil-pool-subjects", "7", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["student_arch"] == "member:1"
    assert printed["student"] == {"pool": "synthetic", "pool_subjects": 7, "pool_epochs": 3, "pool_lr": 1e-4,
                                  "pool_temperature": 1.0}


@pytest.mark.parametrize(("config", "message"), [
    ({"student": {"pool": "synthetic"}}, r"the student is the teacher's copy .*--student-arch member:0"),
    ({"model": {"arch": ARCH, "student_arch": "cfer_tiny"}, "student": {"pool": "synthetic"}},
     r"the student is a new 'cfer_tiny'"),
    ({"model": {"student_arch": "member:0"}}, r"model.arch 'resemotenet_slim' is not an ensemble"),
    ({"model": {"arch": ARCH, "student_arch": "member: "}}, r"names no member: write member:NAME"),
    ({"model": {"arch": ARCH, "student_arch": "member:0"}, "student": {"pool": "synthetic"},
      "data": {"path": "clips.csv", "format": "clips"}}, r"does not apply to clips"),
    ({"student": {"pool_epochs": 0}}, r"student.pool_epochs must be a positive whole number, got 0"),
    ({"student": {"pool_lr": -1.0}}, r"student.pool_lr must be > 0"),
    ({"student": {"pool": ""}}, r"student.pool must be 'synthetic', a folder of face images or null"),
])
def test_a_wrong_student_setting_is_refused_when_the_config_is_built(config, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(config)


def test_the_member_and_the_pool_folder_are_checked_before_any_work(tmp_path):
    check_inputs(config_from_dict({"model": {"arch": ARCH, "student_arch": "member:manet_tiny"}}))
    check_inputs(config_from_dict({"model": {"arch": ARCH, "student_arch": "member:1"},
                                   "student": {"pool": str(tmp_path)}}))
    with pytest.raises(ValueError, match=r"member:resnet18 is not a member .*0: cfer_tiny, 1: manet_tiny"):
        check_inputs(config_from_dict({"model": {"arch": ARCH, "student_arch": "member:resnet18"}}))
    with pytest.raises(ValueError, match=r"member:2 is not a member"):
        check_inputs(config_from_dict({"model": {"arch": ARCH, "student_arch": "member:2"}}))
    with pytest.raises(ValueError, match=r"resizes its input \(@24\).*without @size"):
        check_inputs(config_from_dict({"model": {"arch": "ensemble:cfer_tiny+cfer_tiny@24", "student_arch": "member:1"}}))
    with pytest.raises(ValueError, match=r"project their features \(proj_dim\)"):
        check_inputs(config_from_dict({"model": {"arch": ARCH + ",proj_dim=8", "student_arch": "member:0"}}))
    with pytest.raises(ValueError, match=r"student.pool .*missing.* is not a folder.*drop --distil-pool"):
        check_inputs(config_from_dict({"model": {"arch": ARCH, "student_arch": "member:0"},
                                       "student": {"pool": str(tmp_path / "missing")}}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained two-member ensemble teacher and the run's data."""
    from cfer.app.stages import STAGES, RunState

    config = config_from_dict({"model": {"arch": ARCH, "student_arch": "member:manet_tiny"},
                               "student": {"pool": "synthetic", "pool_subjects": 3, "pool_epochs": 4,
                                           "pool_lr": 1e-3},
                               "teacher": {"epochs": 2}, "data": DATA, "fewshot": {"shots": [1], "queries": 1}})
    state = RunState(config=config, folder=tmp_path_factory.mktemp("pool"), progress=False)
    stages = {s.name: s for s in STAGES}
    state.outputs["data"] = stages["data"](state)
    teacher, _ = stages["teacher"](state)
    return config, state.data, teacher


def test_the_synthetic_pool_is_the_basic_training_faces_and_other_people(trained):
    from cfer.app.student import pool_faces
    from cfer.continual.evaluation import inputs_of

    config, data, _ = trained
    faces = pool_faces(config, data)
    basic = np.isin(np.asarray(data.train.classes)[data.train.labels], data.basic)
    n_classes = 21 + 1  # one face per expression class and neutral, per person
    assert faces.shape == (basic.sum() + 3 * n_classes, 3, 32, 32)
    assert torch.equal(faces[:basic.sum()], inputs_of(data.train, np.flatnonzero(basic)))
    rendered = faces[basic.sum():]
    everyone = torch.cat([inputs_of(d) for d in (data.train, data.val, data.test)])
    # nobody of the run: no rendered face is one of the run's faces
    assert torch.cdist(rendered.flatten(1), everyone.flatten(1)).min() > 1.0


def test_the_member_copy_is_distilled_towards_the_fused_teacher_and_not_on_resume(trained):
    from cfer.app.student import pool_faces, student_arch, student_for_order
    from cfer.continual.growing import member_classifier

    config, data, teacher = trained
    faces = pool_faces(config, data)
    copy = member_classifier(teacher, member="manet_tiny").eval()

    def kl(model: torch.nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            t, s = teacher.eval()(faces), model(faces)
        return float(torch.nn.functional.kl_div(s.log_softmax(1), t.log_softmax(1), log_target=True,
                                                reduction="batchmean"))

    got = student_for_order(config, data, teacher=teacher, seed=0, pool=lambda: faces)
    assert got["basic_epochs"] == 0 and kl(got["student"]) < 0.9 * kl(copy)
    resumed = student_for_order(config, data, teacher=teacher, seed=0, pool=None)  # the checkpoint has the weights
    assert all(torch.equal(a, b) for a, b in zip(resumed["student"].state_dict().values(), copy.state_dict().values()))
    assert student_arch(config, teacher=teacher) == "manet_tiny"
    by_index = config_from_dict({"model": {"arch": ARCH, "student_arch": "member:0"}})
    assert student_arch(by_index, teacher=teacher) == "cfer_tiny"


def test_a_repeated_arch_is_named_as_the_report_names_its_members():
    from cfer.app.student import student_arch, student_for_order, student_member
    from cfer.continual.growing import GrowingEnsemble

    twins = "ensemble:cfer_tiny+cfer_tiny"
    check_inputs(config_from_dict({"model": {"arch": twins, "student_arch": "member:cfer_tiny#1"}}))
    with pytest.raises(ValueError, match=r"member:cfer_tiny#2 is not a member .*0: cfer_tiny#0, 1: cfer_tiny#1"):
        check_inputs(config_from_dict({"model": {"arch": twins, "student_arch": "member:cfer_tiny#2"}}))
    teacher = GrowingEnsemble(members=["cfer_tiny", "cfer_tiny"], initial_classes=6)
    config = config_from_dict({"model": {"arch": twins, "student_arch": "member:cfer_tiny#1"}})
    student = student_for_order(config, None, teacher=teacher, seed=0)["student"]
    second = teacher.members[1].backbone.state_dict()
    assert all(torch.equal(v, second[k]) for k, v in student.backbone.state_dict().items())
    assert student_arch(config, teacher=teacher) == "cfer_tiny"
    assert student_member(config, teacher=teacher, data=None) == "cfer_tiny#1"  # as the report names it


def test_a_folder_pool_is_read_with_the_runs_face_cropper(tmp_path):
    from types import SimpleNamespace

    from PIL import Image

    from cfer.app.student import pool_faces
    from cfer.data.align import face_cropper
    from cfer.data.readers.images import read_image
    from cfer.data.synthetic import render_faces
    from cfer.data.synthetic.framed import render_framed_faces

    photos = render_framed_faces(classes=["happy", "sad"], n_subjects=2, per_class=1, seed=0)
    for i, frame in enumerate(photos.images):
        Image.fromarray(frame).save(tmp_path / f"frame{i}.png")
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(tmp_path / "wall.png")  # no face in it
    data = SimpleNamespace(train=render_faces(classes=["happy", "sad"], n_subjects=1, per_class=1, image_size=32),
                           basic=("happy", "sad"))  # the two fields pool_faces reads

    def config(**data_options: object):
        return config_from_dict({"model": {"arch": ARCH, "student_arch": "member:0"}, "student": {"pool": str(tmp_path)},
                                 "data": {"path": str(tmp_path), "format": "imagefolder", "image_size": 32,
                                          "crop_faces": True, **data_options}})

    with pytest.raises(ValueError, match=r"cannot read .*wall.png.*skip_invalid=True"):
        pool_faces(config(), data)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable or faceless files of 5"):
        faces = pool_faces(config(skip_invalid=True), data)
    assert faces.shape == (2 + 4, 3, 32, 32)
    # each frame went through the run's cropper (not resized whole), as read_image with that cropper reads it
    cropper = face_cropper(crop=True, align=False)
    for i in range(4):
        cropped = read_image(tmp_path / f"frame{i}.png", image_size=32, cropper=cropper)
        assert torch.equal(faces[2 + i], torch.from_numpy(cropped).permute(2, 0, 1).float() / 255)
        assert not np.array_equal(cropped, read_image(tmp_path / f"frame{i}.png", image_size=32))


def test_the_whole_job_with_a_distilled_member_copy_as_the_student(tmp_path):
    import warnings

    from cfer.app.pipeline import run_pipeline
    from cfer.continual.growing import GrowingEnsemble, load_model
    from cfer.models.io import read_model_file

    warnings.filterwarnings("ignore")
    config = config_from_dict({
        "model": {"arch": ARCH, "student_arch": "member:manet_tiny"},
        "student": {"pool": "synthetic", "pool_subjects": 2, "pool_epochs": 1},
        "data": DATA, "teacher": {"epochs": 1}, "continual": {"epochs": 1, "per_step": 8, "orders": 1},
        "fewshot": {"episodes": 10, "shots": [1], "queries": 1}, "explain": {"per_class": 1}})
    metrics = run_pipeline(config, out_dir=tmp_path, progress=False)
    assert read_model_file(tmp_path / "students" / "order0.pt")["arch"] == "manet_tiny"
    student, _ = load_model(tmp_path / "students" / "order0.pt")  # rebuilds as the member's own arch
    assert not isinstance(student, GrowingEnsemble)
    assert len(metrics["continual"]["orders"][0]["matrix"]) >= 2  # the basic step and the compound steps
    assert metrics["continual"]["orders"][0]["student_member"] == "manet_tiny"  # recorded with the order
    page = (tmp_path / "report.html").read_text()
    assert ("the student starts as a copy of its member manet_tiny, first distilled from the fused ensemble for 1 "
            "epochs on unlabelled faces (synthetic)") in page


def test_member_best_copies_the_member_most_accurate_on_the_validation_faces(trained):
    from cfer.app.report_words import student_start
    from cfer.app.student import student_arch, student_for_order, student_member
    from cfer.continual.growing import best_member

    config, data, teacher = trained
    best = config_from_dict({"model": {"arch": ARCH, "student_arch": "member:best"}})
    check_inputs(best)
    index = best_member(teacher, data=data.val, classes=tuple(data.basic))
    student = student_for_order(best, data, teacher=teacher, seed=0)["student"]
    chosen = teacher.members[index].backbone.state_dict()
    assert all(torch.equal(v, chosen[k]) for k, v in student.backbone.state_dict().items())
    assert student_arch(best, teacher=teacher, data=data) == ["cfer_tiny", "manet_tiny"][index]
    assert student_member(best, teacher=teacher, data=data) == ["cfer_tiny", "manet_tiny"][index]
    assert "a copy of its member most accurate on the validation faces and" in student_start(best)
    assert "validation faces (manet_tiny)" in student_start(best, member="manet_tiny")
    with pytest.raises(ValueError, match=r"member:best picks among all members .* resize their input"):
        check_inputs(config_from_dict({"model": {"arch": "ensemble:cfer_tiny+cfer_tiny@24", "student_arch": "member:best"}}))
