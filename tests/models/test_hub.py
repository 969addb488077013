"""Hub weights through timm's own loading, offline, from a checkpoint written into a
temporary Hugging Face cache (``$HF_HOME/hub/models--ORG--NAME/snapshots/REV/``); nothing
is downloaded."""

import pytest
import timm
import torch
from timm.models._hub import save_for_hf

from cfer.models import HubWeightsError, create_backbone, is_hub_weights

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A temporary HF_HOME whose cache the hub client reads, offline."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def publish(repo: str, model: torch.nn.Module) -> dict:
        org, name = repo.split("/")
        root = tmp_path / "hub" / f"models--{org}--{name}"
        snap = root / "snapshots" / REV
        snap.mkdir(parents=True)
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text(REV)
        save_for_hf(model, str(snap), safe_serialization=True)  # model.safetensors + config.json, as timm pushes
        return {k: v.clone() for k, v in model.state_dict().items()}

    return publish


def _published_test_vit(hub, repo="timm/test_vit.r160_in1k"):
    torch.manual_seed(0)
    return hub(repo, timm.create_model("test_vit", num_classes=1000))


def test_pretrained_true_loads_the_cached_default_weights_offline_adapting_channels_head_and_grid(hub):
    state = _published_test_vit(hub)
    net = create_backbone("test_vit", pretrained=True, in_chans=1, img_size=64)
    own = net.state_dict()
    assert torch.equal(own["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])
    # RGB patch embedding summed into one grey channel, by timm's adapt_input_conv
    assert torch.allclose(own["patch_embed.proj.weight"], state["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert net.num_classes == 0 and "head.weight" not in own  # the 1000-class head is dropped
    assert own["pos_embed"].shape[1] == 1 + (64 // 16) ** 2  # 160-px positions resampled to 64 px
    assert net(torch.rand(2, 1, 64, 64)).shape == (2, net.num_features)


def test_hf_hub_weights_and_timm_tags_load_into_the_named_architecture(hub):
    face = _published_test_vit(hub, repo="someone/face-vit")
    tagged = _published_test_vit(hub)
    net = create_backbone("test_vit", weights="hf-hub:someone/face-vit", img_size=160)
    assert torch.equal(net.state_dict()["blocks.0.mlp.fc1.weight"], face["blocks.0.mlp.fc1.weight"])
    net = create_backbone("test_vit", weights="test_vit.r160_in1k", img_size=160)
    assert torch.equal(net.state_dict()["norm.weight"], tagged["norm.weight"])
    net = create_backbone("hf-hub:someone/face-vit", pretrained=True)  # the architecture from config.json
    assert type(net).__name__ == "VisionTransformer" and net.num_classes == 0
    assert is_hub_weights("hf-hub:someone/face-vit") and is_hub_weights("test_vit.r160_in1k")
    assert not is_hub_weights("encoder.pt") and not is_hub_weights("test_vit")


def test_offline_without_a_cached_copy_says_how_to_get_the_file_and_pass_it(hub):
    with pytest.raises(HubWeightsError, match=r"timm/resnet18\.a1_in1k.*HF_HUB_OFFLINE=1.*hf download "
                                              r"timm/resnet18\.a1_in1k model\.safetensors.*weights='DIR/model"):
        create_backbone("resnet18", pretrained=True)
    with pytest.raises(HubWeightsError, match="'nobody/nothing'.*--weights DIR/model.safetensors"):
        create_backbone("resnet18", weights="hf-hub:nobody/nothing")


def test_bad_hub_requests_are_refused_with_the_fix(hub):
    with pytest.raises(ValueError, match="timm tag of 'resnet50', not of 'resnet18': give --arch resnet50"):
        create_backbone("resnet18", weights="resnet50.a1_in1k")
    with pytest.raises(ValueError, match="hf-hub:ORG/NAME"):
        create_backbone("resnet18", weights="hf-hub:no-slash")
    with pytest.raises(ValueError, match="pretrained=True loads hub weights.*give one of them"):
        create_backbone("resnet18", pretrained=True, weights="local.pt")
    with pytest.raises(ValueError, match="cfer's own models and has no hub weights"):
        create_backbone("resemotenet_slim", weights="hf-hub:someone/face-vit")
