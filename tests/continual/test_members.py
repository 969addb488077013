"""An ensemble teacher trained one member at a time, and its fusion weights fitted on validation data."""

import dataclasses

import numpy as np
import pytest
import torch

from cfer import taxonomy
from cfer.continual.growing import build_model
from cfer.continual.members import fit_fusion_weights, fit_members, member_seeds
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.continual.teacher_fit import fit
from cfer.data.synthetic import make_synthetic_splits
from cfer.models.ensemble import LateFusionEnsemble
from cfer.models.ensemble_loss import EnsembleCriterion

ARCH = "ensemble:cfer_tiny+manet_tiny,learn_weights=true"
CLASSES = tuple(taxonomy.BASIC)


@pytest.fixture(scope="module")
def splits():
    return make_synthetic_splits(classes="basic", subjects=(3, 2, 1), per_class=2, image_size=32, seed=0)


def _tensors(ds):
    x = torch.from_numpy(ds.images).permute(0, 3, 1, 2).float().div_(255.0)
    names = np.asarray(ds.classes)[ds.labels]
    return x, torch.as_tensor([CLASSES.index(n) for n in names])


@pytest.fixture(scope="module")
def one_by_one(splits):
    calls = []
    with pytest.MonkeyPatch.context() as mp:  # the ensemble loss must not be used: each member trains alone
        mp.setattr(EnsembleCriterion, "__call__", lambda self, *a: calls.append(1))
        config = TeacherConfig(arch=ARCH, max_epochs=2, patience=2, batch_size=8, member_training="one_by_one",
                               device="cpu")
        result = train_teacher(train=splits["train"], val=splits["val"], config=config, classes=CLASSES)
    return config, result, calls


def test_each_member_is_the_teacher_its_arch_would_give_alone(one_by_one, splits):
    config, result, calls = one_by_one
    assert calls == []
    assert [(h["member"], h["epoch"]) for h in result.history] == [
        ("cfer_tiny", 0), ("cfer_tiny", 1), ("manet_tiny", 0), ("manet_tiny", 1)]
    for i, arch in enumerate(("cfer_tiny", "manet_tiny")):
        alone = train_teacher(train=splits["train"], val=splits["val"], classes=CLASSES,
                              config=dataclasses.replace(config, arch=arch, member_training="joint")).model
        untrained = build_model(arch=arch, num_classes=len(CLASSES), in_chans=3, img_size=32, seed=config.seed)
        member = result.model.members[i]
        assert any(not torch.equal(a, b) for a, b in zip(untrained.parameters(), alone.parameters()))  # it learned
        for part in ("backbone", "head"):
            theirs = getattr(alone, part).state_dict()
            for key, value in getattr(member, part).state_dict().items():
                torch.testing.assert_close(value, theirs[key], rtol=1e-5, atol=1e-6)


def test_a_repeated_arch_takes_the_next_seed_so_its_copies_differ(splits):
    ens = build_model(arch="ensemble:cfer_tiny+cfer_tiny@24+manet_tiny", num_classes=len(CLASSES), img_size=32)
    assert member_seeds(ens, seed=3) == [3, 4, 3]
    xt, yt = _tensors(splits["train"])
    xv, yv = _tensors(splits["val"])
    fit_members(ens, xt=xt, yt=yt, xv=xv, yv=yv, config=TeacherConfig(arch="ensemble:cfer_tiny+cfer_tiny@24+manet_tiny",
                                                                          max_epochs=1, device="cpu", seed=3))
    first, second = (dict(ens.members[i].backbone.named_parameters()) for i in range(2))
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_the_fusion_weights_are_fitted_on_validation_and_the_reported_accuracy_is_the_fused_one(one_by_one, splits):
    _, result, _ = one_by_one
    ens = result.model.eval()
    w = ens.fusion_weights.detach()
    assert float(w.sum()) == pytest.approx(1.0) and not torch.allclose(w, torch.full((2,), 0.5), atol=1e-3)
    xv, yv = _tensors(splits["val"])
    with torch.no_grad():
        fused = ens(xv)
    assert result.best_val_accuracy == pytest.approx(float((fused.argmax(1) == yv).float().mean()))


