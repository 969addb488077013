import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cfer.strategies.balance import LogitAdjustmentPlugin


def test_loss_becomes_prior_adjusted_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [0.0, 1.0, 3.0], [1.0, 1.0, 0.0]])
    y = torch.tensor([0, 0, 2, 1])
    plain = nn.functional.cross_entropy(logits, y)
    strategy = SimpleNamespace(mb_output=logits, mb_y=y, loss=plain + 0.25)  # 0.25: another term
    plugin = LogitAdjustmentPlugin(tau=1.0)
    plugin.before_training_exp(strategy)
    plugin.before_backward(strategy)
    prior = torch.tensor([2 + 1, 1 + 1, 1 + 1], dtype=torch.float) / 7
    expected = nn.functional.cross_entropy(logits + torch.log(prior), y) + 0.25
    assert strategy.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # Counts accumulate over the experience and reset at the next one.
    plugin.before_backward(SimpleNamespace(mb_output=logits, mb_y=y, loss=plain))
    assert plugin.counts.tolist() == [4, 2, 2]
    plugin.before_training_exp(strategy)
    assert plugin.counts is None
    with pytest.raises(ValueError, match="tau must be >= 0"):
        LogitAdjustmentPlugin(tau=-1)
    assert math.isfinite(strategy.loss.item())
