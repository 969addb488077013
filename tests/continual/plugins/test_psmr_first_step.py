"""PSMR's ``first_step_weight``: the first experience's classes (the teacher's) keep a share
of the budget against the later classes', in both modes, across a resume."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cfer.continual.plugins.psmr import PredictiveSortingBuffer


class ScoreModel(nn.Module):
    """Logits read off the input: x[:, :n] are the class scores."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x[:, : self.n] + 0 * self.dummy


def _agent(n):
    return SimpleNamespace(model=ScoreModel(n), device="cpu", eval_mb_size=7)


def _steps(make_tensor_dataset, classes_per_step, *, per_class=10, n=6, seed=3):
    rng = np.random.default_rng(seed)
    for i, classes in enumerate(classes_per_step):
        y = np.repeat(classes, per_class)
        x = rng.normal(size=(len(y), n)).astype(np.float32)
        yield SimpleNamespace(dataset=make_tensor_dataset(x, y), current_experience=i)


def _sizes(buf):
    return {c: len(g.buffer) for c, g in sorted(buf.buffer_groups.items())}


def test_limit_mode_gives_a_first_step_class_its_share_of_a_later_class(make_tensor_dataset):
    buf = PredictiveSortingBuffer(max_size=30, total_classes=4, mode="limit", first_step_weight=0.5)
    seen = []
    for exp in _steps(make_tensor_dataset, [[0, 1], [2], [3]]):
        buf.post_adapt(_agent(6), exp)
        seen.append(_sizes(buf))
    assert seen[0] == {0: 10, 1: 10}                      # alone they may keep 15 each: all 10 they have
    assert seen[1] == {0: 7, 1: 7, 2: 10}                 # 30 * 0.5 // 2 = 7; a later class 15, capped at 10
    assert seen[2] == {0: 5, 1: 5, 2: 10, 3: 10}          # 30 * 0.5 // 3 = 5 and 30 // 3 = 10
    assert buf.first_classes == {0, 1} and buf.per_class_quota == 10
    assert [buf.quota_of(c) for c in range(4)] == [5, 5, 10, 10]


def test_grow_mode_shares_m_over_every_class_the_stream_will_have(make_tensor_dataset):
    buf = PredictiveSortingBuffer(max_size=30, total_classes=6, mode="grow", first_step_weight=0.5)
    sizes = []
    for exp in _steps(make_tensor_dataset, [[0, 1], [2, 3], [4, 5]]):
        buf.post_adapt(_agent(6), exp)
        sizes.append(len(buf.buffer))
    # 0.5 * 2 + 4 = 5 shares: 3 items for a first-step class, 6 for a later one; 30 at the end
    assert sizes == [6, 18, 30] and _sizes(buf) == {0: 3, 1: 3, 2: 6, 3: 6, 4: 6, 5: 6}


def test_weight_one_is_the_published_allocation(make_tensor_dataset):
    alike = PredictiveSortingBuffer(max_size=30, total_classes=4, mode="limit", first_step_weight=1.0)
    plain = PredictiveSortingBuffer(max_size=30, total_classes=4, mode="limit")
    for exp in _steps(make_tensor_dataset, [[0, 1], [2], [3]]):
        for buf in (alike, plain):
            buf.post_adapt(_agent(6), exp)
        assert _sizes(alike) == _sizes(plain)
    assert _sizes(plain) == {0: 7, 1: 7, 2: 7, 3: 7}


@pytest.mark.parametrize("mode", ["grow", "limit"])
def test_the_budget_holds_for_any_weight(make_tensor_dataset, mode):
    rng = np.random.default_rng(7)
    for _ in range(25):
        total, weight = int(rng.integers(3, 10)), float(rng.choice([0.1, 0.25, 0.5, 2.0, 3.0]))
        budget = int(rng.integers(total * 3, 80))
        buf = PredictiveSortingBuffer(max_size=budget, total_classes=total, mode=mode, first_step_weight=weight)
        order, start = rng.permutation(total), 0
        while start < total:
            k = int(rng.integers(1, 4))
            cls, start = order[start:start + k], start + k
            y = np.repeat(cls, rng.integers(1, 25, size=len(cls)))
            x = rng.normal(size=(len(y), total)).astype(np.float32)
            buf.post_adapt(_agent(total), SimpleNamespace(dataset=make_tensor_dataset(x, y)))
            assert len(buf.buffer) <= budget
            first = [buf.quota_of(c) for c in buf.first_classes]
            later = [buf.quota_of(c) for c in buf.buffer_groups if c not in buf.first_classes]
            assert all(len(g.buffer) <= buf.quota_of(c) for c, g in buf.buffer_groups.items())
            if later:  # a first-step class gets the smaller quota exactly when its weight is below 1
                assert (max(first) <= min(later)) if weight < 1 else (min(first) >= max(later))


def test_a_resumed_buffer_keeps_its_first_step_classes(make_tensor_dataset):
    exps = list(_steps(make_tensor_dataset, [[0, 1], [2], [3]]))
    buf = PredictiveSortingBuffer(max_size=30, total_classes=4, mode="limit", first_step_weight=0.5)
    for exp in exps[:2]:
        buf.post_adapt(_agent(6), exp)
    state = buf.state_dict()
    assert state["first_classes"] == [0, 1]
    datasets = [e.dataset for e in exps]
    for drop in (False, True):  # True: a checkpoint written before the weight existed
        saved = {k: v for k, v in state.items() if not (drop and k == "first_classes")}
        again = PredictiveSortingBuffer(max_size=30, total_classes=4, mode="limit", first_step_weight=0.5)
        again.load_state_dict(saved, datasets=datasets)
        assert again.first_classes == {0, 1}
        again.post_adapt(_agent(6), exps[2])
        assert _sizes(again) == {0: 5, 1: 5, 2: 10, 3: 10}


@pytest.mark.parametrize("weight", [0.0, -0.5, float("nan")])
def test_a_weight_that_is_not_positive_is_refused(weight):
    with pytest.raises(ValueError, match="first_step_weight must be > 0"):
        PredictiveSortingBuffer(max_size=10, total_classes=3, first_step_weight=weight)
