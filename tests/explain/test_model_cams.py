"""Grad-CAM finds a sensible layer in cfer's MA-Net-style and dual-view models and gives maps."""

import numpy as np
import pytest
import timm
import torch

import cfer.models  # noqa: F401 - registers the models
from cfer.continual.growing import build_model
from cfer.explain.gradcam import empty_maps, explain, find_target_layer
from cfer.models import create_dualview


def _check(maps: np.ndarray, n: int, side: int) -> None:
    assert maps.shape == (n, side, side) and maps.dtype == np.float32
    assert not np.isnan(maps).any() and maps.min() >= 0 and maps.max() <= 1
    assert not empty_maps(maps).all()


def test_manet_tiny_maps_read_the_last_conv_of_the_deepest_stage():
    torch.manual_seed(0)
    net = timm.create_model("manet_tiny", num_classes=3)
    layer, reshape = find_target_layer(net)
    assert layer is net.multiscale.fuse and reshape is None
    x = torch.rand(4, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    maps = explain(net, x, targets=[0, 1, 2, 0], method="gradcam")
    _check(maps, 4, 48)
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("arch", ["manet_tiny", "dualview_tiny"])
def test_inside_the_growing_classifier(arch):
    model = build_model(arch=arch, num_classes=4, in_chans=1, img_size=48)
    layer, _ = find_target_layer(model)
    assert isinstance(layer, torch.nn.Module) and any(layer is m for m in model.backbone.modules())
    maps = explain(model, torch.rand(3, 1, 48, 48, generator=torch.Generator().manual_seed(2)), method="gradcam")
    _check(maps, 3, 48)


def test_dualview_maps_explain_view_a():
    torch.manual_seed(0)
    net = timm.create_model("dualview_tiny", num_classes=3)
    layer, reshape = find_target_layer(net)
    assert layer is net.encoder_a.cam_layer and reshape is None  # encoder A's own choice
    maps = explain(net, torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1)), targets=[0, 1])
    _check(maps, 2, 48)
    # a ViT on view A: the token grid tap gives a (B, dim, 3, 3) map, no reshape needed
    vit_a = create_dualview(encoder_a="vit_tiny_patch16_224", encoder_b="cfer_tiny", img_size=48, num_classes=3,
                            dim=32)
    assert find_target_layer(vit_a) == (vit_a.cam_grid, None)
    maps = explain(vit_a, torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1)), targets=[0, 2])
    _check(maps, 2, 48)
