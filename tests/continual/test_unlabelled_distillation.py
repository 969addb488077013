"""Distilling a teacher into a student on unlabelled faces (cfer.continual.unlabelled_distillation)."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cfer.continual.growing import GrowingEnsemble, member_classifier
from cfer.continual.unlabelled_distillation import distil_unlabelled


def _cnn(seed: int, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, classes))


def _kl(student, teacher, x):
    with torch.no_grad():
        return float(F.kl_div(F.log_softmax(student(x), 1), F.log_softmax(teacher(x), 1), log_target=True,
                              reduction="batchmean"))


def test_the_student_moves_towards_the_teacher_on_faces_it_never_saw():
    teacher, student = _cnn(0).eval(), _cnn(1).train()
    pool, unseen = torch.rand(96, 1, 8, 8), torch.rand(64, 1, 8, 8)
    student.eval()
    before = _kl(student, teacher, unseen)
    student.train()
    history = distil_unlabelled(student=student, teacher=teacher, images=pool, epochs=15, lr=1e-2, seed=0)
    assert len(history) == 15 and history[-1] < 0.5 * history[0]
    assert student.training  # its mode is given back
    student.eval()
    assert _kl(student, teacher, unseen) < 0.5 * before


def test_batchnorm_statistics_and_the_teacher_stay_as_they_were():
    teacher, student = _cnn(0).train(), _cnn(1)
    t_state = copy.deepcopy(teacher.state_dict())
    stats = [student[1].running_mean.clone(), student[1].running_var.clone(), student[1].num_batches_tracked.clone()]
    weight = student[0].weight.detach().clone()
    distil_unlabelled(student=student, teacher=teacher, images=torch.rand(32, 1, 8, 8), epochs=2, lr=1e-2)
    assert all(torch.equal(a, b) for a, b in zip(stats, [student[1].running_mean, student[1].running_var,
                                                          student[1].num_batches_tracked]))
    assert not torch.equal(weight, student[0].weight)  # the weights did learn
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in t_state.items())
    assert teacher.training  # its mode too


def test_a_copy_of_the_teacher_barely_moves_and_the_run_is_seeded():
    teacher = _cnn(0)
    same = copy.deepcopy(teacher)
    history = distil_unlabelled(student=same, teacher=teacher, images=torch.rand(16, 1, 8, 8), epochs=2)
    assert max(abs(v) for v in history) < 1e-6  # nothing to learn (but float rounding, which Adam rescales)
    assert all(torch.allclose(a, b, atol=1e-3) for a, b in zip(same.parameters(), teacher.parameters()))
    faces = torch.rand(40, 1, 8, 8)
    runs = []
    for _ in range(2):
        s = _cnn(1)
        runs.append((distil_unlabelled(student=s, teacher=teacher, images=faces, epochs=2, seed=3), s[0].weight))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


def test_an_ensemble_member_copy_learns_the_fused_output():
    """The intended use: a copy of one member of an ensemble teacher, distilled from the fused
    (log-probability) output, ends closer to the ensemble than it started."""
    ens = GrowingEnsemble(members=["cfer_tiny", "cfer_tiny"], initial_classes=3, in_chans=1).eval()
    student = member_classifier(ens, member=0)
    x = torch.rand(48, 1, 32, 32)
    student.eval()
    before = _kl(student, ens, x)
    distil_unlabelled(student=student, teacher=ens, images=x, epochs=8, lr=3e-3)
    assert _kl(student, ens, x) < before


def test_the_device_argument_computes_there_and_gives_the_models_back_where_they_were():
    """``device=`` (cfer run passes its --device) picks where the work runs; on the CPU it is
    the default's run bit for bit, and both models come back on their devices and modes."""
    faces, teacher = torch.rand(40, 1, 8, 8), _cnn(0).train()
    runs = []
    for device in (None, "cpu", torch.device("cpu")):
        s = _cnn(1)
        runs.append((distil_unlabelled(student=s, teacher=teacher, images=faces, epochs=2, seed=3, device=device), s))
    assert runs[0][0] == runs[1][0] == runs[2][0]
    assert all(torch.equal(a, b) for _, s in runs[1:] for a, b in zip(runs[0][1].parameters(), s.parameters()))
    assert all(p.device.type == "cpu" for _, s in runs for p in s.parameters()) and teacher.training
    with pytest.raises(ValueError, match="device must be one of"):
        distil_unlabelled(student=_cnn(1), teacher=teacher, images=faces, device="gpu")


@pytest.mark.parametrize("kwargs, message", [
    ({"images": torch.rand(0, 1, 8, 8)}, "non-empty"),
    ({"images": torch.rand(8, 8, 8)}, r"\(N, C, H, W\)"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"temperature": 0.0}, "must be > 0"),
    ({"shift": -1}, "shift must be >= 0"),
])
def test_bad_settings_are_refused_before_training(kwargs, message):
    args = {"student": _cnn(1), "teacher": _cnn(0), "images": torch.rand(8, 1, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=message):
        distil_unlabelled(**args)


def test_a_student_with_other_classes_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match="needs the teacher's classes"):
        distil_unlabelled(student=_cnn(1, classes=4), teacher=_cnn(0), images=torch.rand(8, 1, 8, 8))


def test_a_cpu_student_in_a_gpu_process_group_is_distilled_by_every_process_alone(monkeypatch):
    import cfer.continual.unlabelled_distillation as ud

    student = torch.nn.Linear(2, 2)
    assert not ud._shares(student)  # one process
    monkeypatch.setattr(ud, "world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda: "nccl")
    assert not ud._shares(student)  # NCCL reduces GPU tensors only: no DDP over a CPU student
    monkeypatch.setattr(torch.distributed, "get_backend", lambda: "gloo")
    assert ud._shares(student)
