"""Nearest-class-mean prediction and balanced fine-tuning on the replay memory."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cfer.continual.plugins.balanced import BalancedFinetunePlugin
from cfer.continual.plugins.ncm import NearestMeanPlugin, class_means


def _net(seed=0, width=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, width))


def _strategy(model, memory, *, experience=None, counter=1):
    return SimpleNamespace(model=model, device="cpu", plugins=[SimpleNamespace(storage_policy=SimpleNamespace(
        buffer=memory))], experience=experience, train_mb_size=4, clock=SimpleNamespace(train_exp_counter=counter))


def _features(model, x):
    return model[1](model[0](x))  # the input of the last Linear


def test_predicts_by_nearest_normalised_mean_only_in_eval_between_experiences(make_tensor_dataset):
    model = _net()
    x = torch.randn(12, 4)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    plugin = NearestMeanPlugin(source="memory", scale=10.0)
    strategy = _strategy(model, make_tensor_dataset(x, y))
    assert not plugin.active
    plugin.after_training_exp(strategy)
    assert plugin.active
    f = nn.functional.normalize(_features(model, x).detach(), dim=1)
    means = torch.stack([nn.functional.normalize(f[y == c].mean(0), dim=0) for c in range(3)])
    assert torch.allclose(plugin.means, means, atol=1e-6)
    q = torch.randn(7, 4)
    fq = nn.functional.normalize(_features(model, q).detach(), dim=1)
    model.eval()
    with torch.no_grad():
        out = model(q)
    assert torch.allclose(out, 10.0 * fq @ means.T, atol=1e-5)
    model.train()  # training forwards keep the head
    linear = model[2](model[1](model[0](q)))
    assert torch.allclose(model(q), linear)
    plugin.before_training_exp(strategy)  # the next experience trains and is scored on the head
    assert not plugin.active
    model.eval()
    assert torch.allclose(model(q), linear)


def test_classes_without_items_never_win_and_new_items_pool(make_tensor_dataset):
    model = _net(width=4)  # four outputs, memory of classes 0 and 2 only
    x, y = torch.randn(6, 4), torch.tensor([0, 0, 0, 2, 2, 2])
    new_x, new_y = torch.randn(5, 4), torch.tensor([3, 3, 3, 3, 3])
    plugin = NearestMeanPlugin(source="memory+new")
    strategy = _strategy(model, make_tensor_dataset(x, y), experience=SimpleNamespace(
        dataset=make_tensor_dataset(new_x, new_y)))
    plugin.after_training_exp(strategy)
    assert torch.isnan(plugin.means[1]).all() and not torch.isnan(plugin.means[3]).any()
    model.eval()
    with torch.no_grad():
        pred = model(torch.randn(50, 4)).argmax(1)
    assert set(pred.tolist()) <= {0, 2, 3}
    sums = class_means(model, make_tensor_dataset(new_x, new_y), layer=("2", "input"))
    assert sums[3][1] == 5
    # resume: the means come back from the state and apply once attached
    q = torch.randn(3, 4)
    with torch.no_grad():
        expected = model(q)
    plugin.detach()
    with torch.no_grad():
        assert not torch.allclose(model(q), expected)  # the plain head differs
    fresh = NearestMeanPlugin(source="memory+new")
    fresh.load_state_dict(plugin.state_dict())
    fresh.attach(model)
    with torch.no_grad():
        assert torch.allclose(model(q), expected)
    fresh.detach()


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="source must be"):
        NearestMeanPlugin(source="exemplars")
    with pytest.raises(ValueError, match="scale must be > 0"):
        NearestMeanPlugin(scale=0)
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        BalancedFinetunePlugin(epochs=-1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        BalancedFinetunePlugin(lr=0)


def test_balanced_finetuning_moves_the_head_towards_the_balanced_memory(make_tensor_dataset):
    torch.manual_seed(0)
    x = torch.randn(60, 4)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()  # four balanced-ish classes
    model = _net(width=4)
    with torch.no_grad():  # a head biased to the newest class (3)
        model[2].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 6.0]))
    backbone = [p.detach().clone() for p in model[0].parameters()]
    strategy = _strategy(model, make_tensor_dataset(x, y), counter=1)
    plugin = BalancedFinetunePlugin(epochs=30, lr=0.05, head_only=True)
    before = (model(x).argmax(1) == 3).float().mean().item()
    first = _strategy(model, make_tensor_dataset(x, y), counter=0)
    plugin.after_training_exp(first)  # the first experience is skipped
    assert plugin.passes == 0
    plugin.after_training_exp(strategy)
    after = (model(x).argmax(1) == 3).float().mean().item()
    assert plugin.passes == 1
    assert before > 0.9 and after < 0.5  # the bias is gone: class 3 is a quarter of the memory
    assert all(torch.equal(a, b) for a, b in zip(backbone, model[0].parameters()))  # head only


def test_mirror_means_pool_each_item_with_its_left_right_flip(make_tensor_dataset):
    # Inputs are (2, 2) "images" flattened by the net, so flipping the last axis changes them.
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    x = torch.randn(9, 1, 2, 2)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])

    def feats(inp):
        return nn.functional.normalize(model[2](model[1](model[0](inp))).detach(), dim=1)

    plain, mirror = NearestMeanPlugin(), NearestMeanPlugin(mirror=True)
    for plugin in (plain, mirror):
        plugin.after_training_exp(_strategy(model, make_tensor_dataset(x, y)))
        plugin.detach()
    f, g = feats(x), feats(torch.flip(x, [-1]))
    for c in range(3):  # iCaRL's rule: the mean of both halves, normalised
        want = nn.functional.normalize((f[y == c].mean(0) + g[y == c].mean(0)) / 2, dim=0)
        assert torch.allclose(mirror.means[c], want, atol=1e-6)
        assert torch.allclose(plain.means[c], nn.functional.normalize(f[y == c].mean(0), dim=0), atol=1e-6)
    assert not torch.allclose(mirror.means, plain.means, atol=1e-3)
    sums = class_means(model, make_tensor_dataset(x, y), layer=("3", "input"), mirror=True)
    assert {c: n for c, (_, n) in sums.items()} == {0: 6, 1: 6, 2: 6}


def test_head_weight_adds_the_heads_log_probabilities(make_tensor_dataset):
    model = _net()
    x, y = torch.randn(12, 4), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    alone, vote = NearestMeanPlugin(scale=10.0), NearestMeanPlugin(scale=10.0, head_weight=0.5)
    q = torch.randn(7, 4)
    with torch.no_grad():
        head = model(q)
    outs = []
    for plugin in (alone, vote):
        plugin.after_training_exp(_strategy(model, make_tensor_dataset(x, y)))
        model.eval()
        with torch.no_grad():
            outs.append(model(q))
        plugin.detach()
        model.train()
    want = torch.log_softmax(outs[0], 1) + 0.5 * torch.log_softmax(head, 1)
    assert torch.allclose(outs[1], want, atol=1e-5)
    with pytest.raises(ValueError, match="head_weight must be >= 0"):
        NearestMeanPlugin(head_weight=-1.0)
