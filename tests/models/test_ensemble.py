"""LateFusionEnsemble: contract, fusion, loss, member training, arch strings, save/load."""

import copy
import math

import pytest
import torch
from torch import nn

from cfer.continual.growing import GrowingEnsemble, build_model, load_model
from cfer.models import create_backbone, pre_logits
from cfer.models.ensemble import LateFusionEnsemble, create_ensemble, fuse
from cfer.models.ensemble_arch import ensemble_arch, parse_ensemble_arch
from cfer.models.ensemble_loss import EnsembleCriterion, criterion_for, ensemble_loss
from cfer.models.io import save_model


def _ens(**kw):
    torch.manual_seed(0)
    return LateFusionEnsemble(members=["cfer_tiny", "cfer_tiny"], img_sizes=[None, 24], num_classes=3, **kw)


def test_two_members_at_two_sizes_follow_the_feature_contract():
    ens = _ens().eval()
    x = torch.rand(4, 3, 32, 32)
    seen = []
    hooks = [m.backbone.stem.register_forward_pre_hook(lambda _m, a: seen.append(tuple(a[0].shape[-2:])))
             for m in ens.members]
    out = ens(x)
    for h in hooks:
        h.remove()
    assert seen == [(32, 32), (24, 24)]  # the second member got the batch resized to its size
    assert out.shape == (4, 3) and ens.num_classes == 3 and ens.num_features == 16 + 16
    feats = ens.forward_head(ens.forward_features(x), pre_logits=True)
    parts = [m.forward_head(m.forward_features(x), pre_logits=True) for m in ens.members]
    assert feats.shape == (4, 32) and torch.allclose(feats, torch.cat(parts, 1))
    assert torch.allclose(pre_logits(ens, x), feats)
    z = ens.last_member_logits
    assert [tuple(t.shape) for t in z] == [(4, 3), (4, 3)]
    assert torch.allclose(z[1], ens.members[1](x)) and not torch.allclose(z[0], z[1])
    assert len(ens.get_classifier()) == 2 and ens.member_names == ["cfer_tiny", "cfer_tiny@24"]

    old = [m.head.weight for m in ens.members]
    ens.reset_classifier(5)
    assert ens(x).shape == (4, 5) and all(m.head.out_features == 5 for m in ens.members)
    assert all(m.head.weight is not w for m, w in zip(ens.members, old))
    ens.reset_classifier(0)
    assert torch.allclose(ens(x), feats) and ens.num_classes == 0


def test_a_cnn_and_a_vit_member():
    torch.manual_seed(0)
    ens = LateFusionEnsemble(members=["cfer_tiny", "vit_tiny_patch16_224"], img_size=32, num_classes=4, proj_dim=8)
    assert [m.img_size for m in ens.members] == [None, 32]  # the ViT keeps the grid it was built for
    assert ens.num_features == 16 and ens.member_widths == (8, 8)
    for side in (32, 24):  # at 24 px the ViT member gets the batch resized to 32
        assert ens(torch.rand(2, 3, side, side)).shape == (2, 4)
    assert ens.forward_features(torch.rand(2, 3, 24, 24)).shape == (2, 16)


def test_prob_fusion_gives_log_probabilities_and_logit_fusion_a_weighted_mean():
    x = torch.rand(3, 3, 32, 32)
    ens = _ens(fusion_weights=(3.0, 1.0)).eval()
    out = ens(x)
    z = ens.last_member_logits
    assert ens.log_prob_output
    assert torch.allclose(out.exp().sum(1), torch.ones(3), atol=1e-6)
    expected = 0.75 * torch.softmax(z[0], 1) + 0.25 * torch.softmax(z[1], 1)
    assert torch.allclose(out.exp(), expected, atol=1e-6)
    assert torch.equal(out.argmax(1), expected.argmax(1))

    lens = _ens(fusion="logit", fusion_weights=(3.0, 1.0)).eval()
    out = lens(x)
    z = lens.last_member_logits
    assert not lens.log_prob_output and torch.allclose(out, 0.75 * z[0] + 0.25 * z[1], atol=1e-6)
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse(z, fusion="max")


