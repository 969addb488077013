"""Grad-CAM of a late-fusion ensemble: per member, and fused with the fusion weights."""

import numpy as np
import pytest
import torch
from torch import nn

from cfer import taxonomy
from cfer.data.synthetic import render_faces
from cfer.explain import explain, explain_ensemble, find_target_layer, member_target_layers
from cfer.explain.regions import region_attention
from cfer.models.ensemble import LateFusionEnsemble


class RegionBackbone(nn.Module):
    """A feature extractor that sees only the pixels of one fixed region."""

    def __init__(self, mask: np.ndarray):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32)[None, None])
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.num_features = 4
        with torch.no_grad():
            self.conv.weight.fill_(0.1)
            self.conv.bias.fill_(0.1)

    @property
    def cam_layer(self):
        return self.conv

    def forward_features(self, x):
        return torch.relu(self.conv(x * self.mask)) * self.mask

    def forward_head(self, x, pre_logits=False):
        return x.sum((2, 3)) / self.mask.sum()


@pytest.fixture(scope="module")
def faces():
    return render_faces(classes=["happy"], n_subjects=1, per_class=1, seed=1)


def test_member_maps_follow_their_members_and_the_fused_map_their_weights(faces):
    x = faces.tensors()[0][:1]
    mouth, eyes = (faces.region_mask(r)[0] for r in ("mouth", "eyes"))
    ens = LateFusionEnsemble(members=[RegionBackbone(mouth), RegionBackbone(eyes)], num_classes=2,
                             fusion_weights=(3.0, 1.0))
    with torch.no_grad():
        for m in ens.members:
            m.head.weight.fill_(1.0)
    maps = explain_ensemble(ens, x, targets=0)
    assert list(maps) == ["RegionBackbone#0", "RegionBackbone#1", "fused"]
    share = {k: region_attention(v, faces.region_map[:1])[0] for k, v in maps.items()}
    m_i, e_i = taxonomy.REGIONS.index("mouth"), taxonomy.REGIONS.index("eyes")
    assert share["RegionBackbone#0"][m_i] > 0.8 and share["RegionBackbone#1"][e_i] > 0.8
    avg = 0.75 * maps["RegionBackbone#0"] + 0.25 * maps["RegionBackbone#1"]
    lo, hi = avg.min((1, 2), keepdims=True), avg.max((1, 2), keepdims=True)
    assert np.allclose(maps["fused"], (avg - lo) / (hi - lo), atol=1e-5)
    assert share["fused"][m_i] > share["fused"][e_i] > 0.1  # both members show, the heavier one more
    assert np.allclose(explain(ens, x, targets=0), maps["fused"])  # explain() of an ensemble is the fused map


def test_a_cnn_and_a_vit_member_give_maps_of_the_image_size():
    torch.manual_seed(0)
    ens = LateFusionEnsemble(members=["cfer_tiny", "vit_tiny_patch16_224"], img_sizes=[None, 32], num_classes=3)
    layers = member_target_layers(ens)
    assert list(layers) == ["cfer_tiny", "vit_tiny_patch16_224@32"]
    assert layers["cfer_tiny"] == (ens.members[0].backbone.cam_layer, None) and layers["vit_tiny_patch16_224@32"][1]
    x = torch.rand(2, 3, 40, 40)  # neither member's size: both resize inside their forward
    maps = explain_ensemble(ens, x)
    assert {k: v.shape for k, v in maps.items()} == {k: (2, 40, 40) for k in [*layers, "fused"]}
    assert all(v.min() >= 0 and v.max() <= 1 for v in maps.values())
    with torch.no_grad():
        predicted = ens.eval()(x).argmax(1).tolist()
    assert all(np.allclose(maps[k], v) for k, v in explain_ensemble(ens, x, targets=predicted).items())
    assert all(p.grad is None for p in ens.parameters())
    with pytest.raises(ValueError, match="one target layer per member"):
        find_target_layer(ens)
    with pytest.raises(ValueError, match="no heads"):
        explain_ensemble(LateFusionEnsemble(members=["cfer_tiny"], num_classes=0), x)
