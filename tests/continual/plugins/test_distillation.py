import copy
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
from cfer.models.features import find_feature_layer


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


# -- any nn.Module: features by a hook on the classifier's input ------------------------------

class MyNet(nn.Module):
    """A user's own network: a body and a linear classifier, no timm feature API."""

    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))


def _two_experiences(model, plugin, stream):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    strategy = make_strategy("naive", model=model, optimizer=opt, train_epochs=1, train_mb_size=16, plugins=[plugin])
    strategy.train(stream.train_stream[0])
    strategy.train(stream.train_stream[1])
    return strategy


@pytest.mark.parametrize("arch", ["mynet", "torchvision_resnet18"])
def test_feature_distillation_works_on_any_module(tiny_stream, arch):
    """Issue 15 #14: a plain nn.Module or a torchvision ResNet used to fail at the start of the
    second experience ('MyNet' object has no attribute 'forward_head')."""
    n = len(tiny_stream.class_names)
    torch.manual_seed(0)
    if arch == "mynet":
        model, width, layer = MyNet(n), 8, "fc"
    else:
        from torchvision.models import resnet18

        model, width, layer = resnet18(num_classes=n), 512, "fc"
    plugin = BasicDistillationPlugin(feature_weight=1.0)
    _two_experiences(model, plugin, tiny_stream)
    assert plugin._s_layer == (layer, "input") and plugin._t_layer == (layer, "input")
    assert tuple(plugin.projection.weight.shape) == (width, width)
    assert plugin.last["feat"] > 0 and plugin.last["kd"] > 0
    # The hooks are gone after training: the user's model is left as it was.
    assert all(not m._forward_hooks for m in model.modules())


def test_a_model_the_plugin_cannot_read_fails_at_the_first_experience_and_names_the_fix(tiny_stream):
    class LastLinearInside(nn.Module):  # registers its classifier first, a Linear inside the body last
        def __init__(self, n):
            super().__init__()
            self.fc = nn.Linear(6, n)
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 24 * 24, 6), nn.ReLU())

        def forward(self, x):
            return self.fc(self.body(x))

    n = len(tiny_stream.class_names)
    opt_model = LastLinearInside(n)
    plugin = BasicDistillationPlugin(feature_weight=1.0)
    opt = torch.optim.SGD(opt_model.parameters(), lr=0.05)
    strategy = make_strategy("naive", model=opt_model, optimizer=opt, train_mb_size=16, plugins=[plugin])
    with pytest.raises(ValueError, match=r"'body.1', gives 6 outputs but the model gives 10.*feature_layer="):
        strategy.train(tiny_stream.train_stream[0])
    assert plugin.calls.get("before_backward", 0) == 0  # before any training
    fixed = BasicDistillationPlugin(feature_weight=1.0, feature_layer="fc")
    _two_experiences(LastLinearInside(n), fixed, tiny_stream)
    assert fixed.last["feat"] > 0
    with pytest.raises(ValueError, match="feature_layer 'fcc' is not a module of LastLinearInside.*'fc'"):
        _two_experiences(LastLinearInside(n), BasicDistillationPlugin(feature_layer="fcc"), tiny_stream)
    with pytest.raises(ValueError, match="teacher: .*pass teacher_feature_layer="):
        BasicDistillationPlugin(teacher=nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()))
    with pytest.raises(ValueError, match="feature_from must be 'input' or 'output'"):
        BasicDistillationPlugin(feature_from="inside")


def test_a_layer_output_can_be_the_features_and_the_teacher_can_differ(tiny_stream):
    """feature_layer + feature_from='output' on the student; a timm teacher found by itself."""
    import timm

    n = len(tiny_stream.class_names)
    teacher = timm.create_model("test_resnet", num_classes=n)
    plugin = BasicDistillationPlugin(teacher=teacher, feature_layer="body", feature_from="output",
                                     teacher_feature_layer="fc", teacher_feature_from="input")
    torch.manual_seed(0)
    _two_experiences(MyNet(n), plugin, tiny_stream)
    assert plugin._s_layer == ("body", "output") and plugin._t_layer == ("fc", "input")
    assert tuple(plugin.projection.weight.shape) == (teacher.num_features, 8)
    assert plugin.last["feat"] > 0


