"""Fitting the new classes' head rows before a step: the fit itself on hand-made features,
and the plugin in a real cfer stream (only new rows move, the stop rule holds)."""

import logging
import math

import pytest
import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.plugins.head_warm_start import HeadWarmStartPlugin
from cfer.continual.runner import run_stream


def _clusters(g, centres, n=20, spread=0.3):
    feats = torch.cat([c + spread * torch.randn(n, len(c), generator=g) for c in centres])
    labels = torch.arange(len(centres)).repeat_interleave(n)
    return feats, labels


def test_the_fit_moves_only_the_new_rows_and_stops_when_new_fits_as_well_as_old():
    g = torch.Generator().manual_seed(0)
    centres = [torch.tensor([4.0, 0, 0, 0]), torch.tensor([0, 4.0, 0, 0]), torch.tensor([0, 0, 4.0, 0])]
    feats, labels = _clusters(g, centres)
    head = nn.Linear(4, 3)
    with torch.no_grad():  # old rows that read classes 0 and 1; a new row that points away from class 2
        head.weight[:] = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, -1.0, 0]])
        head.bias.zero_()
    old_rows = head.weight[:2].clone()
    plugin = HeadWarmStartPlugin(max_iterations=2000, lr=0.01)
    record = plugin._fit(head, feats, labels, new=[2], old=[0, 1])
    assert torch.equal(head.weight[:2], old_rows)
    assert record["new_ce_before"] > record["old_ce_before"]
    assert 0 < record["iterations"] < 2000
    assert record["new_ce_after"] <= record["old_ce_after"]
    predicted = (feats @ head.weight.T + head.bias).argmax(1)
    assert (predicted[labels == 2] == 2).float().mean() > 0.9  # the new class is read now
    assert (predicted[labels < 2] == labels[labels < 2]).float().mean() > 0.9  # and the old still are


def test_logit_adjustment_enters_the_fit():
    g = torch.Generator().manual_seed(1)
    feats, labels = _clusters(g, [torch.tensor([2.0, 0]), torch.tensor([0, 2.0])], spread=1.0)
    results = []
    for tau in (0.0, 1.0):
        head = nn.Linear(2, 2)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        keep = torch.cat([torch.arange(20), torch.arange(20, 25)])  # 20 old items, 5 new ones
        plugin = HeadWarmStartPlugin(max_iterations=50, lr=0.01, logit_adjustment=tau)
        results.append(plugin._fit(head, feats[keep], labels[keep], new=[1], old=[0]))
    # with the prior added, the rare new class starts with a larger loss
    assert results[1]["new_ce_before"] > results[0]["new_ce_before"]


class _Rows(SupervisedPlugin):
    """Head rows right before and after the warm start (it runs between the two)."""

    def __init__(self, store):
        super().__init__()
        self.store = store

    def before_training_exp(self, strategy, **kwargs):
        self.store.append(strategy.model.head.classifier.weight.detach().clone())


def test_in_a_cfer_stream(tiny_stream):
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    before, after = [], []
    plugin = HeadWarmStartPlugin()
    # enough basic epochs for the old rows to read their classes better than a random new row
    strategy = make_strategy("cfer", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=5e-3),
                             train_epochs=1, train_mb_size=16, memory_size=30,
                             total_classes=len(tiny_stream.class_names),
                             plugins=[BasicEpochsPlugin(basic_epochs=8, later_epochs=1), _Rows(before), plugin,
                                      _Rows(after)], cfer=CferConfig())
    run_stream(strategy, tiny_stream)
    steps = len(tiny_stream.train_stream)
    assert len(plugin.history) == steps - 1  # every step but the first
    for k, record in enumerate(plugin.history, start=1):
        new = record["classes"]
        assert new == sorted(int(c) for c in tiny_stream.train_stream[k].classes_in_this_experience)
        rows = torch.ones(before[k].shape[0], dtype=torch.bool)
        rows[new] = False
        assert torch.equal(before[k][rows], after[k][rows])  # every other row as it was
        assert not torch.equal(before[k][new], after[k][new])
        assert record["new_ce_after"] < record["new_ce_before"]
        assert record["new_ce_after"] <= record["old_ce_after"] or record["iterations"] == plugin.max_iterations
    assert torch.equal(before[0], after[0])  # the first step is left alone


def test_half_memory_replay_takes_the_old_items_from_the_buffer(tiny_stream):
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    plugin = HeadWarmStartPlugin()
    strategy = make_strategy("replay", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=5e-3),
                             train_epochs=1, train_mb_size=16, memory_size=30,
                             plugins=[BasicEpochsPlugin(basic_epochs=8, later_epochs=1), plugin])
    run_stream(strategy, tiny_stream)
    assert len(plugin.history) == len(tiny_stream.train_stream) - 1
    for record in plugin.history:  # the old classes' items were found in the buffer: their loss is a number
        assert math.isfinite(record["old_ce_before"]) and math.isfinite(record["old_ce_after"])
        assert record["new_ce_after"] <= record["old_ce_after"] or record["iterations"] == plugin.max_iterations


def test_a_model_without_a_linear_head_is_left_alone(tiny_stream, caplog):
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    plugin = HeadWarmStartPlugin()
    strategy = make_strategy("cfer", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=2e-3),
                             train_epochs=1, train_mb_size=16, memory_size=30,
                             total_classes=len(tiny_stream.class_names),
                             plugins=[BasicEpochsPlugin(basic_epochs=1, later_epochs=1), plugin],
                             cfer=CferConfig(head="cosine", weight_aligning=False))
    with caplog.at_level(logging.WARNING, logger="cfer.continual.plugins.head_warm_start"):
        run_stream(strategy, tiny_stream)
    assert plugin.history == []
    assert sum("fits a linear head" in r.getMessage() for r in caplog.records) == 1  # said once


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_iterations"):
        HeadWarmStartPlugin(max_iterations=0)
    with pytest.raises(ValueError, match="lr"):
        HeadWarmStartPlugin(lr=0)
    with pytest.raises(ValueError, match="logit_adjustment"):
        HeadWarmStartPlugin(logit_adjustment=-1)
