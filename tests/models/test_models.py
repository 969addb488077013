import logging
import subprocess
import sys

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import cfer.models  # noqa: F401 - registers the models
from cfer.continual.growing import GrowingClassifier, build_model
from cfer.models import CFER_MODELS, DualViewFusion, MANet, ResEmoteNet, create_backbone, load_weights, pre_logits


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


SMALL = [n for n in CFER_MODELS if n.endswith(("_slim", "_tiny"))]
FAMILIES = {"resemotenet": ResEmoteNet, "cfer": ResEmoteNet, "manet": MANet, "dualview": DualViewFusion,
            "vit": VisionTransformer}


def _first_convs(net: nn.Module) -> list[nn.Module]:
    first = net.pretrained_cfg["first_conv"]
    return [net.get_submodule(c) for c in ([first] if isinstance(first, str) else first)]


@pytest.mark.parametrize("name", CFER_MODELS)
def test_every_cfer_model_is_registered_with_timm(name):
    assert timm.is_model(name) and name in timm.list_models("*")
    net = timm.create_model(name, num_classes=7)
    assert isinstance(net, FAMILIES[name.split("_")[0]])
    assert net.num_classes == 7 and net.pretrained_cfg["input_size"] == (3, 64, 64)
    assert net.default_cfg is net.pretrained_cfg
    # the cfg names the modules load_weights uses: the classifier and the input convolution(s)
    assert net.get_submodule(net.pretrained_cfg["classifier"]) is net.get_classifier()
    assert all(isinstance(c, nn.Conv2d) and c.in_channels == 3 for c in _first_convs(net))


def test_the_small_models_are_every_family_s_slim_and_tiny_variant():
    assert {"cfer_tiny", "resemotenet_slim", "manet_slim", "manet_tiny", "dualview_slim", "dualview_tiny"} <= set(SMALL)


@pytest.mark.parametrize("name", SMALL)
def test_small_models_follow_timm_conventions(name):
    torch.manual_seed(0)
    net = timm.create_model(name, num_classes=7).eval()
    x = torch.rand(3, 3, 64, 64)
    assert net(x).shape == (3, 7)
    fmap = net.forward_features(x)
    feats = net.forward_head(fmap, pre_logits=True)
    assert feats.shape == (3, net.num_features)
    if fmap.ndim == 4:  # a CNN: the map, average-pooled into the features
        assert fmap.shape[1] == net.num_features
        assert fmap.shape[-2:] == net.pretrained_cfg["pool_size"]
        assert torch.allclose(feats, fmap.mean((2, 3)), atol=1e-6)
    else:  # tokens (B, N, C)
        assert fmap.ndim == 3 and fmap.shape[0] == 3
    assert torch.allclose(pre_logits(net, x), feats, atol=1e-6)

    net.reset_classifier(4)
    assert net(x).shape == (3, 4) and net.num_classes == 4
    net.reset_classifier(0)
    assert isinstance(net.get_classifier(), nn.Identity)
    assert torch.allclose(net(x), feats, atol=1e-6)

    headless = timm.create_model(name, num_classes=0)
    assert isinstance(headless.get_classifier(), nn.Identity)
    assert headless(x).shape == (3, net.num_features)

    grey = timm.create_model(name, num_classes=2, in_chans=1)
    assert grey(torch.rand(2, 1, 64, 64)).shape == (2, 2)
    assert all(c.weight.shape[1] == 1 for c in _first_convs(grey))

    # inside the growing head, at 48 px grey, with a backward pass
    grow = build_model(arch=name, num_classes=3, in_chans=1, img_size=48)
    grow.grow(5)
    xs = torch.rand(4, 1, 48, 48)
    assert grow(xs).shape == (4, 5) and grow.embed(xs).shape == (4, net.num_features)
    grow(xs).logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in grow.head.parameters())


def test_drop_rate_acts_in_training_only():
    net = timm.create_model("cfer_tiny", num_classes=5, drop_rate=0.5)
    assert net.drop_rate == 0.5
    x = torch.rand(4, 3, 64, 64)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    torch.manual_seed(0)
    a = net.forward_head(net.forward_features(x), pre_logits=True)
    assert (a == 0).float().mean() > 0.25  # about half the features dropped (some are 0 after ReLU anyway)


def test_bad_arguments_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="unexpected keyword"):
        timm.create_model("cfer_tiny", num_clases=3)
    with pytest.raises(ValueError, match="global_pool='' .* needs num_classes=0"):
        timm.create_model("cfer_tiny", num_classes=3, global_pool="")
    net = timm.create_model("cfer_tiny", num_classes=0, global_pool="")
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 16, 4, 4)  # no pooling: the feature map


