"""The clip model's per-stream losses (cfer.models.temporal_loss)."""

import copy

import pytest
import torch
from torch import nn

from cfer.cliplayout import ClipLayout
from cfer.models.ensemble_loss import criterion_for
from cfer.models.temporal import TemporalFusionNet
from cfer.models.temporal_loss import StreamCriterion, stream_loss, stream_subsets

LAY = ClipLayout(frames=4, image_size=8, channels=1, mel_bins=8, mel_steps=8, landmarks=4)


def net(**kw) -> TemporalFusionNet:
    torch.manual_seed(0)
    return TemporalFusionNet(**{**dict(streams=("motion", "audio"), layout=LAY, num_classes=4, dim=16, num_heads=2,
                                       stream_width=8, fusion="late"), **kw})


def task(n: int, g: torch.Generator, *, motion_noise: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes, told apart exactly by the audio and, through noise, by the landmarks."""
    mel_pattern = 5 * torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(1))
    lm_pattern = 0.3 * torch.randn(4, 4, 4, 2, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.stack([LAY.pack(frames=None, mel=mel_pattern[c] + 0.1 * torch.randn(8, 8, generator=g),
                              landmarks=(lm_pattern[c] + motion_noise * 0.3 * torch.randn(4, 4, 2, generator=g))
                              .clamp(-1, 1)) for c in y.tolist()])
    return x, y


def test_the_loss_is_the_fused_ce_plus_the_weighted_mean_ce_of_every_proper_subset_of_streams():
    lay = ClipLayout(frames=2, image_size=32, channels=1, mel_bins=8, mel_steps=8, landmarks=4)
    model = net(streams=("frames", "motion", "audio"), frame_encoder="cfer_tiny", layout=lay, modality_dropout=0.5,
                stream_loss=0.7).train()
    crit = criterion_for(model)
    assert isinstance(crit, StreamCriterion) and crit.weight == 0.7
    g = torch.Generator().manual_seed(0)
    x = torch.stack([lay.pack(frames=torch.rand(2, 1, 32, 32, generator=g),
                              mel=torch.randn(8, 8, generator=g) if i != 3 else None,  # clip 3 has no audio
                              landmarks=torch.rand(2, 4, 2, generator=g)) for i in range(8)])
    y = torch.arange(8) % 4
    out = model(x)
    present = model.presence(x)  # a new modality-dropout draw: the training forward's own is not kept
    fused, feats, usable = model.last_stream_features
    subsets = stream_subsets(3)  # frames, motion, audio, then the pairs
    logits = model.forward_head(feats)
    assert logits.shape == (8, 6, 4) and usable.shape == (8, 6) and present.shape == (8, 3)
    # a subset counts where the clip has all its streams, whatever modality dropout left out of the fused output
    assert usable[3].tolist() == [True, True, False, True, False, False] and usable[[0, 1, 2, 4, 5, 6, 7]].all()
    # late fusion: a pair's logits are the mean of its two streams' own logits
    for k in range(3, 6):
        members = subsets[k].nonzero().flatten()
        assert torch.allclose(logits[:, k], logits[:, members].mean(1), atol=1e-5)
    ce = [nn.functional.cross_entropy(logits[b, k][None], y[b][None]) for b in range(8) for k in range(6)
          if usable[b, k]]
    want = nn.functional.cross_entropy(out, y) + 0.7 * torch.stack(ce).sum() / 8  # each subset weighs as the fused
    assert torch.allclose(crit(out, y), want, atol=1e-5)
    assert set(crit.last) == {"fused", "streams", "total"}
    # what the caller adds to the fused logits (logit adjustment's prior offset) reaches every subset's
    shift = torch.tensor([0.0, 1.0, -2.0, 0.5])
    ce = [nn.functional.cross_entropy((logits[b, k] + shift)[None], y[b][None]) for b in range(8) for k in range(6)
          if usable[b, k]]
    want = nn.functional.cross_entropy(out + shift, y) + 0.7 * torch.stack(ce).sum() / 8
    assert torch.allclose(crit(out + shift, y), want, atol=1e-5)


def test_stream_subsets_are_the_non_empty_proper_subsets_smallest_first():
    assert stream_subsets(2).tolist() == [[True, False], [False, True]]
    three = stream_subsets(3)
    assert three.shape == (6, 3) and three.sum(1).tolist() == [1, 1, 1, 2, 2, 2]
    assert len({tuple(r) for r in three.tolist()}) == 6
    with pytest.raises(ValueError, match="at least 2 streams"):
        stream_subsets(1)


def test_it_trains_the_clip_model_inside_the_growing_classifier():
    """train_teacher and the continual strategies hold the clip model in cfer's growing
    classifier (the backbone built with num_classes=0): the criterion reads it there."""
    from cfer.continual.growing import build_model

    model = build_model(arch="temporal_tiny", num_classes=4, in_chans=1, img_size=8,
                        options=dict(layout=LAY, streams=("motion", "audio"), fusion="late", stream_loss=2.0)).train()
    crit = criterion_for(model)
    assert isinstance(crit, StreamCriterion) and crit.weight == 2.0
    x, y = task(6, torch.Generator().manual_seed(0))
    out = model(x)
    fused, feats, present = model.backbone.last_stream_features
    logits = model.head(feats)  # (6, 2, 4): the growing head on each stream's features
    want = nn.functional.cross_entropy(out, y) + 2.0 * stream_loss(logits, present, y)
    assert torch.allclose(crit(out, y), want, atol=1e-5)
    crit(out, y).backward()
    assert model.head.classifier.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.backbone.encoders["motion"].parameters())
    # the continual stream copies the student after training: the kept graph tensors stay behind
    model(x)
    twin = copy.deepcopy(model)
    assert twin.backbone.last_stream_features is None and model.backbone.last_stream_features is not None
    assert torch.equal(twin.eval()(x), model.eval()(x))


def test_without_stream_features_it_is_plain_cross_entropy_and_misuse_names_the_fix():
    model = net(stream_loss=1.0).eval()  # evaluation: no stream features kept
    x, y = task(4, torch.Generator().manual_seed(0))
    out = model(x)
    assert model.last_stream_features is None
    assert torch.allclose(StreamCriterion(model)(out, y), nn.functional.cross_entropy(out, y))
    assert isinstance(criterion_for(net(stream_loss=0.0)), nn.CrossEntropyLoss)
    assert isinstance(criterion_for(net(stream_loss=1.0, num_classes=0)), nn.CrossEntropyLoss)  # no head at all
    assert isinstance(criterion_for(net(stream_loss=1.0, streams=("audio",))), nn.CrossEntropyLoss)  # one stream
    with pytest.raises(TypeError, match="TemporalFusionNet with several streams"):
        StreamCriterion(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="stream_loss must be a finite weight >= 0"):
        net(stream_loss=-1.0)
    model.train()
    model(task(4, torch.Generator().manual_seed(1))[0])
    with pytest.raises(RuntimeError, match="right after model"):
        StreamCriterion(model)(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits \(B, K, C\)"):
        stream_loss(torch.zeros(2, 4), torch.ones(2, 1, dtype=torch.bool), torch.zeros(2, dtype=torch.long))


def _motion_alone_after_training(weight: float, seed: int) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    xt, yt = task(256, g)
    xv, yv = task(256, g)
    torch.manual_seed(seed)
    model = net(stream_loss=weight)
    crit = criterion_for(model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(20):
        model.train()
        for b in torch.randperm(256, generator=g).split(32):
            opt.zero_grad()
            crit(model(xt[b]), yt[b]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        fused = (model(xv).argmax(1) == yv).float().mean().item()
        with model.dropping({"audio"}):
            motion = (model(xv).argmax(1) == yv).float().mean().item()
    return fused, motion


def test_the_stream_loss_keeps_a_weaker_stream_learning_beside_a_stronger_one():
    """The audio alone solves the task; on the fused loss alone the landmarks then stop learning.
    With each stream's own loss the model is as good with the audio and better without it."""
    gains = []
    for seed in (0, 1):
        fused_only, with_streams = _motion_alone_after_training(0.0, seed), _motion_alone_after_training(1.0, seed)
        assert fused_only[0] > 0.95 and with_streams[0] > 0.95  # both solve the task with the audio
        gains.append(with_streams[1] - fused_only[1])
    assert min(gains) > 0.03 and sum(gains) / 2 > 0.06, gains
