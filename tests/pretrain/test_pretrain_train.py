import numpy as np
import pytest
import torch
from PIL import Image

from cfer.models import create_backbone, load_weights
from cfer.models.io import load_checkpoint
from cfer.pretrain import PretrainConfig, face_augmentation, lr_at, pretrain_mae, read_unlabelled

TINY = dict(arch="vit_face_micro", image_size=32, batch_size=12, warmup_epochs=1, decoder_dim=32, decoder_depth=1)


def test_warm_up_then_cosine_schedule():
    lrs = [lr_at(s, total=100, warmup=10, lr=1e-3, min_lr=1e-5) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))  # rising during the warm-up
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # falling after it
    assert lrs[55] == pytest.approx((1e-3 + 1e-5) / 2) and lrs[100] == pytest.approx(1e-5)


def test_pretraining_lowers_the_loss_and_leaves_the_global_generator_alone(faces32):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    result = pretrain_mae(images=faces32, config=PretrainConfig(**TINY, epochs=4, lr=3e-3))
    assert torch.equal(torch.random.get_rng_state(), before)
    losses = [h["loss"] for h in result.history]
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert losses[-1] < losses[0]
    assert all(h["images_per_s"] > 0 for h in result.history)


def test_checkpoint_and_resume_give_the_state_of_an_uninterrupted_run(faces32, tmp_path):
    config = PretrainConfig(**TINY, epochs=3)
    whole = pretrain_mae(images=faces32, config=config)

    class Kill(Exception):
        pass

    def kill_after_two(result):
        if len(result.history) == 2:
            raise Kill

    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(Kill):
        pretrain_mae(images=faces32, config=config, checkpoint=ckpt, on_epoch=kill_after_two)
    assert load_checkpoint(ckpt)["epoch"] == 2
    resumed = pretrain_mae(images=faces32, config=config, checkpoint=ckpt, resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(ckpt)["epoch"] == 3


def test_resume_refuses_another_config_or_other_data(faces32, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    pretrain_mae(images=faces32, config=PretrainConfig(**TINY, epochs=1), checkpoint=ckpt)
    with pytest.raises(ValueError, match="another config .*mask_ratio: 0.75"):
        pretrain_mae(images=faces32, config=PretrainConfig(**TINY, epochs=1, mask_ratio=0.5), checkpoint=ckpt,
                     resume=True)
    with pytest.raises(ValueError, match="trained on 36 faces, these are 20"):
        pretrain_mae(images=faces32[:20], config=PretrainConfig(**TINY, epochs=1), checkpoint=ckpt, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        pretrain_mae(images=faces32, config=PretrainConfig(**TINY), checkpoint=tmp_path / "none.pt", resume=True)


def test_the_encoder_file_loads_into_create_backbone_with_every_tensor_matched(faces32, tmp_path):
    result = pretrain_mae(images=faces32, config=PretrainConfig(**TINY, epochs=1))
    path = result.save_encoder(tmp_path / "encoder.pt")
    net = create_backbone("vit_face_micro", in_chans=1, img_size=32)
    info = load_weights(net, path, strict=True)
    assert info == {"missing": [], "unexpected": [], "dropped": [], "adapted": []}
    trained = result.model.encoder.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in net.state_dict().items())
    loaded = create_backbone("vit_face_micro", in_chans=1, img_size=32, weights=path)
    assert torch.equal(loaded.pos_embed, trained["pos_embed"])
    # at another input size the position embedding is resampled to the model's token grid
    bigger = create_backbone("vit_face_micro", in_chans=1, img_size=48, weights=path)
    assert bigger.pos_embed.shape == (1, 1 + 36, 32)
    assert torch.equal(bigger.blocks[0].attn.qkv.weight, trained["blocks.0.attn.qkv.weight"])
    assert bigger(torch.rand(2, 1, 48, 48)).shape == (2, 32)


def test_bad_inputs_are_refused_with_the_fix(faces32):
    with pytest.raises(ValueError, match=r"faces are \(32, 32\) pixels but config.image_size is 64.*--image-size"):
        pretrain_mae(images=faces32, config=PretrainConfig(arch="vit_face_micro", image_size=64))
    with pytest.raises(ValueError, match="expected uint8 images"):
        pretrain_mae(images=np.zeros((4, 32, 32), np.uint8), config=PretrainConfig(**TINY))
    with pytest.raises(ValueError, match="mask_ratio must lie in"):
        PretrainConfig(mask_ratio=0.0 - 0.1)
    with pytest.raises(ValueError, match="at least 2 faces"):
        pretrain_mae(images=faces32[:1], config=PretrainConfig(**TINY))
    with pytest.raises(TypeError, match="not a timm VisionTransformer"):
        pretrain_mae(images=faces32, config=PretrainConfig(**{**TINY, "arch": "cfer_tiny"}))


def test_face_augmentation_keeps_size_and_range_and_draws_per_image():
    aug = face_augmentation(image_size=32)
    x = torch.rand(1, 32, 32).expand(6, 1, 32, 32)
    from cfer.pretrain import augment_batch

    torch.manual_seed(0)
    y = augment_batch(x, transform=aug)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert len({round(float(v), 5) for v in y.sum((1, 2, 3))}) == 6  # each image its own draw
    assert torch.equal(face_augmentation(image_size=32, strength=0)(x[0]), x[0])
    with pytest.raises(ValueError, match="strength must be >= 0"):
        face_augmentation(image_size=32, strength=-1)


def test_unlabelled_folders_are_read_in_any_layout(tmp_path):
    rng = np.random.default_rng(0)
    for i, sub in enumerate(["", "a", "a/b"]):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / sub / f"f{i}.png")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    faces = read_unlabelled(tmp_path, image_size=32, channels=1)
    assert faces.shape == (3, 32, 32, 1) and faces.dtype == np.uint8
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read .*broken.jpg.*skip_invalid=True"):
        read_unlabelled(tmp_path, image_size=32)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert len(read_unlabelled(tmp_path, image_size=32, skip_invalid=True)) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        read_unlabelled(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no folder at"):
        read_unlabelled(tmp_path / "f0.png")


def test_a_grey_encoder_loads_into_a_colour_model_with_the_same_response_to_grey_faces(faces32, tmp_path):
    result = pretrain_mae(images=faces32, config=PretrainConfig(**TINY, epochs=1))
    path = result.save_encoder(tmp_path / "encoder.pt")
    grey = create_backbone("vit_face_micro", in_chans=1, img_size=32, weights=path).eval()
    rgb = create_backbone("vit_face_micro", in_chans=3, img_size=32, weights=path).eval()
    x = faces32[:4]
    with torch.no_grad():
        assert torch.allclose(rgb(x.expand(-1, 3, -1, -1)), grey(x), atol=1e-5)


def test_unlabelled_16_bit_faces_are_scaled_like_the_readers_scale_them(tmp_path):
    from PIL import Image

    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # a 16-bit grey PNG (mode I;16)
    face = read_unlabelled(tmp_path, image_size=32, channels=1)[0, :, :, 0]
    assert face.min() == 0 and face.max() >= 250  # a full 8-bit ramp, not clipped to white
    assert abs(int(face[16, 0]) - round(int(ramp[16, 0]) / 257)) <= 1