def test_learned_weights_get_gradients_and_fixed_ones_are_a_buffer():
    ens = _ens(learn_weights=True)
    assert any(p is ens.fusion_logits for p in ens.parameters())
    y = torch.tensor([0, 1, 2, 0])
    EnsembleCriterion(ens)(ens(torch.rand(4, 3, 32, 32)), y).backward()
    assert ens.fusion_logits.grad is not None and float(ens.fusion_logits.grad.abs().sum()) > 0
    fixed = _ens()
    assert not any(p is fixed.fusion_logits for p in fixed.parameters())
    assert "fusion_logits" in fixed.state_dict() and torch.allclose(fixed.fusion_weights, torch.tensor([0.5, 0.5]))


def test_ensemble_loss_is_the_formula_with_the_fused_target_detached():
    z1 = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], requires_grad=True)
    z2 = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]], requires_grad=True)
    y = torch.tensor([0, 2])
    lam = 0.7
    out = fuse([z1, z2]).detach().requires_grad_(True)
    loss = ensemble_loss(out, y, members=[z1, z2], lam=lam)

    softmax = lambda z: [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in z.tolist()]  # noqa: E731
    p, q = softmax(z1), softmax(z2)
    fused = [[(a + b) / 2 for a, b in zip(pr, qr)] for pr, qr in zip(p, q)]
    ce = lambda probs: -sum(math.log(probs[i][c]) for i, c in enumerate(y.tolist())) / 2  # noqa: E731
    kl = lambda m: sum(sum(f * (math.log(f) - math.log(g)) for f, g in zip(fr, mr))  # noqa: E731
                       for fr, mr in zip(fused, m)) / 2
    by_hand = ce(p) + ce(q) + ce(fused) + lam * (kl(p) + kl(q))
    assert float(loss.detach()) == pytest.approx(by_hand, rel=1e-5)

    loss.backward()  # the KL term sends nothing into the fused output: its gradient is the fused CE's alone
    ce_grad = torch.autograd.grad(nn.functional.cross_entropy(out, y), out)[0]
    assert torch.allclose(out.grad, ce_grad, atol=1e-6)
    kl_grad = torch.autograd.grad(ensemble_loss(out, y, members=[z1, z2], lam=1.0)
                                  - ensemble_loss(out, y, members=[z1, z2], lam=0.0), z1)[0]
    assert torch.allclose(kl_grad, (torch.softmax(z1, 1) - torch.tensor(fused)) / 2, atol=1e-5)


def test_the_criterion_reads_the_member_logits_of_the_same_forward():
    ens = _ens(lam=0.25)
    y = torch.tensor([0, 1, 2, 1])
    out = ens(torch.rand(4, 3, 32, 32))
    crit = criterion_for(ens)
    assert isinstance(crit, EnsembleCriterion) and crit.lam == 0.25
    loss = crit(out, y)
    assert torch.allclose(loss, ensemble_loss(out, y, members=ens.last_member_logits, lam=0.25))
    assert crit.last["kl"] > 0 and crit.last["total"] == pytest.approx(
        crit.last["members"] + crit.last["fused"] + 0.25 * crit.last["kl"], rel=1e-5)
    with pytest.raises(RuntimeError, match="right after model"):
        crit(out[:2], y[:2])
    assert isinstance(criterion_for(nn.Linear(3, 2)), nn.CrossEntropyLoss)
    with pytest.raises(TypeError, match="needs a LateFusionEnsemble"):
        EnsembleCriterion(nn.Linear(3, 2))
    ens.train()
    copied = copy.deepcopy(ens)  # a copy after a training forward (LwF, the distillation plugin) works
    assert copied.last_member_logits is None


