"""A clip model teaching its stream subsets on unlabelled clips (cfer.continual.stream_distillation)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from cfer.cliplayout import ClipLayout
from cfer.continual.stream_distillation import distil_streams_unlabelled, pool_logits
from cfer.models.temporal import TemporalFusionNet
from cfer.models.temporal_loss import StreamCriterion

LAY = ClipLayout(frames=4, image_size=8, channels=1, mel_bins=8, mel_steps=8, landmarks=4)


class Clips(torch.utils.data.Dataset):
    """Packed clips with ``labels``, as cfer's readers give them."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.labels = x, np.asarray(y)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.labels[i])


def clips(n: int, seed: int) -> Clips:
    """Four classes: the voice tells them apart exactly, the landmarks only through noise."""
    g = torch.Generator().manual_seed(seed)
    mel = 5 * torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(1))
    marks = 0.3 * torch.randn(4, 4, 4, 2, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.stack([LAY.pack(frames=None, mel=mel[c] + 0.1 * torch.randn(8, 8, generator=g),
                              landmarks=(marks[c] + 0.45 * torch.randn(4, 4, 2, generator=g)).clamp(-1, 1))
                     for c in y.tolist()])
    return Clips(x, y)


def trained(data: Clips, steps: int = 60) -> TemporalFusionNet:
    torch.manual_seed(0)
    model = TemporalFusionNet(streams=("motion", "audio"), layout=LAY, num_classes=4, dim=16, num_heads=2,
                              stream_width=8, fusion="late", stream_loss=1.0)
    crit, opt = StreamCriterion(model), torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = data.x, torch.as_tensor(data.labels)
    for _ in range(steps):
        loss = crit(model.train()(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def motion_gap(model: TemporalFusionNet, pool: Clips) -> float:
    """Mean KL from the full model's output to the motion stream's alone, on ``pool``."""
    with torch.no_grad():
        full = nn.functional.log_softmax(model.eval()(pool.x), 1)
        with model.dropping({"audio"}):
            motion = nn.functional.log_softmax(model(pool.x), 1)
    return float((full.exp() * (full - motion)).sum(1).mean())


def test_the_stream_left_on_its_own_moves_towards_the_full_models_answers_on_the_unlabelled_clips():
    train, pool = clips(32, seed=0), clips(96, seed=1)
    model = trained(train)
    teacher = pool_logits(model, pool)
    with torch.no_grad():
        assert torch.allclose(teacher, model.eval()(pool.x), atol=1e-5)  # the teacher: the model as it came in
    before = motion_gap(model, pool)
    history = distil_streams_unlabelled(model=model, pool=pool, train=train, epochs=6, lr=3e-3, batch_size=16)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6] and all("val" not in h for h in history)
    assert history[-1]["unlabelled"] < history[0]["unlabelled"]
    assert motion_gap(model, pool) < 0.7 * before  # the voice's answers reached the landmarks
    assert not model.training  # its mode restored


def test_with_val_the_best_state_is_kept_and_the_model_comes_back_unchanged_when_no_epoch_beats_it():
    train, pool = clips(32, seed=0), clips(48, seed=1)
    model = trained(train, steps=150)
    val = clips(32, seed=2)
    from cfer.continual.evaluation import evaluate

    start_acc, start = evaluate(model, val), copy.deepcopy(model.state_dict())
    assert start_acc > 0.9
    history = distil_streams_unlabelled(model=model, pool=pool, train=train, val=val, epochs=2, lr=1.0,
                                        batch_size=16)  # a step size that wrecks the model
    assert history[0] == {"epoch": 0, "val": start_acc} and max(h["val"] for h in history[1:]) < start_acc
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_inputs_are_checked_at_the_door():
    train = clips(8, seed=0)
    one = TemporalFusionNet(streams=("motion",), layout=LAY, num_classes=4, dim=16, num_heads=2, stream_width=8)
    with pytest.raises(TypeError, match="several streams and stream_loss > 0"):
        distil_streams_unlabelled(model=one, pool=train, train=train)
    model = TemporalFusionNet(streams=("motion", "audio"), layout=LAY, num_classes=4, dim=16, num_heads=2,
                              stream_width=8, fusion="late", stream_loss=1.0)
    with pytest.raises(ValueError, match="pool has no clip"):
        distil_streams_unlabelled(model=model, pool=Clips(train.x[:0], train.labels[:0]), train=train)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        distil_streams_unlabelled(model=model, pool=train, train=train, epochs=0)
    with pytest.raises(ValueError, match="lr and temperature must be > 0"):
        distil_streams_unlabelled(model=model, pool=train, train=train, temperature=0)
