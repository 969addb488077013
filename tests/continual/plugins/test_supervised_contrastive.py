"""The supervised contrastive term: the loss against its formula computed by hand, and the
plugin in a real cfer stream (the term added to the loss, no hook left on the model)."""

import copy
import math

import pytest
import torch
from avalanche.core import SupervisedPlugin

from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.plugins.supervised_contrastive import SupConPlugin, supcon_loss
from cfer.continual.runner import run_stream


def _by_hand(features, labels, tau):
    z = [f / f.norm() for f in features]
    terms = []
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(len(z)) if a != i)
        terms.append(-sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denominator) for p in positives)
                     / len(positives))
    return sum(terms) / len(terms)


def test_the_loss_is_the_formula():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(7, 5, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # classes 2 and 3: no anchor
    for tau in (0.1, 0.5, 1.0):
        got = supcon_loss(features, labels, temperature=tau)
        assert got.item() == pytest.approx(_by_hand(features, labels, tau), rel=1e-5)
    # normalised inside: the scale of the features does not matter
    assert supcon_loss(3.0 * features, labels).item() == pytest.approx(supcon_loss(features, labels).item(), rel=1e-5)


def test_no_anchor_gives_zero_still_attached():
    features = torch.randn(4, 3, requires_grad=True)
    loss = supcon_loss(features, torch.tensor([0, 1, 2, 3]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_gradient_pulls_a_class_together():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(8, 6, generator=g).requires_grad_()
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    opt = torch.optim.SGD([features], lr=0.5)

    def within():
        z = torch.nn.functional.normalize(features.detach(), dim=1)
        same = (labels[:, None] == labels[None, :]) & ~torch.eye(8, dtype=torch.bool)
        return float((z @ z.T)[same].mean())

    start = within()
    for _ in range(20):
        opt.zero_grad()
        supcon_loss(features, labels).backward()
        opt.step()
    assert within() > start + 0.3


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        supcon_loss(torch.randn(2, 3), torch.tensor([0, 0]), temperature=0.0)
    with pytest.raises(ValueError, match=r"expected features \(B, D\)"):
        supcon_loss(torch.randn(2, 3), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="leave the plugin out"):
        SupConPlugin(weight=0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SupConPlugin(weight=0.1, temperature=-1.0)


class _Loss(SupervisedPlugin):
    """Records the strategy's loss in ``before_backward`` (where it sits in the list decides
    whether it sees the contrastive term)."""

    def __init__(self):
        super().__init__()
        self.values = []

    def before_backward(self, strategy, **kwargs):
        self.values.append(float(strategy.loss.detach()))


def test_the_plugin_adds_its_term_in_a_cfer_stream(tiny_stream, monkeypatch):
    import cfer.continual.plugins.supervised_contrastive as module

    taps = []

    class _Tap(module.FeatureTap):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            taps.append(self)

    monkeypatch.setattr(module, "FeatureTap", _Tap)
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    strategy = make_strategy("cfer", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=2e-3),
                             train_epochs=1, train_mb_size=16, memory_size=30,
                             total_classes=len(tiny_stream.class_names),
                             plugins=[BasicEpochsPlugin(basic_epochs=1, later_epochs=1)], cfer=CferConfig())
    before, after, terms = _Loss(), _Loss(), []
    plugin = SupConPlugin(weight=0.5, temperature=0.2)

    class _Term(SupervisedPlugin):
        def before_backward(self, strategy, **kwargs):
            terms.append(dict(plugin.last))

    strategy.plugins += [before, plugin, after, _Term()]  # after the distillation's and other terms
    run_stream(strategy, tiny_stream)  # the distillation plugin copies the student after each step
    assert len(before.values) == len(after.values) == len(terms) > 0
    for b, a, t in zip(before.values, after.values, terms):
        assert a - b == pytest.approx(0.5 * t["supcon"], rel=1e-4, abs=1e-5)
    assert any(t["anchors"] > 0 and t["supcon"] > 0 for t in terms)
    assert len(taps) == len(terms)  # one tap a training forward, each released before the backward pass
    live = {key for m in strategy.model.modules() for key in m._forward_hooks}
    assert not live & {tap._handle.id for tap in taps}
    copy.deepcopy(strategy.model)
