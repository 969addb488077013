import numpy as np
import pytest
import torch

from cfer.continual.growing import load_model
from cfer.continual.teacher import TeacherConfig, evaluate, train_teacher
from cfer.data.synthetic import make_synthetic_splits
from cfer.models.io import save_model


@pytest.fixture(scope="module")
def splits():
    return make_synthetic_splits(classes="basic+neutral", subjects=(6, 2, 2), per_class=3, image_size=32, seed=1)


def test_teacher_learns_with_early_stopping_on_val(splits):
    res = train_teacher(train=splits["train"], val=splits["val"],
                        config=TeacherConfig(arch="resemotenet_slim", max_epochs=12, patience=2, batch_size=16))
    assert res.classes[0] == "neutral" and len(res.classes) == 7
    assert res.best_epoch == int(np.argmax([h["val_accuracy"] for h in res.history]))
    assert len(res.history) <= 12
    assert res.best_val_accuracy == max(h["val_accuracy"] for h in res.history)
    assert res.best_val_accuracy > 2 / 7
    assert not res.model.training


class Evil:
    """An object a model file must never carry."""


def test_save_and_load_round_trip_and_refuse_pickles(splits, tmp_path):
    res = train_teacher(train=splits["train"], val=splits["val"],
                        config=TeacherConfig(arch="cfer_tiny", max_epochs=1))
    path = save_model(res.model, tmp_path / "teacher.pt", arch="cfer_tiny", classes=res.classes)
    assert not (tmp_path / "teacher.pt.tmp").exists()
    model, classes = load_model(path)
    x = splits["test"].tensors()[0][:4]
    assert classes == res.classes
    assert torch.equal(model(x), res.model(x))
    assert evaluate(model, splits["test"], label_map=np.array([res.classes.index(c) for c in splits["test"].classes]
                                                                 )) >= 0

    torch.save({"format": "cfer-model/1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only=True, so it is refused: it carries pickled Python objects"):
        load_model(tmp_path / "evil.pt")
    torch.save({"hello": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a cfer model file"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "nothing.pt")


def test_teacher_refuses_leaky_splits(splits):
    with pytest.raises(ValueError, match="subjects are in both train and val"):
        train_teacher(train=splits["train"], val=splits["train"])
    with pytest.raises(ValueError, match="max_epochs must be >= 1"):
        TeacherConfig(max_epochs=0)


def test_a_fixed_grid_model_reloads_at_the_size_it_was_saved_at(tmp_path):
    from cfer.continual.growing import build_model, load_model
    from cfer.models.io import save_model

    vit = build_model(arch="vit_tiny_patch16_224", num_classes=3, img_size=32)
    path = save_model(vit, tmp_path / "vit.pt", arch="vit_tiny_patch16_224", classes=("happy", "sad", "angry"),
                      extra={"image_size": 32})
    model, classes = load_model(path)
    x = torch.rand(2, 3, 32, 32)
    vit.eval()
    assert torch.allclose(model(x), vit(x)) and classes == ("happy", "sad", "angry")


def test_the_same_config_gives_the_same_teacher_whatever_ran_before(splits):
    """resemotenet_slim has dropout, which draws from torch's global generator: the teacher's
    seed covers it, and the caller's generator is left where it was."""
    config = TeacherConfig(arch="resemotenet_slim", max_epochs=2, patience=5, batch_size=16, seed=3)
    torch.manual_seed(0)
    first = train_teacher(train=splits["train"], val=splits["val"], config=config)
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(1))  # the caller's generator as if no teacher had trained
    torch.rand(1000)  # other work moves the global generator before the second call
    second = train_teacher(train=splits["train"], val=splits["val"], config=config)
    first_state, second_state = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(first_state[k], second_state[k]) for k in first_state)
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in second.history]


def test_the_photo_recipe_warms_up_then_decays(splits):
    from cfer.continual.teacher import PHOTO_RECIPE, photo_recipe

    config = photo_recipe(arch="cfer_tiny", max_epochs=8, warmup_epochs=2, patience=8, batch_size=32)
    assert (config.augment, config.optimizer, config.schedule, config.label_smoothing) == ("faces", "adamw",
                                                                                             "cosine", 0.1)
    res = train_teacher(train=splits["train"], val=splits["val"], config=config)
    lrs = [h["lr"] for h in res.history]
    assert len(lrs) == 8
    assert lrs[0] < lrs[1] <= PHOTO_RECIPE.lr  # still warming up after the first epoch
    assert lrs[1] > lrs[4] > lrs[-1] >= 0.01 * PHOTO_RECIPE.lr  # then the cosine decay


def test_adamw_with_label_smoothing_and_the_cosine_schedule_learns(splits):
    from cfer.continual.teacher import photo_recipe

    config = photo_recipe(arch="resemotenet_slim", augment="shift", max_epochs=8, warmup_epochs=2, patience=8,
                          batch_size=16)
    res = train_teacher(train=splits["train"], val=splits["val"], config=config)
    assert res.best_val_accuracy > 2 / 7


def test_warmup_alone_keeps_the_rate_flat_after_it(splits):
    res = train_teacher(train=splits["train"], val=splits["val"],
                        config=TeacherConfig(arch="cfer_tiny", max_epochs=3, patience=5, warmup_epochs=1))
    assert [h["lr"] for h in res.history] == [TeacherConfig.lr] * 3


def test_teacher_config_refuses_unknown_choices_and_keeps_the_old_booleans():
    assert TeacherConfig(augment=True).augment == "shift" and TeacherConfig(augment=False).augment == "none"
    for bad in (dict(augment="mixup"), dict(optimizer="sgd"), dict(schedule="step"), dict(label_smoothing=1.0),
                dict(warmup_epochs=-1)):
        with pytest.raises(ValueError):
            TeacherConfig(**bad)