@pytest.mark.parametrize("cache", [False, True])
def test_one_training_forward_per_mini_batch_for_a_timm_model_without_pre_logits(tiny_stream, cache):
    """timm's test_resnet has no `pre_logits` module: the plugin used to run a second
    train-mode forward per mini-batch for the features (twice the cost, batch-norm
    statistics updated twice); the hook reads them in the strategy's own forward. The
    teacher runs on every mini-batch of the first epoch only when its outputs are cached."""
    import timm

    n = len(tiny_stream.class_names)
    torch.manual_seed(0)
    student = timm.create_model("test_resnet", num_classes=n)
    teacher = timm.create_model("test_resnet", num_classes=n)
    assert not hasattr(student, "pre_logits")
    plugin = BasicDistillationPlugin(teacher=teacher, feature_weight=1.0, cache_outputs=cache)
    opt = torch.optim.SGD(student.parameters(), lr=0.05)
    strategy = make_strategy("naive", model=student, optimizer=opt, train_epochs=2, train_mb_size=16,
                             plugins=[plugin])
    # Count passes through the stem (a hook on the model itself misses forward_features calls).
    train_forwards, teacher_forwards = [], []
    student.conv1.register_forward_hook(lambda m, i, o: train_forwards.append(1) if m.training else None)
    plugin.teacher.conv1.register_forward_hook(lambda m, i, o: teacher_forwards.append(m.training))
    strategy.train(tiny_stream.train_stream[0])
    batches = plugin.calls["before_backward"]
    assert batches == 2 * math.ceil(len(tiny_stream.train_stream[0].dataset) / 16)
    assert len(train_forwards) == batches
    assert int(student.bn1.num_batches_tracked) == batches  # batch-norm statistics: once per mini-batch
    assert not any(teacher_forwards)
    if cache:  # the first epoch's mini-batches (+ the first experience's probe); the second reads the cache
        n = len(tiny_stream.train_stream[0].dataset)
        assert len(teacher_forwards) == batches // 2 + 1
        assert plugin.cache_stats == {"teacher": {"hits": n, "misses": n, "forwards": batches // 2, "active": True}}
    else:
        assert len(teacher_forwards) == batches + 1 and plugin.cache_stats == {}
    # The feature term is the MSE between the projected student features and the teacher's
    # pre-logit features (timm's forward_head(pre_logits=True), the classifier's input).
    from cfer.models.features import pre_logits, probe_features

    x = tiny_stream.train_stream[0].dataset[0][0][None]
    with torch.no_grad():
        t = plugin.teacher.forward_head(plugin.teacher.forward_features(x), pre_logits=True)
        assert torch.allclose(probe_features(plugin.teacher, x, layer="fc"), t)
        assert torch.allclose(pre_logits(plugin.teacher, x, feature_layer="fc"), t)
    assert plugin.last["feat"] > 0


@pytest.mark.parametrize("scale", ["constant", "sqrt_ratio"])
def test_previous_student_distillation_is_the_formula_from_the_second_compound_step(tiny_stream, scale):
    class PrevProbe(_Probe):
        def before_backward(self, strategy, **kwargs):
            prev = None
            if self.previous is not None:
                with torch.no_grad():
                    prev = self.previous(strategy.mb_x)
            super().before_backward(strategy, **kwargs)
            if self.records and len(self.records[-1]) == 5:
                self.records[-1] = (*self.records[-1], prev)

    plugin = PrevProbe(feature_weight=0.0, previous_weight=2.0, previous_weight_scale=scale)
    model, strategy = _strategy(plugin, tiny_stream)
    run_stream(strategy, tiny_stream)
    steps = {r[0] for r in plugin.records}
    assert steps == {1, 2}
    for step, ce, x, out, total, prev in plugin.records:
        with torch.no_grad():
            t = plugin.teacher(x)
        g = 0.1 * math.exp(-step / (1 + math.e))
        expected = (1 - g) * ce + g * logit_distillation(out, t, temperature=3.0)
        if step == 2:  # the student after the first compound step, over the 8 classes it knew
            assert prev is not None and prev.shape[1] == tiny_stream.n_basic + 2 < out.shape[1]
            # sqrt_ratio: the 8 classes it knew against the step's 2 new ones, sqrt(8 / 2) = 2
            w = 2.0 if scale == "constant" else 4.0
            expected = expected + w * logit_distillation(out[:, : prev.shape[1]], prev, temperature=3.0)
        assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert plugin.last["previous_weight"] == pytest.approx(2.0 if scale == "constant" else 4.0)
    assert all(not p.requires_grad for p in plugin.previous.parameters()) and not plugin.previous.training
    with pytest.raises(ValueError, match="previous_weight must be >= 0"):
        BasicDistillationPlugin(previous_weight=-1)
    with pytest.raises(ValueError, match="previous_weight_scale must be"):
        BasicDistillationPlugin(previous_weight_scale="linear")


def test_previous_feature_distillation_is_one_minus_cosine_to_the_previous_students_features(tiny_stream):
    from cfer.models.features import probe_features

    class FeatProbe(_Probe):
        def before_backward(self, strategy, **kwargs):
            feats = None
            if self._p_tap is not None:
                feats = self._tap.features.detach().clone()
                with torch.no_grad():
                    prev = probe_features(self.previous, strategy.mb_x, layer=self._s_layer[0], side=self._s_layer[1])
                feats = (feats, prev)
            super().before_backward(strategy, **kwargs)
            if self.records and len(self.records[-1]) == 5:
                self.records[-1] = (*self.records[-1], feats)

    plugin = FeatProbe(feature_weight=0.0, previous_feature_weight=2.0)
    model, strategy = _strategy(plugin, tiny_stream)
    run_stream(strategy, tiny_stream)
    assert {r[0] for r in plugin.records} == {1, 2}
    second = 0
    for step, ce, x, out, total, feats in plugin.records:
        with torch.no_grad():
            t = plugin.teacher(x)
        g = 0.1 * math.exp(-step / (1 + math.e))
        expected = (1 - g) * ce + g * logit_distillation(out, t, temperature=3.0)
        if step == 2:  # the student after the first compound step: the term starts here, as the logit one does
            s_feat, p_feat = feats
            assert s_feat.shape == p_feat.shape and not torch.allclose(s_feat, p_feat)
            expected = expected + 2.0 * (1 - nn.functional.cosine_similarity(s_feat, p_feat, dim=1)).mean()
            second += 1
        else:
            assert feats is None
        assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert second > 0 and plugin.last["previous_feat"] > 0
    assert all(not p.requires_grad for p in plugin.previous.parameters())
    with pytest.raises(ValueError, match="previous_feature_weight must be >= 0"):
        BasicDistillationPlugin(previous_feature_weight=-1)


def test_the_previous_feature_term_keeps_the_old_features_closer(tiny_stream):
    """Training the same stream with and without the term: with it, the final student's
    features of the first step's images stay closer (in cosine) to the previous student's."""
    from cfer.models.features import probe_features

    def run(weight):
        torch.manual_seed(0)
        plugin = BasicDistillationPlugin(feature_weight=0.0, previous_feature_weight=weight)
        model, strategy = _strategy(plugin, tiny_stream, epochs=3)
        for k, exp in enumerate(tiny_stream.train_stream):
            if k == len(tiny_stream.train_stream) - 1:
                before = copy.deepcopy(model).eval()
            strategy.train(exp)
        x = torch.stack([tiny_stream.train_stream[0].dataset[i][0] for i in range(32)])
        layer = find_feature_layer(model)
        with torch.no_grad():
            a = probe_features(before, x, layer=layer[0], side=layer[1])
            b = probe_features(model.eval(), x, layer=layer[0], side=layer[1])
        return nn.functional.cosine_similarity(a, b, dim=1).mean().item()

    assert run(10.0) > run(0.0)


def test_old_new_ratio_reads_the_experience_then_the_head_widths():
    from types import SimpleNamespace

    from cfer.continual.plugins.distillation import old_new_ratio

    exp = SimpleNamespace(previous_classes=[0, 1, 2, 3, 4, 5], classes_in_this_experience=[6, 7])
    assert old_new_ratio(exp, n_old=99, width=100) == 3.0  # 6 old classes, 2 new: the class lists win
    assert old_new_ratio(SimpleNamespace(), n_old=8, width=10) == 4.0  # no class lists: 8 outputs known, 2 more
    assert old_new_ratio(SimpleNamespace(), n_old=10, width=10) == 1.0  # a fixed-width head: no ratio to read


@pytest.mark.parametrize("samples", ["memory", "new"])
def test_the_feature_term_covers_only_the_memorys_or_the_new_classes_items_when_asked(tiny_stream, samples):
    class RowsProbe(BasicDistillationPlugin):
        checked = 0

        def before_backward(self, strategy, **kwargs):
            super().before_backward(strategy, **kwargs)
            if self.teacher is None or self._tap is None:
                return
            old = torch.isin(strategy.mb_y, torch.tensor(sorted(strategy.experience.previous_classes)))
            rows = old if samples == "memory" else ~old
            with torch.no_grad():
                s_feat = self.projection(self._tap.features) if self.projection is not None else self._tap.features
                t_feat = self._frozen("teacher", strategy.mb_x)[1]
                expected = nn.functional.mse_loss(s_feat[rows], t_feat[rows]).item() if rows.any() else 0.0
            assert self.last["feat"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
            self.checked += int(bool(rows.any() and (~rows).any()))  # a batch of both kinds

    plugin = RowsProbe(feature_weight=1.0, feature_samples=samples)
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    strategy = make_strategy("replay", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
                             train_epochs=1, train_mb_size=16, memory_size=30, plugins=[plugin])
    run_stream(strategy, tiny_stream)
    assert plugin.checked > 0
    with pytest.raises(ValueError, match="feature_samples must be one of"):
        BasicDistillationPlugin(feature_samples="old")


def test_feature_rows_need_the_streams_class_lists():
    from types import SimpleNamespace

    from cfer.continual.plugins.distillation_terms import feature_rows

    y = torch.tensor([0, 3, 1])
    exp = SimpleNamespace(previous_classes=[0, 1], classes_in_this_experience=[3])
    assert feature_rows("all", y, exp) is None
    assert feature_rows("new", y, exp).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="previous_classes"):
        feature_rows("memory", y, SimpleNamespace())
