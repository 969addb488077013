"""Early stopping within each step: balanced scores, stopping after `patience`, the best epoch kept."""

import copy

import pytest
import torch
from avalanche.core import SupervisedPlugin

from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.early_stopping import (
    StepEarlyStoppingPlugin,
    balanced_accuracy,
    class_mean_balanced_accuracy,
)
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.runner import run_stream


class _Fixed(torch.nn.Module):
    """Predicts class 0 for x[0] > 0, else class 1."""

    def forward(self, x):
        return torch.stack([x[:, 0], -x[:, 0]], 1)


def test_balanced_accuracy_weighs_every_class_the_same(make_tensor_dataset):
    # class 0: 8 items, all right; class 1: 2 items, one right -> (1 + 0.5) / 2, not 9 / 10
    x = torch.tensor([[1.0]] * 8 + [[-1.0], [1.0]])
    y = [0] * 8 + [1, 1]
    assert balanced_accuracy(_Fixed(), make_tensor_dataset(x, y)) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no validation items"):
        balanced_accuracy(_Fixed(), make_tensor_dataset(torch.zeros(0, 1), []))


def test_class_mean_score_uses_the_nearest_mean_of_the_pre_logit_features(make_tensor_dataset):
    net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(2, 3))  # features: the input itself
    reference = make_tensor_dataset(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]]), [0, 0, 1, 2])
    val = make_tensor_dataset(torch.tensor([[2.0, 0.1], [0.1, 3.0], [-1.0, 0.2], [0.2, 1.0]]), [0, 1, 2, 2])
    # items 0-2 nearest their own class's mean; the last class-2 item lies nearest class 1 -> (1 + 1 + 0.5) / 3
    assert class_mean_balanced_accuracy(net, val, reference=reference) == pytest.approx(2.5 / 3)
    with pytest.raises(ValueError, match=r"classes \[2\] have validation items but no training"):
        class_mean_balanced_accuracy(net, val, reference=make_tensor_dataset(torch.eye(2), [0, 1]))


def test_bad_settings_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="patience must be >= 1"):
        StepEarlyStoppingPlugin(val_stream=[], patience=0)
    with pytest.raises(ValueError, match="min_delta"):
        StepEarlyStoppingPlugin(val_stream=[], min_delta=-0.1)
    with pytest.raises(ValueError, match="predictor must be one of"):
        StepEarlyStoppingPlugin(val_stream=[], predictor="head")


class _Snapshots(SupervisedPlugin):
    """The model's weights after every training epoch and at the end of every step."""

    def __init__(self):
        super().__init__()
        self.epochs, self.ends = [], []

    def before_training_exp(self, strategy, **kwargs):
        self.epochs.append([])

    def after_training_epoch(self, strategy, **kwargs):
        self.epochs[-1].append(copy.deepcopy(strategy.model.state_dict()))

    def after_training_exp(self, strategy, **kwargs):
        self.ends.append(copy.deepcopy(strategy.model.state_dict()))


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def _strategy(stream, plugins, *, epochs=5, cfer=CferConfig()):
    model = build_model(arch="cfer_tiny", num_classes=stream.n_basic, img_size=24, seed=0)
    torch.manual_seed(0)
    return make_strategy("cfer", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=2e-3),
                         train_epochs=epochs, train_mb_size=16, memory_size=30,
                         total_classes=len(stream.class_names), cfer=cfer,
                         plugins=[BasicEpochsPlugin(basic_epochs=1, later_epochs=epochs), *plugins])


def test_a_step_stops_after_patience_epochs_without_gain_and_ends_on_its_best_epoch(tiny_stream, monkeypatch):
    planned = iter([0.5,                      # basic step: its one epoch
                    0.2, 0.6, 0.6, 0.55,      # step 1: best at epoch 2, no gain at 3 and 4 -> stops after 4
                    0.1, 0.2, 0.3, 0.4, 0.5])  # step 2: improves every epoch -> all 5, the last kept
    es = StepEarlyStoppingPlugin(val_stream=tiny_stream.val_stream, patience=2)
    monkeypatch.setattr(es, "_score", lambda strategy: next(planned))
    snaps = _Snapshots()
    # Weight aligning off: it rescales the head at the end of a step, before the snapshots' plugin looks.
    # The snapshots first: each epoch's weights are taken before the early stopping's callback.
    strategy = _strategy(tiny_stream, [snaps, es], cfer=CferConfig(weight_aligning=False))
    torch.manual_seed(0)
    run_stream(strategy, tiny_stream, evaluate_on="val")
    assert [(h["epochs_run"], h["best_epoch"], h["restored"]) for h in es.history] == [(1, 1, False), (4, 2, True),
                                                                                         (5, 5, False)]
    assert [len(e) for e in snaps.epochs] == [1, 4, 5]
    # The restored weights are the best epoch's, and the later plugins' after_training_exp saw them.
    assert _same(snaps.ends[1], snaps.epochs[1][1]) and not _same(snaps.ends[1], snaps.epochs[1][3])
    assert _same(snaps.ends[2], snaps.epochs[2][4])


def test_without_restoring_and_stopping_the_run_is_the_run_without_the_plugin(tiny_stream):
    """Scoring every epoch (nearest class means over the step's items and the memory) reads
    data but leaves torch's random stream alone: the training is the same to the bit."""
    ends = []
    for plugins in ([], [StepEarlyStoppingPlugin(val_stream=tiny_stream.val_stream, patience=10, restore_best=False,
                                                 predictor="class_means")]):
        snaps = _Snapshots()
        strategy = _strategy(tiny_stream, [*plugins, snaps], epochs=2)
        torch.manual_seed(0)
        run_stream(strategy, tiny_stream, evaluate_on="val")
        ends.append(snaps.ends[-1])
        if plugins:
            scores = [h["scores"] for h in plugins[0].history]
            assert [len(s) for s in scores] == [1, 2, 2] and all(0 <= v <= 1 for s in scores for v in s)
    assert _same(ends[0], ends[1])


def test_a_stream_without_a_validation_experience_for_the_step_is_refused(tiny_stream):
    es = StepEarlyStoppingPlugin(val_stream=list(tiny_stream.val_stream)[:1], patience=1)
    strategy = _strategy(tiny_stream, [es], epochs=1)
    with pytest.raises(ValueError, match="experience 1 has no validation experience"):
        run_stream(strategy, tiny_stream)
