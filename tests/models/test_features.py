import pytest
import torch
from torch import nn

import cfer.models  # noqa: F401 - registers cfer_tiny
from cfer.models.features import FeatureTap, find_feature_layer, pre_logits, probe_features


class MyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


def test_the_feature_layer_is_found_on_any_classifier():
    import timm
    from torchvision.models import resnet18

    assert find_feature_layer(MyNet()) == ("fc", "input")
    assert find_feature_layer(resnet18(num_classes=3)) == ("fc", "input")
    assert find_feature_layer(timm.create_model("cfer_tiny", num_classes=3)) == ("classifier", "input")
    assert find_feature_layer(timm.create_model("test_vit", num_classes=3)) == ("head", "input")
    assert find_feature_layer(MyNet(), feature_layer="body", feature_from="output") == ("body", "output")
    with pytest.raises(ValueError, match=r"feature_layer 'bdy' is not a module of MyNet; .*\['body'"):
        find_feature_layer(MyNet(), feature_layer="bdy")
    with pytest.raises(ValueError, match="cannot find the classifier of Sequential.*pass feature_layer="):
        find_feature_layer(nn.Sequential(nn.Conv2d(3, 3, 1), nn.Flatten()))


def test_pre_logits_of_a_plain_module_is_the_classifier_input():
    net = MyNet().eval()
    x = torch.rand(2, 3, 8, 8)
    expected = net.body(x).flatten(1)
    assert torch.allclose(pre_logits(net, x), expected)
    assert torch.allclose(pre_logits(net, x, feature_layer="body", feature_from="output"), expected)  # flattened
    with FeatureTap(net, layer="fc") as tap:
        logits = net(x)
    assert torch.allclose(tap.features, expected) and torch.equal(tap.output, logits)
    assert not net.fc._forward_hooks  # released on exit


def test_probe_features_checks_the_layer_runs_and_is_the_classifier():
    class Unused(MyNet):
        def __init__(self):
            super().__init__()
            self.spare = nn.Linear(4, 4)  # the last Linear, never called

    net = Unused()
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="module 'spare' of Unused does not run in its forward pass"):
        probe_features(net, x, layer="spare")
    net.train()
    assert probe_features(net, x, layer="fc").shape == (1, 4) and net.training  # mode restored
    mlp = nn.Sequential(nn.Linear(2, 5), nn.Linear(5, 3))
    with pytest.raises(ValueError, match="'0', gives 5 outputs but the model gives 3: it is not the classifier"):
        probe_features(mlp, torch.rand(1, 2), layer="0", check_classifier=True)
    assert probe_features(mlp, torch.rand(1, 2), layer="0").shape == (1, 2)  # a named inner layer is fine
