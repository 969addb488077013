"""An ensemble teacher: trained with the ensemble loss, grown and distilled in the continual run."""

import warnings

import pytest
import torch

from cfer import taxonomy
from cfer.continual.growing import GrowingEnsemble
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.data.synthetic import make_synthetic_splits
from cfer.models.ensemble_loss import EnsembleCriterion

ARCH = "ensemble:cfer_tiny+cfer_tiny@24,lam=0.5"
COMPOUND = taxonomy.COMPOUND[:2]


@pytest.fixture(scope="module")
def splits():
    return make_synthetic_splits(classes=[*taxonomy.BASIC, *COMPOUND], subjects=(3, 1, 1), per_class=2,
                                 image_size=32, seed=0)


@pytest.fixture(scope="module")
def teacher(splits):
    calls = []
    call = EnsembleCriterion.__call__

    def spy(self, output, target):
        loss = call(self, output, target)
        calls.append((self.lam, dict(self.last)))
        return loss

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(EnsembleCriterion, "__call__", spy)
        result = train_teacher(train=splits["train"], val=splits["val"],
                               config=TeacherConfig(arch=ARCH, max_epochs=1, batch_size=8),
                               classes=tuple(taxonomy.BASIC))
    return result, calls


def test_train_teacher_trains_an_ensemble_with_the_ensemble_loss(teacher, splits):
    result, calls = teacher
    assert isinstance(result.model, GrowingEnsemble) and result.model.num_classes == 6
    n_basic = int(sum(splits["train"].classes[i] in taxonomy.BASIC for i in splits["train"].labels))
    assert len(result.history) == 1 and len(calls) == -(-n_basic // 8)  # one call a training batch
    lam, last = calls[-1]
    assert lam == 0.5 and last["kl"] > 0
    assert last["total"] == pytest.approx(last["members"] + last["fused"] + 0.5 * last["kl"], rel=1e-5)
    assert last["members"] > last["fused"] * 1.5  # two members' cross-entropies, not the fused one alone


def test_the_ensemble_teacher_grows_into_a_student_and_resumes(teacher, splits, tmp_path):
    from cfer.continual.resume import run_order
    from cfer.continual.stream import make_stream

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    result, _ = teacher
    stream = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], basic=result.classes,
                         compound=COMPOUND, per_step=2, seed=0)
    results, student = run_order(stream=stream, teacher=result.model, memory_size=12, epochs=1,
                                 checkpoint=tmp_path / "order0.pt")
    assert isinstance(student, GrowingEnsemble) and student.num_classes == 8
    assert all(m.head.classifier.out_features == 8 for m in student.members)  # every member head grew
    assert result.model.num_classes == 6  # the teacher is untouched
    again, _ = run_order(stream=stream, teacher=result.model, memory_size=12, epochs=1,
                         checkpoint=tmp_path / "order0.pt")
    assert again.matrix == results.matrix


def test_distillation_from_a_probability_fused_teacher_centres_its_log_probabilities(teacher):
    from types import SimpleNamespace

    from cfer.continual.plugins.distillation import BasicDistillationPlugin, logit_distillation

    result, _ = teacher
    plugin = BasicDistillationPlugin(teacher=result.model, feature_weight=0.0)
    x, student = torch.rand(4, 3, 32, 32), torch.randn(4, 8)
    plugin.before_backward(SimpleNamespace(mb_x=x, mb_output=student, loss=torch.zeros(())))
    with torch.no_grad():
        t = plugin.teacher(x)
    assert torch.allclose(t.exp().sum(1), torch.ones(4), atol=1e-5)
    centred = logit_distillation(student, t - t.mean(1, keepdim=True), temperature=3.0)
    assert plugin.last["kd"] == pytest.approx(float(centred), rel=1e-5)
    soft = lambda t: torch.softmax(torch.nn.functional.pad(t, (0, 2)) / 3.0, 1)  # noqa: E731 - the padded target
    raw, fixed = soft(t), soft(t - t.mean(1, keepdim=True))
    assert bool((raw[:, 6:].min(1).values > raw[:, :6].max(1).values).all())  # padded log-probs: new classes win
    assert bool((fixed[:, 6:].max(1).values < fixed[:, :6].max(1).values).all())  # centred: they sit mid-range


