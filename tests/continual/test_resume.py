"""The cfer strategy stopped after an experience and resumed matches an uninterrupted run."""

import pytest
import torch

from cfer import taxonomy
from cfer.continual import resume as resumable
from cfer.continual.factory import CferConfig
from cfer.continual.stream import make_stream
from cfer.models.io import load_checkpoint, save_checkpoint

COMPOUND = taxonomy.COMPOUND[:6]


@pytest.fixture(scope="module")
def setup(teacher_and_stream):
    return teacher_and_stream


EVERY_STATE = CferConfig(criterion="sigmoid", previous_feature_weight=1.0, nearest_mean_mirror=True,
                         nearest_mean_head_weight=1.0)
"""The preset plus every option that keeps a state between steps (a previous student, means)."""


@pytest.mark.parametrize("cfer", [CferConfig(), EVERY_STATE, CferConfig(head="cosine")],
                         ids=["preset", "every-option", "cosine-head"])
def test_resuming_from_a_checkpoint_gives_the_uninterrupted_result(setup, tmp_path, killed_after_step_1, cfer):
    _, teacher, stream = setup
    settings = dict(epochs=2, cfer=cfer)
    full, student = resumable.run_order(stream=stream, teacher=teacher.model, **settings, memory_size=40,
                                        checkpoint=tmp_path / "full.pt", seed=3)
    assert len(full.matrix) == stream.n_steps == 4
    assert student.num_classes == len(stream.class_names)

    ckpt = tmp_path / "cut.pt"
    killed_after_step_1(lambda c: resumable.run_order(stream=stream, teacher=teacher.model, **settings, memory_size=40,
                                                      checkpoint=c, seed=3), ckpt)
    state = load_checkpoint(ckpt)
    assert state["step"] == 1 and len(state["results"]["matrix"]) == 2
    # The buffer is stored as item indices per class, never as images.
    assert set(state["buffer"]["classes"]) == set(range(6 + 2))
    assert all(isinstance(i, int) for c in state["buffer"]["classes"].values() for i in c["indices"])

    torch.manual_seed(12345)  # whatever the process did in between must not matter
    resumed, again = resumable.run_order(stream=stream, teacher=teacher.model, **settings, memory_size=40,
                                         checkpoint=ckpt, seed=3)
    assert resumed.matrix == full.matrix
    # the same weights, not only the same accuracies: the previous step's student (its
    # distillation term) and the class means come back with the checkpoint
    for (name, a), b in zip(student.state_dict().items(), again.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    x = torch.stack([stream.test_stream[0].dataset[i][0] for i in range(4)])
    with torch.no_grad():
        assert torch.allclose(student.eval()(x), again.eval()(x), atol=1e-4)
    assert resumed.matrix[:2] == state["results"]["matrix"]


def test_a_checkpoint_of_another_stream_is_refused(setup, tmp_path):
    sp, teacher, stream = setup
    settings = dict(epochs=1)
    ckpt = tmp_path / "c.pt"
    resumable.run_order(stream=stream, teacher=teacher.model, **settings, memory_size=20, checkpoint=ckpt)
    other = make_stream(train=sp["train"], test=sp["test"], basic=teacher.classes, compound=COMPOUND, per_step=3,
                        seed=1)
    with pytest.raises(ValueError, match="belongs to another stream"):
        resumable.run_order(stream=other, teacher=teacher.model, **settings, memory_size=20, checkpoint=ckpt)


def test_a_checkpoint_trained_with_other_settings_is_refused_with_the_differences(setup, tmp_path, caplog):
    """A preset that changed between the kill and the resume (or a changed option) must not
    finish the order with another method; a checkpoint that predates the record resumes, with
    a warning."""
    _, teacher, stream = setup
    ckpt = tmp_path / "c.pt"
    first, _ = resumable.run_order(stream=stream, teacher=teacher.model, epochs=1, memory_size=20, checkpoint=ckpt,
                                   cfer=CferConfig(mirror_training=False))
    with pytest.raises(ValueError, match=r"\(checkpoint -> now\): cfer\.mirror_training: False -> True; "
                                         r"epochs: 1 -> 2\. Resume with the settings"):
        resumable.run_order(stream=stream, teacher=teacher.model, epochs=2, memory_size=20, checkpoint=ckpt)
    again, _ = resumable.run_order(stream=stream, teacher=teacher.model, epochs=1, memory_size=20, checkpoint=ckpt,
                                   cfer=CferConfig(mirror_training=False))
    assert again.matrix == first.matrix
    old = load_checkpoint(ckpt)
    del old["settings"], old["format"]
    save_checkpoint(ckpt, old)
    with caplog.at_level("WARNING", logger="cfer.continual.resume"):
        legacy, _ = resumable.run_order(stream=stream, teacher=teacher.model, epochs=2, memory_size=20,
                                        checkpoint=ckpt)
    assert legacy.matrix == first.matrix
    assert "does not record the settings it was trained with" in caplog.text


@pytest.mark.parametrize("key, then, now", [("psmr_first_step_weight", 1.0, r"1\.0 -> 0\.5"),
                                            ("shift_training", 0, None)])
def test_a_checkpoint_older_than_an_option_resumes_with_the_value_that_was_cfer_then(setup, tmp_path, key, then, now):
    """``psmr_first_step_weight`` and ``shift_training`` came after checkpoints recorded their
    settings: one that lacks them was trained as cfer was then (every class alike, 1; no
    shifts, 0), so it resumes with that value and refuses a preset that differs (the shifts'
    0 is today's preset again, so that checkpoint also resumes under it)."""
    _, teacher, stream = setup
    ckpt = tmp_path / "c.pt"
    alike = CferConfig(**{key: then})
    first, _ = resumable.run_order(stream=stream, teacher=teacher.model, epochs=1, memory_size=20, checkpoint=ckpt,
                                   cfer=alike)
    old = load_checkpoint(ckpt)
    del old["settings"]["cfer"][key]
    save_checkpoint(ckpt, old)
    again, _ = resumable.run_order(stream=stream, teacher=teacher.model, epochs=1, memory_size=20, checkpoint=ckpt,
                                   cfer=alike)
    assert again.matrix == first.matrix
    if now is None:
        preset, _ = resumable.run_order(stream=stream, teacher=teacher.model, epochs=1, memory_size=20, checkpoint=ckpt)
        assert preset.matrix == first.matrix
        return
    with pytest.raises(ValueError, match=rf"cfer\.{key}: {now}"):
        resumable.run_order(stream=stream, teacher=teacher.model, epochs=1, memory_size=20, checkpoint=ckpt)


def test_the_teacher_must_match_the_first_experience(setup, tmp_path):
    sp, teacher, _ = setup
    wide = make_stream(train=sp["train"], test=sp["test"], basic=[*teacher.classes[:5]], compound=COMPOUND,
                       per_step=3)
    with pytest.raises(ValueError, match="the teacher has 6 outputs but the stream's first experience has 5"):
        resumable.run_order(stream=wide, teacher=teacher.model, memory_size=10,
                            checkpoint=tmp_path / "x.pt")


GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@GPU
def test_a_run_killed_on_the_gpu_resumes_there(setup, tmp_path, killed_after_step_1):
    """The feature projection comes back from the checkpoint on the CPU: it must be on the GPU
    before the optimiser's state is loaded onto it, or Adam's first step mixes devices."""
    _, teacher, stream = setup
    ckpt = tmp_path / "cut.pt"
    killed_after_step_1(lambda c: resumable.run_order(stream=stream, teacher=teacher.model, epochs=1, memory_size=40,
                                                      checkpoint=c, seed=3, device="cuda"), ckpt)
    resumed, student = resumable.run_order(stream=stream, teacher=teacher.model, epochs=1, memory_size=40,
                                           checkpoint=ckpt, seed=3, device="cuda")
    assert len(resumed.matrix) == stream.n_steps


@GPU
def test_the_teacher_scores_the_memory_from_its_own_device(setup, tmp_path):
    """psmr_scorer='teacher' scores with the caller's teacher, which stays on the CPU while the
    student trains on the GPU."""
    _, teacher, stream = setup
    results, _ = resumable.run_order(stream=stream, teacher=teacher.model, epochs=1, memory_size=40, seed=3,
                                     checkpoint=tmp_path / "c.pt", cfer=CferConfig(psmr_scorer="teacher"),
                                     device="cuda")
    assert len(results.matrix) == stream.n_steps
