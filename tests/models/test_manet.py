import pytest
import timm
import torch
from torch import nn

import cfer.models  # noqa: F401 - registers the models
from cfer.models.manet import LocalPatchAttention, MANet, MultiScaleBlock
from cfer.models.pooling import MaxPool2x2


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return timm.create_model("manet_tiny", num_classes=5).eval()


def test_global_multi_scale_and_local_maps_are_concatenated(tiny):
    assert isinstance(tiny, MANet) and isinstance(tiny.multiscale, MultiScaleBlock)
    assert [b[0].dilation for b in tiny.multiscale.branches] == [(1, 1), (2, 2), (3, 3)]
    x = torch.rand(2, 3, 64, 64)
    fmap = tiny.forward_features(x)
    mid = tiny.trunk(tiny.stem(x))
    glob = tiny.multiscale(tiny.deep(mid))
    local, scores = tiny.local(mid)
    assert fmap.shape == (2, tiny.global_width + tiny.local_width, 4, 4) == (2, 16 + 8, 4, 4)
    assert glob.shape[-2:] == mid.shape[-2:]  # dilation, not striding: the global map keeps 1/16 here
    assert torch.equal(fmap[:, :16], glob) and torch.equal(fmap[:, 16:], local)
    feats = tiny.forward_head(fmap, pre_logits=True)
    assert torch.allclose(feats, torch.cat([glob.mean((2, 3)), local.mean((2, 3))], 1), atol=1e-6)
    assert scores.shape == (2, 2, 2) and torch.equal(tiny.patch_attention(x), scores)
    assert ((scores > 0) & (scores < 1)).all()


def test_a_patch_sees_only_its_own_part_of_the_face():
    torch.manual_seed(0)
    att = LocalPatchAttention(4, width=3, grid=2, hidden=2).eval()
    x = torch.rand(2, 4, 6, 6)
    y = x.clone()
    y[:, :, 3:, 3:] += 5.0  # change the bottom-right patch only
    (out_x, s_x), (out_y, s_y) = att(x), att(y)
    assert torch.equal(out_x[:, :, :3, :3], out_y[:, :, :3, :3]) and torch.equal(s_x[:, 0, 0], s_y[:, 0, 0])
    assert not torch.allclose(out_x[:, :, 3:, 3:], out_y[:, :, 3:, 3:])
    assert not torch.allclose(s_x[:, 1, 1], s_y[:, 1, 1])
    # a side that is not a multiple of the grid is padded and cropped back
    out, scores = LocalPatchAttention(4, width=3, grid=3, hidden=2)(torch.rand(2, 4, 5, 7))
    assert out.shape == (2, 3, 5, 7) and scores.shape == (2, 3, 3)


def test_the_attention_score_gates_each_patch(tiny):
    x = torch.rand(2, 3, 64, 64)
    before = tiny.forward_features(x)
    with torch.no_grad():
        tiny.local.score[-1].bias[0] = -1e4  # patch (0, 0): score ~ 0
    after = tiny.forward_features(x)
    assert torch.equal(after[:, :16], before[:, :16])  # the global branch is untouched
    assert after[:, 16:, :2, :2].abs().max() == 0  # the top-left patch is switched off
    assert torch.equal(after[:, 16:, 2:, 2:], before[:, 16:, 2:, 2:])
    assert tiny.patch_attention(x)[:, 0, 0].max() < 1e-6


@pytest.mark.parametrize("side", [24, 40, 48])
def test_any_face_size_and_grey(side):
    net = timm.create_model("manet_tiny", num_classes=3, in_chans=1, grid=3)
    assert net(torch.rand(2, 1, side, side)).shape == (2, 3)
    assert net.patch_attention(torch.rand(2, 1, side, side)).shape == (2, 3, 3)


def test_cam_layer_is_the_last_conv_of_the_deepest_stage(tiny):
    assert tiny.cam_layer is tiny.multiscale.fuse and isinstance(tiny.cam_layer, nn.Conv2d)
    assert tiny.feature_info[-1]["module"] == "multiscale"


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="grid must be >= 1"):
        timm.create_model("manet_tiny", grid=0)
    with pytest.raises(ValueError, match="dilations must be one or more"):
        timm.create_model("manet_tiny", dilations=())
    with pytest.raises(ValueError, match="global_pool='' .* needs num_classes=0"):
        timm.create_model("manet_tiny", num_classes=3, global_pool="")
    assert timm.create_model("manet_tiny", num_classes=0, global_pool="")(torch.rand(2, 3, 32, 32)).shape == (2, 24, 2, 2)
    with pytest.raises(TypeError, match="unexpected keyword"):
        timm.create_model("manet_tiny", gird=2)


def test_the_pool_trunk_halves_with_max_pools_and_keeps_the_branches():
    torch.manual_seed(0)
    pool = timm.create_model("manet_pool_slim", num_classes=4, in_chans=1).eval()
    residual = timm.create_model("manet_slim", num_classes=4, in_chans=1).eval()
    kinds = [[type(m) for m in block] for block in pool.trunk]
    assert kinds == [[nn.Conv2d, nn.BatchNorm2d, nn.ReLU, MaxPool2x2]] * 2  # conv-norm-ReLU-max-pool, twice
    assert not any(isinstance(m, type(residual.trunk[0])) for m in pool.trunk.modules())
    x = torch.rand(2, 1, 48, 48)
    # the same maps and features as the residual trunk: only the way down to 1/8 differs
    assert pool.trunk(pool.stem(x)).shape == residual.trunk(residual.stem(x)).shape == (2, 64, 6, 6)
    assert pool.forward_features(x).shape == residual.forward_features(x).shape == (2, 192, 6, 6)
    assert pool.num_features == residual.num_features and pool.feature_info == residual.feature_info
    # any variant takes the keyword
    assert timm.create_model("manet_tiny", trunk="pool", num_classes=3)(torch.rand(2, 3, 40, 40)).shape == (2, 3)
    with pytest.raises(ValueError, match="trunk must be 'residual' .* or 'pool'"):
        timm.create_model("manet_slim", trunk="maxpool")