def test_sizes_ordered_and_the_full_model_has_the_published_shape():
    sizes = {n: n_params(timm.create_model(n, num_classes=7)) for n in CFER_MODELS}
    assert 1_000 < sizes["cfer_tiny"] < 10_000  # a few thousand
    assert sizes["cfer_tiny"] < sizes["resemotenet_slim"] < sizes["resemotenet"]
    assert sizes["manet_tiny"] < 30_000 < sizes["manet_slim"] < sizes["resemotenet_slim"] < sizes["manet"]
    assert sizes["dualview_tiny"] < 30_000 < sizes["dualview_slim"] < sizes["dualview"]
    full = timm.create_model("resemotenet", num_classes=7).eval()
    assert full.num_features == 2048
    assert [b.conv2.out_channels for b in full.stages] == [512, 1024, 2048]
    assert [blk[0].out_channels for blk in full.stem] == [64, 128, 256]
    with torch.no_grad():
        assert full(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_cfer_models_have_no_hub_weights_and_say_so():
    for name in CFER_MODELS:
        with pytest.raises(ValueError, match="no hub weights.*load_weights"):
            timm.create_model(name, pretrained=True)
        with pytest.raises(ValueError, match="cfer's own models and has no hub weights.*weights=FILE.*cfer pretrain"):
            create_backbone(name, pretrained=True)


def test_face_vits_cut_64_pixel_faces_into_8x8_tokens():
    tiny = timm.create_model("vit_face_tiny", num_classes=0)
    assert tiny.embed_dim == 192 and len(tiny.blocks) == 12 and tiny.patch_embed.grid_size == (8, 8)
    assert 5_000_000 < n_params(tiny) < 6_000_000
    assert create_backbone("vit_face_tiny", img_size=48).patch_embed.grid_size == (6, 6)


@pytest.mark.parametrize("name,size", [("resnet18", 64), ("vit_tiny_patch16_224", 64), ("cfer_tiny", 64)])
def test_backbones_give_features_and_work_inside_the_growing_classifier(name, size):
    bb = create_backbone(name, img_size=size)
    x = torch.rand(2, 3, size, size)
    assert bb(x).shape == (2, bb.num_features)
    net = GrowingClassifier(backbone=bb, initial_classes=3)
    net.grow(5)
    assert net(x).shape == (2, 5)
    assert net.embed(x).shape == (2, bb.num_features)
    loss = net(x).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in net.head.parameters())


def test_create_backbone_options():
    grey = create_backbone("resnet18", in_chans=1, img_size=48)  # img_size is not passed to a CNN
    assert grey(torch.rand(2, 1, 48, 48)).shape == (2, 512)
    with pytest.raises(ValueError, match="feature extractor"):
        create_backbone("cfer_tiny", num_classes=3)
    with pytest.raises(TypeError):
        create_backbone("cfer_tiny", drop_rat=0.1)  # typos are not swallowed


def test_unknown_model_suggests_names():
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'; close timm names: \[.*'resnet18'.*cfer's models"):
        create_backbone("resnet19")
    with pytest.raises(ValueError, match=r"'resemotenet_slim'"):
        create_backbone("resemotenet_slm")


def test_models_package_does_not_import_avalanche():
    code = "import sys, cfer.models; assert 'avalanche' not in sys.modules, 'avalanche imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_growing_keeps_old_rows():
    net = GrowingClassifier(backbone=create_backbone("cfer_tiny"), initial_classes=3)
    net.grow(3)
    x = torch.rand(4, 3, 32, 32)
    net.eval()
    before = net(x)
    net.grow(6)
    after = net(x)
    assert after.shape == (4, 6) and torch.allclose(after[:, :3], before)
    with pytest.raises(ValueError, match="can grow, not shrink"):
        net.grow(2)
    with pytest.raises(TypeError, match="lacks"):
        GrowingClassifier(backbone=nn.Linear(3, 3))


class Payload:
    """Something a weights file must never carry."""


