import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cfer.continual.plugins.distillation import BasicDistillationPlugin
from cfer.continual.plugins.logit_adjustment import LogitAdjustmentPlugin


def _strategy(logits, y):
    return SimpleNamespace(mb_output=logits, mb_y=y, _criterion=nn.CrossEntropyLoss(),
                           clock=SimpleNamespace(train_exp_counter=1))


def test_loss_becomes_prior_adjusted_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [0.0, 1.0, 3.0], [1.0, 1.0, 0.0]])
    y = torch.tensor([0, 0, 2, 1])
    strategy = _strategy(logits, y)
    plugin = LogitAdjustmentPlugin(tau=1.0)
    plugin.before_training_exp(strategy)
    plugin.after_forward(strategy)
    prior = torch.tensor([2 + 1, 1 + 1, 1 + 1], dtype=torch.float) / 7
    expected = nn.functional.cross_entropy(logits + torch.log(prior), y)
    assert strategy._criterion(logits, y).item() == pytest.approx(expected.item(), rel=1e-6)
    # Counts accumulate over the experience and reset at the next one.
    plugin.after_forward(strategy)
    assert plugin.counts.tolist() == [4, 2, 2]
    plugin.after_training_exp(strategy)  # evaluation sees the plain criterion
    assert strategy._criterion(logits, y).item() == pytest.approx(nn.functional.cross_entropy(logits, y).item())
    plugin.before_training_exp(strategy)
    assert plugin.counts is None
    with pytest.raises(ValueError, match="tau must be >= 0"):
        LogitAdjustmentPlugin(tau=-1)
    with pytest.raises(ValueError, match="tau must be >= 0"):
        LogitAdjustmentPlugin(tau=float("nan"))


def test_logit_adjustment_and_distillation_compose_in_either_order():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [0.0, 1.0, 3.0]])
    y = torch.tensor([0, 2, 1])
    losses = []
    for order in ("la_first", "kd_first"):
        strategy = _strategy(logits, y)
        la = LogitAdjustmentPlugin(tau=1.0)
        kd = BasicDistillationPlugin(teacher=nn.Linear(3, 2), feature_weight=0.0)
        plugins = [la, kd] if order == "la_first" else [kd, la]
        for p in plugins:
            p.before_training_exp(strategy)
        la.after_forward(strategy)
        losses.append(strategy._criterion(logits, y).item())
    g = 0.1 * math.exp(-1 / (1 + math.e))
    prior = torch.tensor([1 + 1, 1 + 1, 1 + 1], dtype=torch.float) / 6
    expected = (1 - g) * nn.functional.cross_entropy(logits + torch.log(prior), y).item()
    assert losses[0] == pytest.approx(expected, rel=1e-6) and losses[1] == pytest.approx(expected, rel=1e-6)
