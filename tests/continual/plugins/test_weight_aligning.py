"""Weight aligning: the new classes' head rows take the old classes' mean norm after each step."""

from types import SimpleNamespace

import pytest
import torch
from avalanche.models import IncrementalClassifier

from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import GrowingEnsemble, build_model
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.plugins.weight_aligning import WeightAligningPlugin, align_new_classes
from cfer.continual.runner import run_stream


def _head(rows, bias):
    head = IncrementalClassifier(len(rows[0]), initial_out_features=len(rows))
    with torch.no_grad():
        head.classifier.weight.copy_(torch.tensor(rows))
        head.classifier.bias.copy_(torch.tensor(bias))
    return head


def test_new_rows_and_biases_are_scaled_to_the_old_mean_norm_and_old_rows_are_untouched():
    head = _head([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0], [0.0, 4.0]], [0.5, 0.5, 2.0, -1.0])
    # old norms 5 and 1 (mean 3), new norms 10 and 4 (mean 7)
    gamma = align_new_classes(head, old=[0, 1], new=[2, 3])
    assert gamma == pytest.approx(3 / 7)
    w, b = head.classifier.weight, head.classifier.bias
    assert w[:2].tolist() == [[3.0, 4.0], [0.0, 1.0]] and b[:2].tolist() == [0.5, 0.5]
    assert w[2:].norm(dim=1).mean().item() == pytest.approx(3.0)
    assert b[2:].tolist() == pytest.approx([2.0 * 3 / 7, -3 / 7])
    x = torch.randn(5, 2)
    assert align_new_classes(head, old=[0, 1, 2, 3], new=[]) is None  # nothing new: nothing changes
    assert align_new_classes(head, old=[], new=[0]) is None
    with pytest.raises(ValueError, match="beyond the head's 4 outputs"):
        align_new_classes(head, old=[0], new=[4])
    assert head(x).shape == (5, 4)


def test_the_plugin_reads_old_and_new_classes_from_the_experience_and_refuses_a_stream_without_them():
    model = SimpleNamespace(modules=lambda: [])
    plugin = WeightAligningPlugin()
    with pytest.raises(ValueError, match="previous_classes"):
        plugin.after_training_exp(SimpleNamespace(model=model, experience=SimpleNamespace(
            classes_in_this_experience=[0, 1])))
    head = _head([[2.0, 0.0], [0.0, 2.0], [0.0, 8.0]], [0.0, 0.0, 0.0])
    strategy = SimpleNamespace(model=torch.nn.Sequential(head), experience=SimpleNamespace(
        classes_in_this_experience=[2], previous_classes=[0, 1]))
    plugin.after_training_exp(strategy)
    assert plugin.gammas == [[pytest.approx(0.25)]]
    assert head.classifier.weight[2].norm().item() == pytest.approx(2.0)


def test_the_cfer_preset_aligns_every_compound_step(tiny_stream):
    names = len(tiny_stream.class_names)
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    strategy = make_strategy("cfer", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=2e-3),
                             train_epochs=1, train_mb_size=16, memory_size=30, total_classes=names,
                             plugins=[BasicEpochsPlugin(basic_epochs=1, later_epochs=1)],
                             cfer=CferConfig())
    plugin = strategy.plugins[0]
    assert isinstance(plugin, WeightAligningPlugin)  # first: replay and distillation see the aligned head
    run_stream(strategy, tiny_stream)
    assert len(plugin.gammas) == len(tiny_stream.train_stream) - 1  # every step but the basic one
    norms = model.head.classifier.weight.norm(dim=1)
    last = [int(c) for c in tiny_stream.train_stream[-1].classes_in_this_experience]
    older = [c for c in range(names) if c not in last]
    assert norms[last].mean().item() == pytest.approx(norms[older].mean().item(), rel=1e-5)
    for cfer, expected in ((CferConfig(), True), (CferConfig(weight_aligning=False), False),
                           (CferConfig(head="cosine"), False)):  # on in the preset; a cosine head has no norms
        built = make_strategy("cfer", model=build_model(arch="cfer_tiny", num_classes=2, img_size=24),
                              optimizer=None, total_classes=names, cfer=cfer)
        assert any(isinstance(p, WeightAligningPlugin) for p in built.plugins) is expected


def test_each_ensemble_member_head_is_aligned():
    ens = GrowingEnsemble(members=["cfer_tiny", "cfer_tiny"], img_sizes=[24, 24], initial_classes=3)
    heads = [m for m in ens.modules() if isinstance(m, IncrementalClassifier)]
    assert len(heads) == 2
    with torch.no_grad():
        for h in heads:
            h.classifier.weight[2] *= 10.0
    WeightAligningPlugin().after_training_exp(SimpleNamespace(model=ens, experience=SimpleNamespace(
        classes_in_this_experience=[2], previous_classes=[0, 1])))
    for h in heads:
        norms = h.classifier.weight.norm(dim=1)
        assert norms[2].item() == pytest.approx(norms[:2].mean().item(), rel=1e-5)
