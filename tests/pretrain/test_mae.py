import pytest
import timm
import torch

import cfer.models  # noqa: F401 - registers the face ViTs
from cfer.pretrain import MaskedAutoencoder, kept_tokens, patchify, unpatchify


def _mae(**kwargs):
    torch.manual_seed(0)
    return MaskedAutoencoder(encoder=timm.create_model("vit_face_micro", num_classes=0, img_size=32, in_chans=1),
                             **kwargs)


def test_patchify_round_trips_and_orders_patches_row_major():
    x = torch.rand(2, 3, 32, 32)
    p = patchify(x, 8)
    assert p.shape == (2, 16, 192)
    assert torch.equal(unpatchify(p, 8, grid=(4, 4), channels=3), x)
    assert torch.equal(p[0, 5].reshape(8, 8, 3), x[0, :, 8:16, 8:16].permute(1, 2, 0))  # row 1, column 1


@pytest.mark.parametrize("ratio,kept", [(0.75, 4), (0.5, 8), (0.0, 16), (0.99, 1)])
def test_masking_keeps_exactly_the_right_number_of_tokens_before_the_blocks(ratio, kept):
    mae = _mae(mask_ratio=ratio)
    seen = []
    hook = mae.encoder.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    out = mae(torch.rand(3, 1, 32, 32))
    hook.remove()
    assert kept_tokens(16, ratio) == kept
    assert seen == [torch.Size([3, 1 + kept, 32])]  # class token + the kept patches reach the first block
    assert out.mask.shape == (3, 16) and out.mask.sum(1).tolist() == [16 - kept] * 3
    assert set(out.mask.unique().tolist()) <= {0.0, 1.0}


def test_masks_differ_between_images_and_draws():
    mae = _mae()
    a, b = mae(torch.rand(4, 1, 32, 32)).mask, mae(torch.rand(4, 1, 32, 32)).mask
    assert not torch.equal(a, b) and len({tuple(m.tolist()) for m in a}) > 1


def test_norm_pix_target_is_each_patch_standardised():
    mae = _mae()
    x = torch.rand(2, 1, 32, 32)
    t = mae.target(x)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(2, 16), atol=1e-3)
    plain = _mae(norm_pix_loss=False)
    assert torch.equal(plain.target(x), patchify(x, 8))


def test_loss_is_on_masked_patches_only():
    mae = _mae()
    x = torch.rand(2, 1, 32, 32)
    out = mae(x)
    target = mae.target(x)
    # a prediction that is perfect on the masked patches and garbage on the seen ones costs nothing
    pred = torch.where(out.mask[:, :, None].bool(), target, torch.full_like(target, 50.0))
    assert mae.loss(x, pred, out.mask).item() == pytest.approx(0.0, abs=1e-8)
    pred = torch.where(out.mask[:, :, None].bool(), target + 1.0, target)
    assert mae.loss(x, pred, out.mask).item() == pytest.approx(1.0, rel=1e-5)


def test_loss_decreases_over_a_few_steps_on_a_fixed_batch(faces32):
    mae = _mae()
    opt = torch.optim.AdamW(mae.parameters(), lr=2e-3)
    x = faces32[:16]
    losses = []
    for step in range(30):
        torch.manual_seed(step % 3)  # three masks in turn, so the decrease is not one mask memorised
        loss = mae(x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3])


def test_reconstruction_shows_the_input_where_patches_were_seen():
    mae = _mae().eval()
    x = torch.rand(2, 1, 32, 32)
    torch.manual_seed(1)
    masked, recon = mae.reconstruct(x)
    torch.manual_seed(1)
    mask = mae(x).mask
    seen = (1 - mask)[:, :, None].expand(-1, -1, 64)
    assert torch.allclose(patchify(recon, 8)[seen.bool()], patchify(x, 8)[seen.bool()], atol=1e-6)
    assert torch.all(patchify(masked, 8)[~seen.bool()] == 0.5)


def test_bad_inputs_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="not a timm VisionTransformer.*vit_face_tiny"):
        MaskedAutoencoder(encoder=timm.create_model("cfer_tiny", num_classes=0))
    with pytest.raises(ValueError, match=r"mask_ratio must lie in \[0, 1\)"):
        _mae(mask_ratio=1.0)
    with pytest.raises(ValueError, match=r"expected images \(B, 1, 32, 32\).*img_size and in_chans"):
        _mae()(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="image side 50 is not a multiple of the encoder's 8-pixel patches: use 48 or 56"):
        MaskedAutoencoder(encoder=timm.create_model("vit_face_micro", num_classes=0, img_size=50))
