import math

import pytest
import torch
from torch import nn

from cfer.continual.factory import make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.distillation import (
    BasicDistillationPlugin,
    feature_distillation,
    gamma_schedule,
    logit_distillation,
)
from cfer.continual.runner import run_stream


def test_gamma_schedule_is_the_published_one():
    assert gamma_schedule(0) == pytest.approx(0.1)
    assert gamma_schedule(3) == pytest.approx(0.1 * math.exp(-3 / (1 + math.e)))
    assert gamma_schedule(2, gamma0=0.5) == pytest.approx(0.5 * math.exp(-2 / (1 + math.e)))


def test_logit_distillation_equals_the_formula_by_hand():
    s = torch.tensor([[2.0, 0.5, -1.0, 0.3], [0.1, 0.2, 0.3, 1.5]])
    t = torch.tensor([[1.0, 3.0], [-2.0, 0.5]])  # two basic outputs, padded with zeros
    T = 3.0
    expected = 0.0
    for i in range(2):
        tp = torch.tensor([t[i, 0], t[i, 1], 0.0, 0.0]) / T
        p = torch.exp(tp) / torch.exp(tp).sum()
        logq = s[i] / T - torch.log(torch.exp(s[i] / T).sum())
        expected += -(p * logq).sum() / 2
    assert logit_distillation(s, t, temperature=T).item() == pytest.approx(expected.item(), rel=1e-6)
    assert logit_distillation(s, t, temperature=T, t_squared=True).item() == pytest.approx(9 * expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="more than the student's"):
        logit_distillation(t, s)
    # Masked (-1000) student units stay finite.
    masked = s.clone()
    masked[:, 3] = -1000.0
    assert torch.isfinite(logit_distillation(masked, t))


def test_feature_distillation_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert feature_distillation(a, b).item() == pytest.approx(((1 + 1) + (0 + 1)) / 4)
    assert feature_distillation(a, b, kind="cosine").item() == pytest.approx(((1 - 0) + (1 - 1)) / 2)
    with pytest.raises(ValueError, match="'mse' or 'cosine'"):
        feature_distillation(a, b, kind="l1")


class _Probe(BasicDistillationPlugin):
    """Records the strategy's CE and the plugin's total at every backward."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.records = []

    def before_backward(self, strategy, **kwargs):
        ce = nn.functional.cross_entropy(strategy.mb_output, strategy.mb_y).detach()  # the plain criterion
        x, out = strategy.mb_x.detach(), strategy.mb_output.detach()
        super().before_backward(strategy, **kwargs)
        if self.teacher is not None:
            self.records.append((strategy.clock.train_exp_counter, ce, x, out, strategy.loss.detach().clone()))


def _strategy(plugin, stream, epochs=1):
    model = build_model(arch="cfer_tiny", num_classes=stream.n_basic, img_size=24, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    s = make_strategy("naive", model=model, optimizer=opt, train_epochs=epochs, train_mb_size=16, plugins=[plugin])
    return model, s


def test_plugin_loss_is_the_formula_and_callbacks_fire(tiny_stream):
    plugin = _Probe(feature_weight=0.0)
    model, strategy = _strategy(plugin, tiny_stream)
    run_stream(strategy, tiny_stream)
    n = tiny_stream.n_steps
    assert plugin.calls["after_training_exp"] == n and plugin.calls["before_training_exp"] == n
    assert plugin.calls["before_backward"] > n
    assert plugin.records, "distillation never ran after the basic step"
    for step, ce, x, out, total in plugin.records[:5]:
        with torch.no_grad():
            t = plugin.teacher(x)
        g = 0.1 * math.exp(-step / (1 + math.e))
        expected = (1 - g) * ce + g * logit_distillation(out, t, temperature=3.0)
        assert total.item() == pytest.approx(expected.item(), rel=1e-5)
        assert step >= 1


def test_teacher_is_frozen_and_the_projection_is_trained(tiny_stream):
    plugin = BasicDistillationPlugin(feature_weight=1.0)
    model, strategy = _strategy(plugin, tiny_stream, epochs=2)
    strategy.train(tiny_stream.train_stream[0])
    strategy.train(tiny_stream.train_stream[1])
    teacher_state = {k: v.clone() for k, v in plugin.teacher.state_dict().items()}
    assert all(not p.requires_grad for p in plugin.teacher.parameters()) and not plugin.teacher.training
    proj = plugin.projection
    assert isinstance(proj, nn.Linear) and not any(n.startswith("cfer_") for n, _ in model.named_modules())
    in_opt = {id(p) for g in strategy.optimizer.param_groups for p in g["params"]}
    assert id(proj.weight) in in_opt
    w0 = proj.weight.detach().clone()
    strategy.train(tiny_stream.train_stream[2])
    assert not torch.equal(w0, proj.weight)
    assert all(torch.equal(v, plugin.teacher.state_dict()[k]) for k, v in teacher_state.items())
    assert plugin.last["feat"] >= 0 and "kd" in plugin.last


def test_a_given_teacher_is_copied_and_frozen():
    teacher = build_model(arch="cfer_tiny", num_classes=6, seed=1)
    plugin = BasicDistillationPlugin(teacher=teacher)
    assert plugin.teacher is not teacher and all(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match="temperature must be > 0"):
        BasicDistillationPlugin(temperature=0)
    with pytest.raises(ValueError, match="gamma0 must lie in"):
        BasicDistillationPlugin(gamma0=2)


def test_first_step_zero_reproduces_the_reference_indexing(tiny_stream):
    plugin = _Probe(feature_weight=0.0, first_step=0)
    model, strategy = _strategy(plugin, tiny_stream)
    run_stream(strategy, tiny_stream)
    first = [r for r in plugin.records if r[0] == 1]  # records hold Avalanche's experience counter
    assert first and plugin.weight(0) == pytest.approx(0.1)
    step, ce, x, out, total = first[0]
    with torch.no_grad():
        t = plugin.teacher(x)
    expected = 0.9 * ce + 0.1 * logit_distillation(out, t, temperature=3.0)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="first_step must be >= 0"):
        BasicDistillationPlugin(first_step=-1)
