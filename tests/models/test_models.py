import pytest
import timm
import torch
from torch import nn

import cfer.models  # noqa: F401 - registers the models
from cfer.models import CFER_MODELS, create_backbone, load_weights
from cfer.strategies.growing import GrowingClassifier


@pytest.mark.parametrize("name", ["cfer_tiny", "resemotenet_slim"])
def test_registered_models_follow_timm_conventions(name):
    net = timm.create_model(name, num_classes=7)
    x = torch.rand(3, 3, 64, 64)
    assert net(x).shape == (3, 7)
    feats = net.forward_head(net.forward_features(x), pre_logits=True)
    assert feats.shape == (3, net.num_features)
    net.reset_classifier(4)
    assert net(x).shape == (3, 4)
    assert timm.create_model(name, num_classes=0)(x).shape == (3, net.num_features)
    grey = timm.create_model(name, num_classes=2, in_chans=1)
    assert grey(torch.rand(2, 1, 64, 64)).shape == (2, 2)


def test_full_resemotenet_shape_and_sizes():
    sizes = [sum(p.numel() for p in timm.create_model(n, num_classes=7).parameters()) for n in CFER_MODELS[::-1]]
    assert sizes == sorted(sizes)  # tiny < slim < full
    full = timm.create_model("resemotenet", num_classes=7)
    assert full.num_features == 2048
    assert full(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_pretrained_never_downloads():
    with pytest.raises(ValueError, match="never downloads weights"):
        timm.create_model("resemotenet_slim", pretrained=True)
    with pytest.raises(ValueError, match="never downloads weights"):
        create_backbone("resnet18", pretrained=True)


def test_timm_backbones_work_inside_the_growing_classifier():
    for name, size in (("resnet18", 64), ("vit_tiny_patch16_224", 32)):
        bb = create_backbone(name, img_size=size)
        net = GrowingClassifier(backbone=bb, initial_classes=3)
        net.grow(5)
        x = torch.rand(2, 3, size, size)
        assert net(x).shape == (2, 5)
        assert net.embed(x).shape == (2, bb.num_features)


def test_unknown_model_suggests_names():
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'.*cfer's models.*'resnet18'"):
        create_backbone("resnet19")


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


def test_load_weights_round_trip_mismatched_head_and_pickle_refusal(tmp_path):
    a = timm.create_model("cfer_tiny", num_classes=7).eval()
    b = timm.create_model("cfer_tiny", num_classes=7).eval()
    torch.save(a.state_dict(), tmp_path / "w.pt")
    info = load_weights(b, tmp_path / "w.pt", strict=True)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(a(x), b(x)) and info["dropped"] == []

    big = timm.create_model("cfer_tiny", num_classes=1000).eval()
    torch.save({"state_dict": big.state_dict()}, tmp_path / "imagenet.pt")
    info = load_weights(b, tmp_path / "imagenet.pt")
    assert info["dropped"] == ["classifier.weight", "classifier.bias"]
    assert torch.equal(big.forward_features(x), b.forward_features(x))

    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="pickled Python objects and is refused"):
        load_weights(b, tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError):
        load_weights(b, tmp_path / "missing.pt")
