"""The cosine decay within each experience: the rates a real cfer stream trains with."""

import math

import pytest
import torch
from avalanche.core import SupervisedPlugin

from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.plugins.step_schedule import StepCosinePlugin
from cfer.continual.runner import run_stream


class _Rates(SupervisedPlugin):
    """Records the rate each iteration trains with, per experience (after every other
    plugin's ``before_training_iteration``)."""

    def __init__(self):
        super().__init__()
        self.by_exp: list[list[float]] = []
        self.restored: list[float] = []

    def before_training_exp(self, strategy, **kwargs):
        self.by_exp.append([])

    def before_backward(self, strategy, **kwargs):
        self.by_exp[-1].append(strategy.optimizer.param_groups[0]["lr"])

    def after_training_exp(self, strategy, **kwargs):
        self.restored.append(strategy.optimizer.param_groups[0]["lr"])


def _expected(n, peak, floor, warmup=0):
    out = []
    for i in range(n):
        if i < warmup:
            out.append(peak * (i + 1) / warmup)
            continue
        t = min(1.0, (i - warmup) / max(1, n - warmup))
        out.append(floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * t)))
    return out


@pytest.mark.parametrize("warmup_epochs", [0.0, 1.0])
def test_each_step_decays_from_the_peak_in_a_cfer_stream(tiny_stream, warmup_epochs):
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    rates = _Rates()
    schedule = StepCosinePlugin(min_fraction=0.1, warmup_epochs=warmup_epochs)
    # the schedule before the epochs plugin: it must still count the epochs that plugin sets
    strategy = make_strategy("cfer", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=2e-3),
                             train_epochs=1, train_mb_size=16, memory_size=30,
                             total_classes=len(tiny_stream.class_names),
                             plugins=[schedule, BasicEpochsPlugin(basic_epochs=3, later_epochs=2), rates],
                             cfer=CferConfig())
    run_stream(strategy, tiny_stream)
    assert len(rates.by_exp) == len(tiny_stream.train_stream) >= 2
    for k, seen in enumerate(rates.by_exp):
        epochs = 3 if k == 0 else 2
        assert len(seen) % epochs == 0  # every epoch has the same number of mini-batches
        warmup = round(warmup_epochs * len(seen) / epochs)
        assert seen == pytest.approx(_expected(len(seen), 2e-3, 2e-4, warmup), rel=1e-9)
        assert seen[-1] < 0.2 * 2e-3 + 2e-4  # it ends near the floor, each step
    assert rates.restored == [2e-3] * len(rates.by_exp)  # the user's rate is back after each step


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_fraction"):
        StepCosinePlugin(min_fraction=1.5)
    with pytest.raises(ValueError, match="warmup_epochs"):
        StepCosinePlugin(warmup_epochs=-1)
