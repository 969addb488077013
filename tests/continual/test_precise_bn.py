import copy

import pytest
import torch
from torch import nn

from cfer.continual.precise_bn import recompute_batchnorm
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.data.synthetic import make_synthetic_splits


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Dropout(0.5), nn.BatchNorm2d(3, momentum=0.5), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_the_statistics_are_the_average_over_the_inputs_with_dropout_off():
    net = _net()
    weights = copy.deepcopy(net.state_dict())
    net.train()
    net(torch.rand(8, 3, 6, 6) * 9)  # moving averages of some other data
    x = torch.randn(40, 3, 6, 6) * 2 + 3
    assert recompute_batchnorm(net, x, batch_size=10) == 2
    bn = net[1]
    batches = x.split(10)
    # the dropout in front stayed off: the first layer saw x itself, batch by batch
    assert torch.allclose(bn.running_mean, torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack([b.transpose(0, 1).reshape(3, -1).var(1) for b in batches])
                          .mean(0), atol=1e-4)
    assert bn.momentum == 0.5 and net[3].momentum == 0.1  # the layers' own momenta are back
    assert not net.training and not any(m.training for m in net.modules())
    for k, v in net.state_dict().items():  # only the running statistics changed
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, weights[k]), k
    # the same data gives the same statistics, whatever the layers held before
    again = copy.deepcopy(net)
    again.train()
    again(torch.rand(8, 3, 6, 6))
    recompute_batchnorm(again, x, batch_size=10)
    assert torch.allclose(again[3].running_var, net[3].running_var)


def test_a_model_without_batchnorm_is_left_alone_and_bad_input_names_the_fix():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    before = copy.deepcopy(net.state_dict())
    assert recompute_batchnorm(net, torch.rand(4, 3, 2, 2)) == 0
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        recompute_batchnorm(_net(), torch.rand(4, 3, 6, 6), batch_size=1)
    with pytest.raises(ValueError, match="x is empty"):
        recompute_batchnorm(_net(), torch.rand(0, 3, 6, 6))


def test_the_teacher_keeps_its_best_epoch_with_precise_statistics():
    sp = make_synthetic_splits(classes="basic", subjects=(4, 2, 1), per_class=2, image_size=32, seed=3)
    config = TeacherConfig(arch="cfer_tiny", max_epochs=3, patience=3, batch_size=16, precise_bn=True)
    res = train_teacher(train=sp["train"], val=sp["val"], config=config)
    plain = train_teacher(train=sp["train"], val=sp["val"], config=TeacherConfig(
        arch="cfer_tiny", max_epochs=3, patience=3, batch_size=16))
    # recomputing on the training faces again changes nothing: the saved state already holds them
    again = copy.deepcopy(res.model)
    recompute_batchnorm(again, sp["train"].tensors()[0], batch_size=16)
    bns = [(a, b) for a, b in zip(res.model.modules(), again.modules()) if isinstance(a, nn.BatchNorm2d)]
    assert bns and all(torch.allclose(a.running_mean, b.running_mean, atol=1e-6)
                       and torch.allclose(a.running_var, b.running_var, atol=1e-6) for a, b in bns)
    # without it the model keeps moving averages, which differ from the training set's statistics
    precise = copy.deepcopy(plain.model)
    recompute_batchnorm(precise, sp["train"].tensors()[0], batch_size=16)
    pairs = [(a, b) for a, b in zip(plain.model.modules(), precise.modules()) if isinstance(a, nn.BatchNorm2d)]
    assert any(not torch.allclose(a.running_mean, b.running_mean, atol=1e-3) for a, b in pairs)


def test_batches_from_a_loader_give_the_same_statistics_and_single_items_are_skipped():
    from cfer.continual.precise_bn import recompute_batchnorm_over

    x = torch.randn(40, 3, 6, 6)
    a, b = _net(), _net()
    recompute_batchnorm(a, x, batch_size=10)
    # the same batches, plus a batch of one that has no variance: skipped
    assert recompute_batchnorm_over(b, [*x.split(10), torch.randn(1, 3, 6, 6) * 100]) == 2
    assert torch.allclose(a[1].running_mean, b[1].running_mean) and torch.allclose(a[3].running_var, b[3].running_var)
    with pytest.raises(ValueError, match="batches of two or more inputs; none came"):
        recompute_batchnorm_over(_net(), [torch.rand(1, 3, 6, 6)])