def test_label_smoothing_reaches_the_loss():
    from cfer.continual.growing import build_model
    from cfer.models.ensemble_loss import EnsembleCriterion, criterion_for

    model = build_model(arch="cfer_tiny", num_classes=3, img_size=32)
    out, y = torch.tensor([[8.0, 0.0, 0.0]]), torch.tensor([0])
    assert criterion_for(model, label_smoothing=0.2)(out, y) > criterion_for(model)(out, y)
    ens = build_model(arch="ensemble:cfer_tiny+cfer_tiny", num_classes=3, img_size=32)
    ens(torch.rand(2, 3, 32, 32))
    crit = criterion_for(ens, label_smoothing=0.2)
    assert isinstance(crit, EnsembleCriterion) and crit.label_smoothing == 0.2


def test_bf16_mixed_precision_learns_and_returns_fp32_weights_on_the_cpu(splits):
    config = TeacherConfig(arch="resemotenet_slim", max_epochs=8, patience=8, batch_size=16, precision="bf16",
                           device="cpu")
    res = train_teacher(train=splits["train"], val=splits["val"], config=config)
    assert res.best_val_accuracy > 2 / 7
    assert {p.dtype for p in res.model.parameters()} == {torch.float32}
    assert next(res.model.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        train_teacher(train=splits["train"], val=splits["val"], config=TeacherConfig(arch="cfer_tiny", precision="fp16",
                                                                                     device="cpu"))
    with pytest.raises(ValueError, match="cuda:N"):
        TeacherConfig(device="gpu0")


@pytest.mark.slow
def test_torch_compile_trains_the_same_teacher(splits):
    """torch.compile (Inductor, a C++ compiler on the CPU) changes the speed, not what is learnt."""
    base = dict(arch="cfer_tiny", max_epochs=2, patience=5, batch_size=32, augment="none", device="cpu")
    eager = train_teacher(train=splits["train"], val=splits["val"], config=TeacherConfig(**base))
    compiled = train_teacher(train=splits["train"], val=splits["val"], config=TeacherConfig(**base, compile=True))
    for a, b in zip(eager.history, compiled.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
    assert [h["val_accuracy"] for h in compiled.history] == [h["val_accuracy"] for h in eager.history]


def _recorded_fit(mixup: float):
    """Fit a linear model on six one-hot 'faces'; return the training inputs and the labels the loss saw."""
    from torch import nn

    from cfer.continual.teacher_fit import fit

    seen, labels = [], []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 3)

        def forward(self, x):
            if self.training:
                seen.append(x.detach().flatten(1).clone())
            return self.lin(x.flatten(1))

    def criterion(out, y):
        labels.append(y.clone())
        return torch.nn.functional.cross_entropy(out, y)

    x, y = torch.eye(6).reshape(6, 1, 2, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    fit(Recorder(), xt=x, yt=y, xv=x, yv=y, criterion=criterion,
        config=TeacherConfig(max_epochs=3, patience=3, batch_size=3, augment="none", device="cpu", mixup=mixup))
    return seen, labels


def test_mixup_blends_each_face_with_its_successor_and_mixes_the_two_losses():
    plain, plain_labels = _recorded_fit(0.0)
    mixed, mixed_labels = _recorded_fit(0.4)
    assert len(mixed) == len(plain) == 6 and len(mixed_labels) == 2 * len(plain_labels)
    weights = []
    for batch, xb in zip(plain, mixed):  # the same shuffles as without mixup
        order = batch.argmax(1)  # the faces of the batch, in order
        lam = float(xb[0, order[0]])
        weights.append(lam)
        expected = lam * torch.eye(6)[order] + (1 - lam) * torch.eye(6)[order.roll(1)]
        torch.testing.assert_close(xb, expected)
    assert all(0 < w < 1 for w in weights) and len(set(weights)) == len(weights)  # a new weight per batch
    for k, y in enumerate(plain_labels):
        assert torch.equal(mixed_labels[2 * k], y) and torch.equal(mixed_labels[2 * k + 1], y.roll(1))


def test_mixup_is_checked_and_refused_for_clips():
    from cfer.continual.evaluation import LazyItems
    from cfer.continual.teacher_fit import fit
    from cfer.data import FaceDataset

    with pytest.raises(ValueError, match="mixup must be >= 0"):
        TeacherConfig(mixup=-0.2)
    ds = FaceDataset(images=np.zeros((4, 4, 4, 1), np.uint8), labels=[0, 1, 0, 1], classes=["sad", "happy"])
    lazy, y = LazyItems(ds, np.arange(4)), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="does not apply to clips"):
        fit(torch.nn.Flatten(), xt=lazy, yt=y, xv=lazy, yv=y, criterion=torch.nn.CrossEntropyLoss(),
            config=TeacherConfig(mixup=0.2, device="cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_evaluate_takes_a_model_on_the_gpu(splits):
    """The faces go to the model's device; the accuracy is the CPU's."""
    test = splits["test"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(test.tensors()[0][0].numel(), 7))
    label_map = np.arange(len(test.classes)) % 7
    want = evaluate(model, test, batch_size=5), evaluate(model, test, batch_size=5, label_map=label_map)
    model.to("cuda")
    assert (evaluate(model, test, batch_size=5), evaluate(model, test, batch_size=5, label_map=label_map)) == want
    assert next(model.parameters()).device.type == "cuda"
