import numpy as np
import pytest
import torch
from torch import nn

from cfer import taxonomy
from cfer.data.synthetic import render_faces
from cfer.explain.compare import constituent_gap, mean_maps, similarity_table, top_overlap
from cfer.explain.gradcam import METHODS, empty_maps, explain, token_reshape
from cfer.explain.regions import canonical_region_map, localisation_score, region_attention


class RegionModel(nn.Module):
    """Logits that depend only on the pixels of one fixed region."""

    def __init__(self, mask: np.ndarray, n_classes: int = 3):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32)[None, None])
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, n_classes)
        with torch.no_grad():
            self.conv.weight.fill_(0.1)
            self.conv.bias.fill_(0.1)
            self.fc.weight.fill_(1.0)

    def forward(self, x):
        a = torch.relu(self.conv(x * self.mask)) * self.mask
        return self.fc(a.sum((2, 3)) / self.mask.sum())


@pytest.fixture(scope="module")
def faces():
    return render_faces(classes=["happy", "surprised", "happily_surprised", "sad"], n_subjects=2, per_class=2, seed=1)


def test_a_model_of_one_region_puts_most_energy_there(faces):
    x = faces.tensors()[0]
    mouth = faces.region_mask("mouth")[0]
    model = RegionModel(mouth)
    for method in ("gradcam", "gradcam++", "layercam"):
        cams = explain(model, x[:1], method=method, target_layers=[model.conv], targets=0)
        share = region_attention(cams, faces.region_map[:1])[0]
        assert share[taxonomy.REGIONS.index("mouth")] > 0.8, (method, share)


def test_shapes_range_mode_hooks_and_gradients(faces):
    import timm

    net = timm.create_model("resnet18", num_classes=4)
    net.train()
    x = faces.tensors()[0][:6]
    before = [dict(m._forward_hooks) | dict(m._backward_hooks) for m in net.modules()]
    for method in METHODS:
        cams = explain(net, x, method=method, batch_size=4)
        assert cams.shape == (6, 64, 64) and cams.dtype == np.float32
        assert cams.min() >= 0 and cams.max() <= 1
    assert net.training
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())
    after = [dict(m._forward_hooks) | dict(m._backward_hooks) for m in net.modules()]
    assert [len(h) for h in after] == [len(h) for h in before]
    # Training goes on as usual afterwards.
    loss = net(x).sum()
    loss.backward()
    assert net.fc.weight.grad is not None


def test_vit_gets_its_reshape():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=32)
    cams = explain(vit, torch.rand(2, 3, 32, 32))
    assert cams.shape == (2, 32, 32)


def test_bad_requests_name_the_fix(faces):
    import timm

    net = timm.create_model("resnet18", num_classes=4)
    x = faces.tensors()[0][:2]
    with pytest.raises(ValueError, match="not a submodule of this model"):
        explain(net, x, target_layers=[nn.Conv2d(3, 3, 3)])
    with pytest.raises(ValueError, match="target layer 'layer9' is not in the model"):
        explain(net, x, target_layers=["layer9"])
    with pytest.raises(ValueError, match="unknown CAM method 'gradcam3'"):
        explain(net, x, method="gradcam3")
    with pytest.raises(ValueError, match="2 images but 3 targets"):
        explain(net, x, targets=[0, 1, 2])


def test_region_shares_sum_to_at_most_one(faces):
    rng = np.random.default_rng(0)
    cams = rng.random((len(faces), 64, 64)).astype(np.float32)
    att = region_attention(cams, faces.region_map)
    assert att.shape == (len(faces), 7)
    assert (att.sum(1) <= 1 + 1e-9).all() and (att >= 0).all()
    with pytest.raises(ValueError, match="non-negative"):
        region_attention(-cams, faces.region_map)


def test_localisation_score_rewards_maps_on_the_shown_aus(faces):
    shown = np.isin(faces.region_map, [taxonomy.REGIONS.index(r) + 1 for r in ("mouth", "cheeks")]).astype(float)
    uniform = np.ones_like(shown)
    happy = faces.labels == faces.classes.index("happy")
    good = localisation_score(shown[happy], faces.region_map[happy], faces.aus[happy])
    flat = localisation_score(uniform[happy], faces.region_map[happy], faces.aus[happy])
    assert np.allclose(flat, 1.0)
    assert (good > 1.5).all()


def test_canonical_template_places_regions_top_to_bottom():
    t = canonical_region_map(64)
    rows = {r: np.argwhere(t == k + 1)[:, 0].mean() for k, r in enumerate(taxonomy.REGIONS)}
    assert rows["forehead"] < rows["brows"] < rows["eyes"] < rows["nose"] < rows["mouth"] < rows["chin"]