def test_load_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    a = timm.create_model("resemotenet_slim", num_classes=7).eval()
    b = timm.create_model("resemotenet_slim", num_classes=7).eval()
    x = torch.rand(2, 3, 64, 64)
    assert not torch.equal(a(x), b(x))
    torch.save(a.state_dict(), tmp_path / "w.pt")
    info = load_weights(b, tmp_path / "w.pt", strict=True)
    assert info == {"missing": [], "unexpected": [], "dropped": [], "adapted": []}
    assert torch.equal(a(x), b(x))

    c = timm.create_model("resemotenet_slim", num_classes=7).eval()
    torch.save({"model": {f"module.{k}": v for k, v in a.state_dict().items()}, "epoch": 3}, tmp_path / "ddp.pth")
    assert load_weights(c, tmp_path / "ddp.pth")["missing"] == []
    assert torch.equal(a(x), c(x))


def test_load_weights_safetensors(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    a = timm.create_model("cfer_tiny", num_classes=3).eval()
    b = timm.create_model("cfer_tiny", num_classes=3).eval()
    safetensors_torch.save_file(a.state_dict(), str(tmp_path / "w.safetensors"))
    assert load_weights(b, tmp_path / "w.safetensors")["missing"] == []
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(a(x), b(x))


def test_load_weights_drops_a_mismatched_head_and_reports_it(tmp_path, caplog):
    big = timm.create_model("cfer_tiny", num_classes=1000).eval()
    torch.save({"state_dict": big.state_dict()}, tmp_path / "imagenet.pt")
    b = timm.create_model("cfer_tiny", num_classes=7).eval()
    head_before = b.classifier.weight.clone()
    with caplog.at_level(logging.INFO, logger="cfer.models.weights"):
        info = load_weights(b, tmp_path / "imagenet.pt")
    assert info["dropped"] == ["classifier.weight", "classifier.bias"]
    assert info["missing"] == ["classifier.weight", "classifier.bias"] and info["unexpected"] == []
    assert "dropped 2 classifier tensors" in caplog.text and "kept at initialisation" in caplog.text
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(big.forward_features(x), b.forward_features(x))
    assert torch.equal(b.classifier.weight, head_before)
    with pytest.raises(ValueError, match="strict=True"):
        load_weights(b, tmp_path / "imagenet.pt", strict=True)

    # into a headless backbone the ImageNet head is simply unexpected
    info = load_weights(create_backbone("cfer_tiny"), tmp_path / "imagenet.pt")
    assert info["unexpected"] == ["classifier.weight", "classifier.bias"] and info["missing"] == []


def test_load_weights_adapts_rgb_to_grey_and_refuses_other_architectures(tmp_path):
    torch.save(timm.create_model("cfer_tiny").state_dict(), tmp_path / "rgb.pt")
    grey = timm.create_model("cfer_tiny", in_chans=1)
    assert load_weights(grey, tmp_path / "rgb.pt")["adapted"] == ["stem.0.0.weight"]
    assert grey(torch.rand(2, 1, 64, 64)).shape == (2, 7)
    with pytest.raises(ValueError, match="does not fit this model.*another architecture"):
        load_weights(timm.create_model("resemotenet_slim"), tmp_path / "rgb.pt")


def test_load_weights_refuses_pickled_objects_and_junk(tmp_path):
    net = timm.create_model("cfer_tiny")
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only=True, so it is refused: it carries pickled Python objects"):
        load_weights(net, tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable torch file"):
        load_weights(net, tmp_path / "junk.pt")
    torch.save({"lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(ValueError, match="no state dict of tensors"):
        load_weights(net, tmp_path / "meta.pt")
    with pytest.raises(FileNotFoundError, match="no weight file"):
        load_weights(net, tmp_path / "missing.pt")


def test_weights_of_another_architecture_that_fill_nothing_are_refused_listing_the_match(tmp_path):
    torch.save(timm.create_model("resnet18", num_classes=6).state_dict(), tmp_path / "resnet.pt")
    net = timm.create_model("cfer_tiny", num_classes=6)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"fills 0 of the model's \d+ tensors .*at least 50% needed.*another "
                                         r"architecture.*min_match=0"):
        load_weights(net, tmp_path / "resnet.pt")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing was loaded
    info = load_weights(net, tmp_path / "resnet.pt", min_match=0)  # the caller's explicit choice
    assert len(info["unexpected"]) > 100
    # A sixth of a model is refused too: the file keeps only the first stem block.
    state = timm.create_model("cfer_tiny").state_dict()
    torch.save({k: v for k, v in state.items() if k.startswith("stem.0.")}, tmp_path / "stem.pt")
    with pytest.raises(ValueError, match="matched \\['stem"):
        load_weights(timm.create_model("cfer_tiny"), tmp_path / "stem.pt")
    assert load_weights(timm.create_model("cfer_tiny"), tmp_path / "stem.pt", min_match=0.1)["missing"]
