import torch


def test_the_decoder_rebuilds_the_image_size_from_the_trunks_map(load_benchmark):
    probe = load_benchmark("cnn_mim_probe")
    assert probe.decoder(256, 2, 48, 1)(torch.rand(3, 256, 2, 2)).shape == (3, 1, 48, 48)  # resemotenet_slim at 48 px
    assert probe.decoder(64, 4, 32, 3)(torch.rand(2, 64, 4, 4)).shape == (2, 3, 32, 32)


def test_the_loss_counts_the_masked_patches_only_against_normalised_pixels(load_benchmark):
    probe = load_benchmark("cnn_mim_probe")
    x = torch.rand(2, 1, 16, 16)
    patches = x.unfold(2, 8, 8).unfold(3, 8, 8)
    target = (patches - patches.mean((-1, -2), keepdim=True)) / patches.var((-1, -2), keepdim=True).add(1e-6).sqrt()
    perfect = target.permute(0, 1, 2, 4, 3, 5).reshape(2, 1, 16, 16)  # the normalised patches back in place
    mask = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1]])
    assert probe.masked_loss(perfect, x, mask, 8) < 1e-10
    wrong = perfect.clone()
    wrong[0, :, 8:, 8:] += 3.0  # patch 3 of face 0: not masked, does not count
    assert probe.masked_loss(wrong, x, mask, 8) < 1e-10
    wrong[1, :, 8:, 8:] += 2.0  # patch 3 of face 1: masked, error 4 per pixel, one of the two masked patches
    assert abs(float(probe.masked_loss(wrong, x, mask, 8)) - 2.0) < 1e-5
