import numpy as np
import torch


def test_the_probe_reads_separable_features_and_not_label_noise(load_benchmark):
    probe = load_benchmark("mae_linear_probe")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    centres = rng.normal(size=(3, 8)) * 4
    x = centres[y] + rng.normal(size=(120, 8))
    train, val = np.arange(0, 120, 2), np.arange(1, 120, 2)
    accs = probe.probe_accuracies(x[train], y[train], x[val], y[val], strengths=(0.1, 1.0))
    assert set(accs) == {0.1, 1.0} and min(accs.values()) > 0.95
    noise = rng.normal(size=(120, 8))  # features that say nothing of the labels
    assert max(probe.probe_accuracies(noise[train], y[train], noise[val], y[val]).values()) < 0.6


def test_pooled_features_are_one_row_per_face(load_benchmark):
    from cfer.data.base import FaceDataset
    from cfer.models.backbones import create_backbone

    probe = load_benchmark("mae_linear_probe")
    ds = FaceDataset(images=np.zeros((5, 24, 24, 1), np.uint8), labels=[0, 1, 0, 1, 0], classes=["happy", "sad"])
    model = create_backbone("cfer_tiny", in_chans=1, img_size=24)
    feats = probe.pooled_features(model, ds, batch_size=2)
    assert feats.shape == (5, model.num_features)
    assert np.allclose(feats[0], feats[4])  # the same face, the same features, whatever the batch
    assert not model.training and torch.is_grad_enabled()
