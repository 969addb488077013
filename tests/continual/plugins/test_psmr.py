from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cfer.continual.plugins.psmr import PredictiveSortingBuffer, PredictiveSortingSelection


class ScoreModel(nn.Module):
    """Logits read off the input: x[:, :n] are the class scores we control."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x[:, : self.n] + 0 * self.dummy


def _agent(model):
    return SimpleNamespace(model=model, device="cpu", eval_mb_size=7)


def _exp(make_tensor_dataset, x, y):
    return SimpleNamespace(dataset=make_tensor_dataset(x, y))


def test_selection_keeps_exactly_the_top_m_by_true_class_score(make_tensor_dataset):
    rng = np.random.default_rng(1)
    n, classes = 40, 4
    y = np.repeat(np.arange(classes), n // classes)
    x = rng.normal(size=(n, classes)).astype(np.float32)
    model = ScoreModel(classes)
    model.train()
    buf = PredictiveSortingBuffer(max_size=12, total_classes=classes, mode="limit")
    buf.post_adapt(_agent(model), _exp(make_tensor_dataset, x, y))
    assert model.training  # mode restored
    probs = torch.softmax(torch.as_tensor(x), 1).numpy()
    for c in range(classes):
        kept = buf.buffer_groups[c].buffer
        got = sorted(float(v[c]) for v in (kept[i][0].numpy() for i in range(len(kept))))
        idx = np.flatnonzero(y == c)
        best = idx[np.argsort(-probs[idx, c])[:3]]
        assert got == pytest.approx(sorted(x[best, c].tolist()))
    sel = PredictiveSortingSelection(score="logit")
    order = sel.make_sorted_indices(_agent(model), make_tensor_dataset(x[y == 0], y[y == 0]))
    assert order == np.argsort(-x[y == 0, 0], kind="stable").tolist()


@pytest.mark.parametrize("mode", ["grow", "limit"])
def test_budget_holds_over_many_random_streams(make_tensor_dataset, mode):
    rng = np.random.default_rng(2)
    for _ in range(30):
        total = int(rng.integers(3, 12))
        budget = int(rng.integers(total, 60))
        order = rng.permutation(total)
        buf = PredictiveSortingBuffer(max_size=budget, total_classes=total, mode=mode, seed=int(rng.integers(99)))
        model = ScoreModel(total)
        start, seen = 0, 0
        while start < total:
            k = int(rng.integers(1, 4))
            cls = order[start:start + k]
            start += k
            seen += len(cls)
            y = np.repeat(cls, rng.integers(1, 15, size=len(cls)))
            x = rng.normal(size=(len(y), total)).astype(np.float32)
            buf.post_adapt(_agent(model), _exp(make_tensor_dataset, x, y))
            assert len(buf.buffer) <= budget
            quota = budget // total if mode == "grow" else budget // seen
            assert all(len(g.buffer) <= quota for g in buf.buffer_groups.values())
            assert len(buf.buffer_groups) == seen


def test_grow_adds_m_per_class_and_limit_rebalances(make_tensor_dataset):
    model = ScoreModel(6)
    x = np.random.default_rng(3).normal(size=(60, 6)).astype(np.float32)
    y = np.repeat(np.arange(6), 10)
    grow = PredictiveSortingBuffer(max_size=30, total_classes=6, mode="grow")
    limit = PredictiveSortingBuffer(max_size=30, total_classes=6, mode="limit")
    sizes_g, sizes_l = [], []
    for step in range(3):
        part = np.isin(y, [2 * step, 2 * step + 1])
        for b, out in ((grow, sizes_g), (limit, sizes_l)):
            b.post_adapt(_agent(model), _exp(make_tensor_dataset, x[part], y[part]))
            out.append(len(b.buffer))
    assert sizes_g == [10, 20, 30]          # m = 30 // 6 = 5 per class
    assert sizes_l == [20, 28, 30]          # floor(30 / seen) per class, capped by the 10 items a class has


def test_old_classes_are_truncated_not_rescored_unless_asked(make_tensor_dataset):
    x = np.random.default_rng(4).normal(size=(20, 3)).astype(np.float32)
    y = np.array([0] * 10 + [1] * 10)
    first = _exp(make_tensor_dataset, x, y)
    later = _exp(make_tensor_dataset, np.random.default_rng(5).normal(size=(10, 3)).astype(np.float32),
                 np.full(10, 2))
    for rescore in (False, True):
        buf = PredictiveSortingBuffer(max_size=12, total_classes=3, mode="limit", rescore_old=rescore)
        buf.post_adapt(_agent(ScoreModel(3)), first)
        before = [buf.buffer_groups[0].buffer[i][0][0].item() for i in range(6)]
        # A different scorer now ranks class 0 in reverse.
        flipped = ScoreModel(3)
        flipped.forward = lambda inp: -inp[:, :3]
        buf.post_adapt(_agent(flipped), later)
        after = [buf.buffer_groups[0].buffer[i][0][0].item() for i in range(4)]
        if rescore:
            assert after != before[:4]
        else:
            assert after == before[:4]


def test_buffer_holds_index_subsets_not_copies(make_tensor_dataset):
    x = torch.randn(30, 3)
    data = make_tensor_dataset(x, torch.arange(3).repeat_interleave(10))
    buf = PredictiveSortingBuffer(max_size=9, total_classes=3, mode="limit", new_class_selection="random")
    buf.post_adapt(_agent(ScoreModel(3)), SimpleNamespace(dataset=data))
    stored = buf.buffer_groups[1].buffer
    assert len(stored) == 3
    # An Avalanche subset of the experience dataset: items are the very same tensors' rows.
    assert type(stored).__name__ != "Tensor"
    rows = {tuple(stored[i][0].tolist()) for i in range(3)}
    assert rows <= {tuple(r.tolist()) for r in x[10:20]}


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="mode must be 'grow' or 'limit'"):
        PredictiveSortingBuffer(max_size=10, total_classes=3, mode="fixed")
    with pytest.raises(ValueError, match="scorer='teacher' needs teacher"):
        PredictiveSortingSelection(scorer="teacher")
    with pytest.raises(ValueError, match="total_classes must be >= 1"):
        PredictiveSortingBuffer(max_size=10, total_classes=0)


def test_a_budget_below_one_item_per_class_warns_with_the_quota():
    import warnings as _w

    from cfer.continual.plugins.psmr import MemoryBudgetWarning

    with pytest.warns(MemoryBudgetWarning, match="a replay budget of 5 items for 21 classes is less than one item "
                                                 "per class: every class gets 0 items.*at least 21 items"):
        policy = PredictiveSortingBuffer(max_size=5, total_classes=21, mode="grow")
    assert policy.per_class_quota == 0
    with _w.catch_warnings():
        _w.simplefilter("error")  # enough for every class, or no replay at all: no warning
        PredictiveSortingBuffer(max_size=21, total_classes=21)
        PredictiveSortingBuffer(max_size=0, total_classes=21)


def test_margin_score_sorts_by_the_distance_to_the_nearest_other_class(make_tensor_dataset):
    # Three items of class 0 under 3-class logits. Item 0 is the most probable for class 0 by
    # softmax (0.73: one rival, 1 logit behind); item 1 is less probable (0.69: two rivals)
    # yet further from the nearest one (1.5 logits).
    x = np.array([[5.0, 4.0, -9.0], [1.5, 0.0, 0.0], [0.2, 0.0, 0.0]], dtype=np.float32)
    y = np.zeros(3, dtype=np.int64)
    data = make_tensor_dataset(x, y)
    agent = _agent(ScoreModel(3))
    by_softmax = PredictiveSortingSelection(score="softmax").make_sorted_indices(agent, data)
    margin = PredictiveSortingSelection(score="margin")
    assert margin.scores(agent, data).tolist() == pytest.approx([1.0, 1.5, 0.2], abs=1e-5)
    assert margin.make_sorted_indices(agent, data) == [1, 0, 2]
    assert by_softmax == [0, 1, 2]  # the two scores disagree here: the test tells them apart
    # a class beyond the model's outputs sorts last, as with the logit score
    far = make_tensor_dataset(x[:2], np.array([0, 5]))
    assert margin.scores(agent, far)[1] == -float("inf")
    with pytest.raises(ValueError, match="'softmax', 'logit' or 'margin'"):
        PredictiveSortingSelection(score="rank")


def test_the_teacher_scores_its_own_classes_and_the_current_model_the_others(make_tensor_dataset):
    """A basic teacher has no output for a compound class: its items are ranked by the strategy's
    model (it used to fail with an index error as soon as a compound class entered the memory)."""
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 6)
    x = rng.normal(size=(24, 8)).astype(np.float32)
    teacher, current = ScoreModel(2), ScoreModel(4)
    # the teacher reads columns 0-1, the current model 0-3: give the teacher's classes other scores
    teacher.forward = lambda t: t[:, 4:6] + 0 * teacher.dummy
    teacher.train()
    sel = PredictiveSortingSelection(scorer="teacher", teacher=teacher, score="logit")
    got = sel.scores(_agent(current), make_tensor_dataset(x, y)).numpy()
    want = np.where(y < 2, x[np.arange(24), 4 + np.minimum(y, 1)], x[np.arange(24), y])
    assert got == pytest.approx(want)
    assert teacher.training  # its mode is given back
    for c in range(4):  # each class ranked by one model: the teacher for 0-1, the current one for 2-3
        idx = np.flatnonzero(y == c)
        order = sel.make_sorted_indices(_agent(current), make_tensor_dataset(x[idx], y[idx]))
        assert order == np.argsort(-want[idx], kind="stable").tolist()


# -- first_step_weight: the first experience's classes (the teacher's) keep a share of the
# budget against the later classes', in both modes, across a resume ----------------------

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
        buf.post_adapt(_agent(ScoreModel(6)), exp)
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
        buf.post_adapt(_agent(ScoreModel(6)), exp)
        sizes.append(len(buf.buffer))
    # 0.5 * 2 + 4 = 5 shares: 3 items for a first-step class, 6 for a later one; 30 at the end
    assert sizes == [6, 18, 30] and _sizes(buf) == {0: 3, 1: 3, 2: 6, 3: 6, 4: 6, 5: 6}


def test_weight_one_is_the_published_allocation(make_tensor_dataset):
    alike = PredictiveSortingBuffer(max_size=30, total_classes=4, mode="limit", first_step_weight=1.0)
    plain = PredictiveSortingBuffer(max_size=30, total_classes=4, mode="limit")
    for exp in _steps(make_tensor_dataset, [[0, 1], [2], [3]]):
        for buf in (alike, plain):
            buf.post_adapt(_agent(ScoreModel(6)), exp)
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
            buf.post_adapt(_agent(ScoreModel(total)), SimpleNamespace(dataset=make_tensor_dataset(x, y)))
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
        buf.post_adapt(_agent(ScoreModel(6)), exp)
    state = buf.state_dict()
    assert state["first_classes"] == [0, 1]
    datasets = [e.dataset for e in exps]
    for drop in (False, True):  # True: a checkpoint written before the weight existed
        saved = {k: v for k, v in state.items() if not (drop and k == "first_classes")}
        again = PredictiveSortingBuffer(max_size=30, total_classes=4, mode="limit", first_step_weight=0.5)
        again.load_state_dict(saved, datasets=datasets)
        assert again.first_classes == {0, 1}
        again.post_adapt(_agent(ScoreModel(6)), exps[2])
        assert _sizes(again) == {0: 5, 1: 5, 2: 10, 3: 10}


@pytest.mark.parametrize("weight", [0.0, -0.5, float("nan")])
def test_a_weight_that_is_not_positive_is_refused(weight):
    with pytest.raises(ValueError, match="first_step_weight must be > 0"):
        PredictiveSortingBuffer(max_size=10, total_classes=3, first_step_weight=weight)
