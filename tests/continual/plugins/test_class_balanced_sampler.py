"""The class-balanced sampler: every class drawn equally often over new data and memory."""

import pytest
import torch
from avalanche.core import SupervisedPlugin

from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.class_balanced_sampler import ClassBalancedSamplerPlugin, class_balanced_weights
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.runner import run_stream


def test_weights_are_one_over_the_class_size():
    w = class_balanced_weights(torch.tensor([2, 0, 2, 2, 0, 1]))
    assert w.tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 3, 1 / 3, 1 / 2, 1.0])
    # every class carries the same total weight
    assert [float(w[torch.tensor([2, 0, 2, 2, 0, 1]) == c].sum()) for c in range(3)] == pytest.approx([1, 1, 1])
    with pytest.raises(ValueError, match="no items"):
        class_balanced_weights([])
    with pytest.raises(ValueError, match=">= 0"):
        class_balanced_weights([0, -1])
    with pytest.raises(ValueError, match="num_samples"):
        ClassBalancedSamplerPlugin(num_samples=0)


class _Drawn(SupervisedPlugin):
    """The labels of every training mini-batch, per experience."""

    def __init__(self):
        super().__init__()
        self.labels = []

    def before_training_exp(self, strategy, **kwargs):
        self.labels.append([])

    def after_training_iteration(self, strategy, **kwargs):
        self.labels[-1].extend(strategy.mb_y.tolist())


def _strategy(stream, plugins, cfer=CferConfig()):
    model = build_model(arch="cfer_tiny", num_classes=stream.n_basic, img_size=24, seed=0)
    return make_strategy("cfer", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=2e-3),
                         train_epochs=1, train_mb_size=64, memory_size=30, total_classes=len(stream.class_names),
                         plugins=[BasicEpochsPlugin(basic_epochs=1, later_epochs=1), *plugins], cfer=cfer)


def test_new_classes_and_memory_are_drawn_equally_often(tiny_stream):
    drawn = _Drawn()
    plugin = ClassBalancedSamplerPlugin(num_samples=4000)
    torch.manual_seed(0)
    run_stream(_strategy(tiny_stream, [plugin, drawn]), tiny_stream)
    # the last step: 2 new classes of 18 items each and 8 older classes with 3 or 4 memory items
    counts = plugin.class_counts[-1]
    assert max(counts) >= 4 * min(c for c in counts if c)
    shares = torch.bincount(torch.tensor(drawn.labels[-1]), minlength=len(counts)).float() / 4000
    assert len(drawn.labels[-1]) == 4000
    assert shares.tolist() == pytest.approx([1 / len(counts)] * len(counts), abs=0.025)


def test_the_mixed_replay_loader_is_refused_with_the_fix(tiny_stream):
    strategy = _strategy(tiny_stream, [ClassBalancedSamplerPlugin()], cfer=CferConfig(replay_batches="mixed"))
    with pytest.raises(ValueError, match="replay_batches='concat'"):
        run_stream(strategy, tiny_stream)


def test_a_torchrun_job_is_refused(tiny_stream, monkeypatch):
    import cfer.distributed

    monkeypatch.setattr(cfer.distributed, "world_size", lambda: 2)
    with pytest.raises(RuntimeError, match="single process"):
        run_stream(_strategy(tiny_stream, [ClassBalancedSamplerPlugin()]), tiny_stream)