def test_frozen_members_keep_their_parameters_and_statistics():
    ens = _ens()
    ens.freeze_members(except_=1)
    assert ens.frozen_members == (0,)
    ens.train()
    assert not ens.members[0].training and ens.members[1].training
    before = {k: v.clone() for k, v in ens.state_dict().items()}
    opt = torch.optim.Adam(ens.parameters(), lr=0.1)
    EnsembleCriterion(ens)(ens(torch.rand(8, 3, 32, 32)), torch.arange(8) % 3).backward()
    opt.step()
    after = ens.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("members.0."))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("members.1."))
    ens.set_trainable()
    assert ens.frozen_members == ()
    with pytest.raises(ValueError, match=r"out of range; the ensemble has members 0\.\.1"):
        ens.set_trainable([2])


def test_arch_strings_parse_round_trip_and_suggest_names():
    arch = "ensemble:cfer_tiny+vit_tiny_patch16_224@32,fusion=logit,learn_weights=true,proj_dim=8,lam=0.5"
    options = parse_ensemble_arch(arch)
    assert options == {"members": ("cfer_tiny", "vit_tiny_patch16_224"), "img_sizes": (None, 32), "fusion": "logit",
                       "learn_weights": True, "proj_dim": 8, "lam": 0.5}
    assert ensemble_arch(**options) == arch and create_ensemble(arch).arch == arch
    with pytest.raises(ValueError, match=r"unknown ensemble member 'cfer_tinny'.*close timm names: \['cfer_tiny'"):
        parse_ensemble_arch("ensemble:cfer_tinny+resemotenet_slim")
    with pytest.raises(ValueError, match="unknown ensemble option 'fussion' \\(did you mean 'fusion'\\?\\)"):
        parse_ensemble_arch("ensemble:cfer_tiny,fussion=prob")
    with pytest.raises(ValueError, match=r"fusion must be one of \['prob', 'logit'\]"):
        parse_ensemble_arch("ensemble:cfer_tiny,fusion=mean")
    with pytest.raises(ValueError, match="bad ensemble member 'cfer_tiny@x'.*write ensemble:NAME"):
        parse_ensemble_arch("ensemble:cfer_tiny@x")
    backbone = create_backbone("ensemble:cfer_tiny+cfer_tiny@24")  # a feature extractor, as for any name
    assert backbone.num_classes == 0 and backbone(torch.rand(2, 3, 32, 32)).shape == (2, backbone.num_features)


def test_per_member_weight_files(tmp_path):
    torch.manual_seed(1)
    donor = create_backbone("cfer_tiny")
    torch.save(donor.state_dict(), tmp_path / "tiny.pt")
    ens = create_ensemble("ensemble:cfer_tiny+cfer_tiny", num_classes=2, weights=[tmp_path / "tiny.pt", None])
    w = "stem.0.0.weight"
    assert torch.equal(ens.members[0].backbone.state_dict()[w], donor.state_dict()[w])
    assert not torch.equal(ens.members[1].backbone.state_dict()[w], donor.state_dict()[w])


def test_save_and_load_round_trip_through_the_arch_string(tmp_path):
    arch = "ensemble:cfer_tiny+cfer_tiny@24,fusion=logit,learn_weights=true,proj_dim=8"
    model = build_model(arch=arch, num_classes=4, img_size=32, seed=3)
    assert isinstance(model, GrowingEnsemble) and model.arch == arch
    with torch.no_grad():
        model.fusion_logits.copy_(torch.tensor([0.3, -0.4]))
    x = torch.rand(3, 3, 32, 32)
    model.eval()
    path = save_model(model, tmp_path / "teacher.pt", arch=model.arch, classes=("a", "b", "c", "d"))
    loaded, classes = load_model(path)
    assert classes == ("a", "b", "c", "d") and isinstance(loaded, GrowingEnsemble)
    assert torch.allclose(loaded(x), model(x)) and torch.allclose(loaded.fusion_weights, model.fusion_weights)

    plain = _ens().eval()  # a plain ensemble's file loads as a growing one with the same outputs
    save_model(plain, tmp_path / "plain.pt", arch=plain.arch, classes=("a", "b", "c"))
    again, _ = load_model(tmp_path / "plain.pt")
    assert isinstance(again, GrowingEnsemble) and torch.allclose(again(x), plain(x), atol=1e-6)
