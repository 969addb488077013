"""The ``published`` and ``cfer`` presets, and what they build."""

import dataclasses

import pytest
import torch

from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import build_model, load_model
from cfer.continual.plugins.distillation import BasicDistillationPlugin
from cfer.continual.plugins.psmr import ConcatReplayPlugin, PredictiveSortingBuffer
from cfer.continual.presets import PRESETS, describe_preset, preset_config


def _build(name, stream, **kw):
    model = build_model(arch="cfer_tiny", num_classes=stream.n_basic, img_size=24, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    return make_strategy(name, model=model, optimizer=opt, train_epochs=1, train_mb_size=16, memory_size=42,
                         total_classes=len(stream.class_names), **kw)


def _own(strategy):
    return [type(p).__name__ for p in strategy.plugins
            if type(p).__module__.startswith(("cfer.", "avalanche.training.plugins.replay"))]


def test_published_is_the_method_as_published(tiny_stream):
    p = PRESETS["published"]
    assert (p.gamma0, p.temperature, p.first_step, p.t_squared) == (0.1, 3.0, 1, False)
    assert (p.feature_weight, p.psmr_mode, p.psmr_new_class_selection, p.psmr_scorer) == (0.0, "grow", "sorted",
                                                                                          "current")
    assert (p.logit_adjustment, p.nearest_mean, p.balanced_epochs, p.replay_batches) == (0.0, "off", 0, "mixed")
    assert (p.previous_weight, p.previous_feature_weight, p.criterion) == (0.0, 0.0, "ce")
    assert p.previous_weight_scale == "constant"
    assert (p.nearest_mean_mirror, p.nearest_mean_head_weight) == (False, 0.0)
    assert (p.psmr_score, p.weight_aligning, p.feature_samples) == ("softmax", False, "all")
    assert p.mirror_training is False and p.shift_training == 0  # the faces as stored
    strategy = _build("published", tiny_stream)
    assert _own(strategy) == ["BasicDistillationPlugin", "ReplayPlugin"]  # nothing else
    kd = next(p for p in strategy.plugins if isinstance(p, BasicDistillationPlugin))
    assert (kd.gamma0, kd.temperature, kd.feature_weight, kd.t_squared) == (0.1, 3.0, 0.0, False)
    policy = next(p for p in strategy.plugins if hasattr(p, "storage_policy")).storage_policy
    assert isinstance(policy, PredictiveSortingBuffer) and policy.mode == "grow"
    assert policy.selection.score == "softmax"
    assert p.psmr_first_step_weight == policy.first_step_weight == 1.0  # every class alike
    assert policy.per_class_quota == 42 // len(tiny_stream.class_names)  # m = floor(M / total classes)
    with pytest.raises(ValueError, match="takes no cfer options"):
        _build("published", tiny_stream, cfer=CferConfig(logit_adjustment=0.5))


def test_cfer_preset_is_config_defaults_and_builds_its_mechanisms(tiny_stream):
    assert PRESETS["cfer"] == CferConfig()
    c = CferConfig()
    strategy = _build("cfer", tiny_stream)
    names = _own(strategy)
    if c.weight_aligning:  # first: the memory is scored and the previous student frozen with the aligned head
        assert names.pop(0) == "WeightAligningPlugin"
    assert names[:2] == ["BasicDistillationPlugin", "ConcatReplayPlugin" if c.replay_batches == "concat"
                         else "ReplayPlugin"]
    assert ("LogitAdjustmentPlugin" in names) == (c.logit_adjustment > 0)
    assert ("NearestMeanPlugin" in names) == (c.nearest_mean != "off")
    assert ("MirrorAugmentPlugin" in names) == c.mirror_training
    assert ("ShiftAugmentPlugin" in names) == (c.shift_training > 0) and c.shift_training == 0  # the faces as stored
    moved = _build("cfer", tiny_stream, cfer=CferConfig(shift_training=2))
    shift = next(p for p in moved.plugins if type(p).__name__ == "ShiftAugmentPlugin")
    assert shift.max_shift == 2
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="shift_training must be a whole number"):
            CferConfig(shift_training=bad)
    if "NearestMeanPlugin" in names:  # it reads the memory the replay plugin has just updated
        assert names.index("NearestMeanPlugin") > names.index(names[1])
    kd = next(p for p in strategy.plugins if isinstance(p, BasicDistillationPlugin))
    assert (kd.previous_weight, kd.previous_weight_scale) == (c.previous_weight, c.previous_weight_scale)
    assert describe_preset("cfer", c) == {"preset": "cfer", "options": dataclasses.asdict(c)}
    policy = next(p for p in strategy.plugins if hasattr(p, "storage_policy")).storage_policy
    assert policy.first_step_weight == c.psmr_first_step_weight == 0.5
    margin = _build("cfer", tiny_stream, cfer=CferConfig(psmr_score="margin"))
    assert next(p for p in margin.plugins if hasattr(p, "storage_policy")).storage_policy.selection.score == "margin"


def test_preset_config_overrides_and_refusals():
    assert preset_config("cfer", logit_adjustment=0.5, gamma0=None).logit_adjustment == 0.5
    assert preset_config("published", psmr_mode="grow") == PRESETS["published"]  # no real change
    with pytest.raises(ValueError, match="did you mean 'published'"):
        preset_config("publishd")
    with pytest.raises(ValueError, match="unknown cfer option"):
        preset_config("cfer", gama0=0.2)
    with pytest.raises(ValueError, match="use the 'cfer' strategy"):
        preset_config("published", nearest_mean="memory")
    with pytest.raises(ValueError, match="nearest_mean must be"):
        CferConfig(nearest_mean="exemplars")


def test_concat_replay_trains_on_new_data_and_the_whole_memory(tiny_stream):
    from avalanche.core import SupervisedPlugin

    seen = []

    class Sizes(SupervisedPlugin):
        def before_training_epoch(self, strategy, **kwargs):
            seen.append(len(strategy.adapted_dataset))

    strategy = _build("cfer", tiny_stream, cfer=CferConfig(replay_batches="concat", nearest_mean="off",
                                                           logit_adjustment=0.0), plugins=[Sizes()])
    replay = next(p for p in strategy.plugins if isinstance(p, ConcatReplayPlugin))
    sizes = []
    for exp in tiny_stream.train_stream:
        memory = len(replay.storage_policy.buffer)
        strategy.train(exp)
        sizes.append((seen[-1], len(exp.dataset) + memory))
    assert all(a == b for a, b in sizes) and sizes[1][1] > len(tiny_stream.train_stream[1].dataset)


def test_a_saved_student_predicts_by_its_class_means_again(tiny_stream, tmp_path):
    from cfer.continual.plugins.ncm import attach_class_means, attached_class_means
    from cfer.models.io import save_model

    model = build_model(arch="cfer_tiny", num_classes=3, img_size=24, seed=0).eval()
    means = torch.nn.functional.normalize(torch.randn(3, model.num_features), dim=1)
    plugin = attach_class_means(model, means, scale=5.0)
    x = torch.rand(4, 3, 24, 24)
    with torch.no_grad():
        expected = model(x)
        f = torch.nn.functional.normalize(model.embed(x), dim=1)
    assert torch.allclose(expected, 5.0 * f @ means.T, atol=1e-5)
    save_model(model, tmp_path / "s.pt", arch="cfer_tiny", classes=("a", "b", "c"),
               extra={"image_size": 24, **attached_class_means(model)})
    plugin.detach()
    assert attached_class_means(model) == {}
    again, _ = load_model(tmp_path / "s.pt")
    with torch.no_grad():
        assert torch.allclose(again(x), expected, atol=1e-5)
