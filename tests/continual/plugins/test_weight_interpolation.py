"""Weight interpolation: after each compound step the student is the average of its weights
before and after the step, the new classes' head rows excepted."""

import pytest
import torch
from avalanche.core import SupervisedPlugin

from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.plugins.weight_interpolation import WeightInterpolationPlugin, interpolate_weights
from cfer.continual.runner import run_stream


def _float_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_floating_point(v)}


def test_every_float_tensor_is_the_weighted_mean_and_new_head_rows_are_kept():
    model = build_model(arch="cfer_tiny", num_classes=4, img_size=24, seed=0)
    before = _float_state(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        for name, b in model.named_buffers():
            if "running_mean" in name:
                b.add_(1.0)
    after = _float_state(model)
    counts = {k: v.clone() for k, v in model.state_dict().items() if not torch.is_floating_point(v)}
    n = interpolate_weights(model, before, alpha=0.25, new_classes=[3])
    assert n == len(after)
    state = model.state_dict()
    for key, value in after.items():
        expected = 0.25 * before[key] + 0.75 * value
        if key in ("head.classifier.weight", "head.classifier.bias"):
            expected[3] = value[3]  # the new class keeps what it learnt
            assert not torch.allclose(state[key][3], 0.25 * before[key][3] + 0.75 * value[3])
        assert torch.allclose(state[key], expected, atol=1e-6), key
    for key, value in counts.items():  # BatchNorm's batch counters are left alone
        assert torch.equal(state[key], value)


def test_alpha_zero_and_one_and_bad_input():
    model = build_model(arch="cfer_tiny", num_classes=3, img_size=24, seed=0)
    before = _float_state(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    after = _float_state(model)
    interpolate_weights(model, before, alpha=0.0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in after.items())
    interpolate_weights(model, before, alpha=1.0, new_classes=[2])
    state = model.state_dict()
    assert torch.equal(state["head.classifier.weight"][:2], before["head.classifier.weight"][:2])
    assert torch.equal(state["head.classifier.weight"][2], after["head.classifier.weight"][2])
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        interpolate_weights(model, before, alpha=1.5)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        WeightInterpolationPlugin(alpha=-0.1)
    short = dict(before)
    short["head.classifier.weight"] = short["head.classifier.weight"][:2]
    with pytest.raises(ValueError, match="after the head grew"):
        interpolate_weights(model, short, alpha=0.5)


class _Recorder(SupervisedPlugin):
    """The weights at the start of each experience (after the head grew) and at the end of
    its last epoch (before any ``after_training_exp``)."""

    def __init__(self):
        super().__init__()
        self.start, self.trained = [], []

    def before_training_exp(self, strategy, **kwargs):
        self.start.append(_float_state(strategy.model))

    def after_training_epoch(self, strategy, **kwargs):
        if len(self.trained) < len(self.start):
            self.trained.append(None)
        self.trained[-1] = _float_state(strategy.model)


def test_the_plugin_averages_each_compound_step_and_leaves_the_basic_step(tiny_stream):
    names = len(tiny_stream.class_names)
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    recorder = _Recorder()
    ends = []

    class _End(SupervisedPlugin):  # runs after the interpolation (it is inserted first)
        def after_training_exp(self, strategy, **kwargs):
            ends.append(_float_state(strategy.model))

    strategy = make_strategy("cfer", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=2e-3),
                             train_epochs=1, train_mb_size=16, memory_size=30, total_classes=names,
                             plugins=[BasicEpochsPlugin(basic_epochs=1, later_epochs=2), recorder, _End()],
                             cfer=CferConfig(weight_aligning=False))
    strategy.plugins.insert(0, WeightInterpolationPlugin(alpha=0.5))
    run_stream(strategy, tiny_stream)
    assert len(ends) == len(tiny_stream.train_stream) >= 2
    for k, v in recorder.trained[0].items():  # the basic step: as trained
        assert torch.equal(ends[0][k], v)
    for step in range(1, len(ends)):
        new = sorted(set(int(c) for c in tiny_stream.train_stream[step].classes_in_this_experience))
        start, trained, end = recorder.start[step], recorder.trained[step], ends[step]
        key = "backbone.conv_stem.weight" if "backbone.conv_stem.weight" in end else next(iter(end))
        assert not torch.allclose(trained[key], start[key])  # the step did move the weights
        for k in end:
            expected = 0.5 * start[k] + 0.5 * trained[k]
            if k in ("head.classifier.weight", "head.classifier.bias"):
                expected[new] = trained[k][new]
            assert torch.allclose(end[k], expected, atol=1e-6), (step, k)