def test_the_ensemble_distils_into_a_single_student(teacher, splits):
    from cfer.continual.factory import make_strategy
    from cfer.continual.growing import build_model
    from cfer.continual.plugins.distillation import BasicDistillationPlugin
    from cfer.continual.stream import make_stream

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    result, _ = teacher
    stream = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], basic=result.classes,
                         compound=COMPOUND, per_step=2, seed=0)
    student = build_model(arch="cfer_tiny", num_classes=6)
    strategy = make_strategy("cfer", model=student, optimizer=torch.optim.Adam(student.parameters()),
                             teacher=result.model, memory_size=12, total_classes=8, train_mb_size=16)
    for exp in stream.train_stream:
        strategy.train(exp)
    plugin = next(p for p in strategy.plugins if isinstance(p, BasicDistillationPlugin))
    # logits from the fused output, features from the members' concatenated features (16 + 16)
    assert plugin.projection.in_features == student.num_features == 16
    assert plugin.projection.out_features == result.model.num_features == 32
    assert plugin.last["kd"] > 0 and plugin.last["feat"] > 0 and student.num_classes == 8


def test_a_member_copy_predicts_as_the_member_and_starts_a_student_without_basic_epochs(teacher, splits, tmp_path):
    from cfer.continual.growing import build_model, member_classifier
    from cfer.continual.resume import run_order
    from cfer.continual.stream import make_stream

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    result, _ = teacher
    ens = result.model.eval()
    student = member_classifier(ens, member="cfer_tiny").eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(student(x), ens.members[0](x), atol=1e-6)
        student.head.classifier.weight.add_(1.0)  # a copy: the teacher's member is untouched
        assert not torch.allclose(student(x), ens.members[0](x))
    stream = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], basic=result.classes,
                         compound=COMPOUND, per_step=2, seed=0)
    fresh, before = member_classifier(ens, member=0), {k: v.clone() for k, v in ens.state_dict().items()}
    with pytest.raises(ValueError, match="give basic_epochs >= 1"):  # a fresh student must learn the basic classes
        run_order(stream=stream, teacher=ens, memory_size=12, epochs=1, checkpoint=tmp_path / "f.pt",
                  student=build_model(arch="cfer_tiny", num_classes=6), basic_epochs=0)
    results, out = run_order(stream=stream, teacher=ens, memory_size=12, epochs=1, checkpoint=tmp_path / "m.pt",
                             student=fresh, basic_epochs=0)
    assert out is fresh and out.num_classes == 8 and len(results.matrix) == 2
    assert all(torch.equal(before[k], v) for k, v in ens.state_dict().items())  # the teacher is not trained
    assert not torch.equal(out.head.classifier.weight[:6], before["members.0.head.classifier.weight"])


def test_member_classifier_refuses_what_cannot_stand_alone(teacher):
    from cfer.continual.growing import build_model, member_classifier

    ens = teacher[0].model
    with pytest.raises(ValueError, match="no member 'resemotenet_slim'; its members are"):
        member_classifier(ens, member="resemotenet_slim")
    with pytest.raises(ValueError, match="resizes its input"):
        member_classifier(ens, member="cfer_tiny@24")
    with pytest.raises(ValueError, match="out of range"):
        member_classifier(ens, member=2)
    with pytest.raises(TypeError, match="takes an ensemble"):
        member_classifier(build_model(arch="cfer_tiny", num_classes=6), member=0)


def test_best_member_is_the_member_most_accurate_on_the_faces_given(splits):
    from cfer.continual.evaluation import evaluate_classes
    from cfer.continual.growing import best_member, build_model

    ens = GrowingEnsemble(members=["cfer_tiny", "cfer_tiny"], initial_classes=6)
    classes = tuple(taxonomy.BASIC)
    val = splits["val"]
    labels = torch.as_tensor([classes.index(c) if c in classes else 0 for c in val.class_names])

    def rig(member: torch.nn.Module, *, right: bool) -> None:
        """Make a member answer every face with its label (right) or with another class (wrong)."""
        table = dict(zip(map(bytes, val.images.reshape(len(val), -1)), labels.tolist()))

        def forward(x: torch.Tensor) -> torch.Tensor:
            raw = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).reshape(len(x), -1).numpy()
            y = torch.as_tensor([table[bytes(r)] for r in raw])
            return torch.nn.functional.one_hot(y if right else (y + 1) % 6, 6).float()

        member.forward = forward

    for right_one in (0, 1):
        for i, m in enumerate(ens.members):
            rig(m, right=i == right_one)
        assert [evaluate_classes(m, val, classes=classes)[0] for m in ens.members][right_one] == 1.0
        assert best_member(ens, data=val, classes=classes) == right_one
    with pytest.raises(TypeError, match="takes an ensemble"):
        best_member(build_model(arch="cfer_tiny", num_classes=6), data=val, classes=classes)
