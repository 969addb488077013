import pytest
import timm
import torch
from torch import nn

import cfer.models  # noqa: F401 - registers the models
from cfer.models import create_backbone, load_weights
from cfer.models.dualview import CROP_BOX, DualViewFusion, LocalTokenAttention, create_dualview, second_view


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_second_views():
    x = torch.rand(2, 1, 20, 20)
    assert torch.equal(second_view(x, view="flip"), x.flip(-1))
    crop = second_view(x, view="crop", crop_box=(0.25, 0.25, 0.75, 0.75))
    want = nn.functional.interpolate(x[..., 5:15, 5:15], size=(20, 20), mode="bilinear", align_corners=False)
    assert crop.shape == x.shape and torch.equal(crop, want)
    assert torch.equal(second_view(x, view=lambda t: t[..., :10, :10]), x[..., :10, :10])
    with pytest.raises(ValueError, match=r"view must be one of \['flip', 'crop'\] or a callable"):
        second_view(x, view="zoom")
    with pytest.raises(ValueError, match="view must be one of"):
        timm.create_model("dualview_tiny", view="zoom")
    with pytest.raises(ValueError, match=r"crop_box must be \(top, left, bottom, right\)"):
        timm.create_model("dualview_tiny", crop_box=(0.5, 0.1, 0.4, 0.9))
    assert timm.create_model("dualview_tiny").crop_box == CROP_BOX


def test_registered_grey_model_fuses_the_tokens_of_both_views():
    torch.manual_seed(0)
    net = timm.create_model("dualview_tiny", num_classes=7, in_chans=1).eval()
    x = torch.rand(2, 1, 48, 48)
    assert net(x).shape == (2, 7)
    tokens = net.forward_features(x)
    assert tokens.shape == (2, 9 + 9, 16)  # 3x3 cells of cfer_tiny per view
    # cross-view self-attention: view A's tokens depend on view B's encoder
    with torch.no_grad():
        for p in net.encoder_b.parameters():
            p.add_(0.5)
    assert not torch.allclose(net.forward_features(x)[:, :9], tokens[:, :9])
    # and on the second view itself: a blank view B changes the logits
    blank = timm.create_model("dualview_tiny", num_classes=7, in_chans=1, view=torch.zeros_like).eval()
    blank.load_state_dict(net.state_dict())
    assert not torch.allclose(blank(x), net(x))


def test_local_token_attention_is_local():
    torch.manual_seed(0)
    att = LocalTokenAttention(8)
    t = torch.rand(2, 16, 8)
    u = t.clone()
    u[:, 15] += torch.randn(8)  # cell (3, 3) of a 4x4 grid
    a, b = att(t, (4, 4)), att(u, (4, 4))
    assert torch.equal(a[:, 0], b[:, 0])  # cell (0, 0): too far
    assert not torch.allclose(a[:, 10], b[:, 10])  # cell (2, 2): a neighbour


def test_a_cnn_and_a_vit_on_48_px_faces():
    torch.manual_seed(0)
    net = create_dualview(encoder_a="cfer_tiny", encoder_b="vit_tiny_patch16_224", img_size=48, num_classes=5,
                          dim=32, view="flip")
    x = torch.rand(2, 3, 48, 48)
    assert net(x).shape == (2, 5)
    assert net.forward_features(x).shape == (2, 9 + 1 + 9, 32)  # 3x3 CNN cells; class token + 3x3 patches
    assert net.forward_head(net.forward_features(x), pre_logits=True).shape == (2, net.num_features) == (2, 32)
    assert net.pretrained_cfg["first_conv"] == ("encoder_a.stem.0.0", "encoder_b.patch_embed.proj")
    assert net.pretrained_cfg["input_size"] == (3, 48, 48) and net.pretrained_cfg["classifier"] == "head"
    grey = create_dualview(encoder_a="vit_tiny_patch16_224", encoder_b="resnet18", img_size=48, in_chans=1,
                           num_classes=0, dim=32)
    assert grey(torch.rand(2, 1, 48, 48)).shape == (2, 32)
    assert grey.cam_layer is grey.cam_grid  # a ViT view A: the token grid as a map


def test_modules_as_encoders_and_shared_weights():
    enc = create_backbone("cfer_tiny")
    shared = DualViewFusion(encoder_a=enc, encoder_b=enc, dim=8, num_heads=2, num_classes=3)
    separate = DualViewFusion(encoder_a="cfer_tiny", encoder_b="cfer_tiny", dim=8, num_heads=2, num_classes=3)
    assert n_params(separate) - n_params(shared) == n_params(enc)
    assert shared(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(TypeError, match=r"lacks \['forward_features', 'num_features'\]"):
        DualViewFusion(encoder_a=nn.Linear(3, 3), encoder_b="cfer_tiny")
    with pytest.raises(ValueError, match="unknown model 'cfer_tiyn'"):
        DualViewFusion(encoder_a="cfer_tiyn", encoder_b="cfer_tiny")
    with pytest.raises(ValueError, match=r"dim \(10\) must be a positive multiple of num_heads \(4\)"):
        DualViewFusion(encoder_a="cfer_tiny", encoder_b="cfer_tiny", dim=10)
    with pytest.raises(ValueError, match="global_pool must be 'avg'"):
        timm.create_model("dualview_tiny", global_pool="max")
    with pytest.raises(ValueError, match="pass img_size="):
        DualViewFusion(encoder_a=timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32,
                                                   dynamic_img_size=False), encoder_b="cfer_tiny", img_size=48)


def test_load_weights_adapts_both_input_convolutions(tmp_path):
    torch.save(timm.create_model("dualview_tiny").state_dict(), tmp_path / "rgb.pt")
    grey = timm.create_model("dualview_tiny", in_chans=1)
    info = load_weights(grey, tmp_path / "rgb.pt")
    assert info["adapted"] == ["encoder_a.stem.0.0.weight", "encoder_b.stem.0.0.weight"] and info["missing"] == []
    assert grey(torch.rand(2, 1, 48, 48)).shape == (2, 7)