def test_fixed_fusion_weights_stay_uniform(splits):
    xt, yt = _tensors(splits["train"])
    xv, yv = _tensors(splits["val"])
    ens = build_model(arch="ensemble:cfer_tiny+cfer_tiny", num_classes=len(CLASSES), img_size=32)
    res = fit_members(ens, xt=xt, yt=yt, xv=xv, yv=yv,
                      config=TeacherConfig(arch="ensemble:cfer_tiny+cfer_tiny", max_epochs=1, device="cpu"))
    assert torch.allclose(ens.fusion_weights, torch.full((2,), 0.5)) and 0 <= res.best_val_accuracy <= 1


class _Take(torch.nn.Module):
    """A backbone that passes its (B, 3) input through as the features."""

    num_features = 3

    def forward_features(self, x):
        return x

    def forward_head(self, x, pre_logits=False):
        return x


def test_fitted_weights_favour_the_member_that_is_right_more_often():
    torch.manual_seed(0)
    ens = LateFusionEnsemble(members=[_Take(), _Take()], num_classes=3, learn_weights=True).eval()
    x = torch.randn(48, 3)
    with torch.no_grad():
        ens.members[0].head.weight.copy_(10 * torch.eye(3))  # member 0 says argmax(x) ...
        ens.members[0].head.bias.zero_()
        ens.members[1].head.weight.zero_()
        ens.members[1].head.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))  # ... member 1 always class 2
        y = x.argmax(1)
        y[::4] = 2  # the truth: argmax(x), except every fourth item is class 2
        acc = [float((m(x).argmax(1) == y).float().mean()) for m in ens.members]
    assert 0.7 < acc[0] < 1 and 0 < acc[1] < acc[0]  # both make mistakes, member 1 more
    w = fit_fusion_weights(ens, x=x, y=y)
    assert float(w[0]) > 0.6 and float(w.sum()) == pytest.approx(1.0)


def test_bad_settings_are_refused_at_the_door():
    with pytest.raises(ValueError, match="not an ensemble"):
        TeacherConfig(arch="cfer_tiny", member_training="one_by_one")
    with pytest.raises(ValueError, match="member_training must be one of"):
        TeacherConfig(arch=ARCH, member_training="sequential")
    ens = LateFusionEnsemble(members=["cfer_tiny", "cfer_tiny"], num_classes=2)
    with pytest.raises(ValueError, match="learn_weights=true"):
        fit_fusion_weights(ens, x=torch.rand(2, 3, 32, 32), y=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs the faces' image_size and channels"):
        fit(torch.nn.Linear(2, 2), xt=torch.rand(2, 2), yt=torch.tensor([0, 1]), xv=torch.rand(2, 2),
            yv=torch.tensor([0, 1]), criterion=torch.nn.CrossEntropyLoss(),
            config=TeacherConfig(augment="faces", device="cpu"))
    with pytest.raises(ValueError, match="LateFusionEnsemble"):
        fit_members(torch.nn.Linear(2, 2), xt=torch.rand(2, 2), yt=torch.tensor([0, 1]), xv=torch.rand(2, 2),
                    yv=torch.tensor([0, 1]), config=TeacherConfig(device="cpu"))


def test_a_member_read_from_its_own_weight_file_keeps_it(tmp_path, splits, monkeypatch):
    from cfer.continual import members as members_module
    from cfer.continual.teacher_fit import FitResult
    from cfer.models import create_backbone

    torch.manual_seed(1)
    donor = create_backbone("cfer_tiny")
    torch.save(donor.state_dict(), tmp_path / "tiny.pt")
    ens = LateFusionEnsemble(members=["cfer_tiny", "manet_tiny"], num_classes=len(CLASSES), img_size=32,
                             weights=[tmp_path / "tiny.pt", None])
    monkeypatch.setattr(members_module, "fit", lambda *a, **k: FitResult(best_val_accuracy=0.0, best_epoch=0,
                                                                          history=[]))
    xv, yv = _tensors(splits["val"])
    fit_members(ens, xt=xv, yt=yv, xv=xv, yv=yv, config=TeacherConfig(arch="ensemble:cfer_tiny+manet_tiny",
                                                                      device="cpu", seed=4))
    for key, value in donor.state_dict().items():  # the file's weights, not a fresh start
        assert torch.equal(ens.members[0].backbone.state_dict()[key], value)
    alone = build_model(arch="manet_tiny", num_classes=len(CLASSES), in_chans=3, img_size=32, seed=4)
    for key, value in alone.backbone.state_dict().items():  # the other member starts as it would alone
        assert torch.equal(ens.members[1].backbone.state_dict()[key], value)
    assert torch.equal(ens.members[1].head.weight, alone.head.classifier.weight)  # its nn.Linear head too
