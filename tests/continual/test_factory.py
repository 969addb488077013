import time

import pytest
import torch

from cfer.continual.factory import STRATEGIES, make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.runner import run_stream


def _model(stream):
    return build_model(arch="cfer_tiny", num_classes=stream.n_basic, img_size=24, seed=0)


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_runs_from_make_strategy(name, tiny_stream):
    model = _model(tiny_stream)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    extra = [BasicEpochsPlugin(basic_epochs=2, later_epochs=1)]
    strategy = make_strategy(name, model=model, optimizer=opt, train_epochs=1, train_mb_size=16, memory_size=30,
                             total_classes=len(tiny_stream.class_names), plugins=extra)
    res = run_stream(strategy, tiny_stream)
    assert [len(r) for r in res.matrix] == [1, 2, 3]
    assert all(0.0 <= a <= 1.0 for row in res.matrix for a in row)
    assert len(extra) == 1  # the caller's list is not mutated
    if name not in ("icarl",):
        assert model.num_classes == len(tiny_stream.class_names)  # the head grew (der: fixed at full width)


def test_cfer_beats_chance_quickly_on_three_experiences(tiny_stream):
    torch.manual_seed(0)
    model = build_model(arch="resemotenet_slim", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    strategy = make_strategy("cfer", model=model, optimizer=opt, train_epochs=3, train_mb_size=16, memory_size=40,
                             total_classes=len(tiny_stream.class_names),
                             plugins=[BasicEpochsPlugin(basic_epochs=8, later_epochs=4)])
    t0 = time.perf_counter()
    res = run_stream(strategy, tiny_stream)
    took = time.perf_counter() - t0
    assert took < 30, f"took {took:.1f} s"
    chance = 1 / len(tiny_stream.class_names)
    assert res.final_accuracy > 2 * chance, res.to_dict()
    assert res.basic_kept[0] > 2 / tiny_stream.n_basic


def test_unknown_names_and_missing_options():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"unknown strategy 'icarll' \(did you mean 'icarl'\?\)"):
        make_strategy("icarll", model=model, optimizer=opt)
    with pytest.raises(ValueError, match="cfer strategy needs total_classes"):
        make_strategy("cfer", model=model, optimizer=opt)
    with pytest.raises(ValueError, match="needs a cfer.continual.growing.GrowingClassifier"):
        make_strategy("herding", model=model, optimizer=opt)


def test_icarl_takes_a_student_that_skips_the_basic_experience(tiny_stream):
    """A student copied from a trained teacher trains 0 epochs on the basic experience;
    Avalanche's iCaRL then had no embedding size and failed building its exemplar set."""
    model = _model(tiny_stream)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    strategy = make_strategy("icarl", model=model, optimizer=opt, train_epochs=1, train_mb_size=16, memory_size=30,
                             total_classes=len(tiny_stream.class_names),
                             plugins=[BasicEpochsPlugin(basic_epochs=0, later_epochs=1)])
    res = run_stream(strategy, tiny_stream)
    assert [len(r) for r in res.matrix] == [1, 2, 3]
    icarl = next(p for p in strategy.plugins if type(p).__name__ == "_ICaRLPlugin")
    assert icarl.embedding_size == model.num_features
    assert sum(len(x) for x in icarl.x_memory) == 30  # the exemplar set was built, the basic classes included