def test_compound_similarity_to_constituents():
    # Toy maps: each basic lights one region; a compound the union of its constituents'.
    h = 8
    means = {}
    for k, b in enumerate(taxonomy.BASIC):
        m = np.zeros((h * 6, 4))
        m[k * h:(k + 1) * h] = 1.0
        means[b] = m
    means["happily_surprised"] = means["happy"] + means["surprised"]
    table = similarity_table(means)
    gap = constituent_gap(table)
    assert gap["happily_surprised"] > 0.3 and gap["mean"] == gap["happily_surprised"]
    assert top_overlap(means["happy"], means["happy"]) == 1.0
    maps = mean_maps(np.stack([means["happy"], means["sad"]]), np.array([0, 1]), ["happy", "sad"])
    assert set(maps) == {"happy", "sad"}


def _tiny_torchvision_vit(n_classes=3):
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32,
                            num_classes=n_classes)
    nn.init.normal_(vit.heads.head.weight)  # torchvision starts the head at zero: every map would be empty
    return vit


def test_reshape_transform_for_a_transformer_cfer_does_not_recognise():
    """Issue 15 #17a: a torchvision ViT block gives tokens (B, 1 + 4*4, 16); the caller's
    reshape_transform reaches pytorch-grad-cam's CAM."""
    vit = _tiny_torchvision_vit()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    layer = "encoder.layers.encoder_layer_0.ln_1"
    with pytest.raises(ValueError, match=r"not a \(B, C, h, w\) map.*reshape_transform=token_reshape"):
        explain(vit, x, target_layers=[layer], targets=[0, 2])
    seen = []
    reshape = token_reshape(prefix_tokens=1)

    def spy(tokens):
        seen.append(tuple(tokens.shape))
        return reshape(tokens)

    cams = explain(vit, x, target_layers=[layer], targets=[0, 2], reshape_transform=spy)
    assert cams.shape == (2, 32, 32) and cams.min() >= 0 and cams.max() <= 1
    assert seen and seen[0] == (2, 17, 16)
    assert not empty_maps(cams).any() and len(np.unique(cams[0])) > 1
    assert all(not m._forward_hooks for m in vit.modules())  # hooks released
    assert token_reshape(prefix_tokens=1)(torch.rand(2, 17, 16)).shape == (2, 16, 4, 4)
    with pytest.raises(ValueError, match="cannot reshape 17 patch tokens into a square grid"):
        token_reshape(prefix_tokens=0)(torch.rand(2, 17, 16))


def test_targets_outside_the_outputs_are_refused_before_computing(faces):
    """Issue 15 #17b: pytorch-grad-cam swallowed the IndexError and explain returned
    uninitialised memory (values like 4.6e-41)."""
    model = RegionModel(np.ones((64, 64), np.float32), n_classes=3)
    x = faces.tensors()[0][:2]
    with pytest.raises(ValueError, match=r"targets \[3, 7\] are outside the model's 3 outputs; .*0\.\.2"):
        explain(model, x, target_layers=[model.conv], targets=[3, 7])
    with pytest.raises(ValueError, match=r"targets \[-1\] are outside the model's 3 outputs"):
        explain(model, x, target_layers=[model.conv], targets=-1)
    # A callable target that fails is no longer swallowed either.
    with pytest.raises(IndexError):
        explain(model, x, target_layers=[model.conv], targets=[lambda out: out[5], lambda out: out[5]])
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


class _TwoBranches(nn.Module):
    """Logit 0 reads the convolution; logit 1 reads only a separate linear path on the raw
    pixels, so a CAM of the convolution for class 1 has nothing to show."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.other = nn.Linear(3, 1)

    def forward(self, x):
        a = torch.relu(self.conv(x)).mean((1, 2, 3))
        b = self.other(x.mean((2, 3)))[:, 0]
        return torch.stack([a, b], 1)


def test_all_zero_maps_are_reported(faces, caplog):
    """Issue 15 #17c: a map with no evidence is all zero, logged and flagged, not garbage."""
    import logging

    model = _TwoBranches()
    x = faces.tensors()[0][:3]
    with caplog.at_level(logging.WARNING, logger="cfer.explain.gradcam"):
        cams = explain(model, x, target_layers=[model.conv], targets=[0, 1, 1])
    assert empty_maps(cams).tolist() == [False, True, True]
    assert np.all(cams[1:] == 0) and cams[0].max() == pytest.approx(1.0, abs=1e-3)
    assert "2 of 3 gradcam maps are all zero (items [1, 2])" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cfer.explain.gradcam"):
        explain(model, x, target_layers=[model.conv], targets=0)
    assert "all zero" not in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cam_targets_take_a_model_on_the_gpu(faces):
    from cfer.explain.analysis import cam_targets

    x = faces.tensors()[0]
    names = [faces.classes[i] for i in faces.labels]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 3))
    model_classes = ["happy", "surprised", "angry"]  # the compound and sad faces get the prediction
    want = cam_targets(model, x, names, model_classes)
    model.to("cuda")
    assert cam_targets(model, x, names, model_classes) == want
