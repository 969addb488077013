import pytest
import timm
import torch
from torch import nn

import cfer.models  # noqa: F401 - registers the models
from cfer.models.pooling import MaxPool2x2, max_pool2x2


def _ties(shape: tuple[int, ...]) -> torch.Tensor:
    """Random values with flat regions (ties inside windows), zeros (as after a ReLU) and a NaN."""
    x = torch.randn(shape).relu()
    x[..., :4, :4] = 0.75
    x.view(-1)[5] = float("nan")
    return x


def test_fast_path_gives_max_pool2d_values_with_ties_zeros_and_nan():
    x = _ties((3, 5, 8, 6))
    ref = nn.functional.max_pool2d(x, 2)
    out = max_pool2x2(x)
    assert out.shape == ref.shape and out.is_contiguous()
    assert torch.equal(out.isnan(), ref.isnan()) and bool(ref.isnan().any())
    assert torch.equal(out.nan_to_num(-1.0), ref.nan_to_num(-1.0))
    with torch.no_grad():
        assert torch.equal(MaxPool2x2()(x).nan_to_num(-1.0), ref.nan_to_num(-1.0))


def test_odd_sizes_fall_back_to_pytorch_and_the_function_refuses_them():
    x = torch.randn(2, 3, 7, 9)
    with torch.no_grad():
        assert torch.equal(MaxPool2x2()(x), nn.functional.max_pool2d(x, 2))
    with pytest.raises(ValueError, match="even height and width"):
        max_pool2x2(x)


def test_gradients_go_through_pytorchs_kernel_and_match_it():
    x = _ties((2, 3, 6, 6)).nan_to_num(0.0)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(2, 3, 3, 3)
    MaxPool2x2()(a).backward(g)
    nn.functional.max_pool2d(b, 2).backward(g)
    # one gradient per window, on the position max_pool2d picks (ties: the first), as before
    assert torch.equal(a.grad, b.grad)
    assert int((a.grad != 0).sum()) <= g.numel()


@pytest.mark.parametrize("name,size,pools", [("resemotenet_slim", 48, 3), ("resemotenet_slim", 50, 3), ("cfer_tiny", 64, 3),
                                             ("manet_pool_slim", 48, 3), ("manet_tiny", 48, 1)])
def test_models_give_the_same_outputs_and_gradients_as_with_torch_pools(name, size, pools, load_benchmark):
    with_torch_pools = load_benchmark("pool_speed").with_torch_pools  # the benchmark's own swap
    torch.manual_seed(0)
    fast = timm.create_model(name, num_classes=5, in_chans=1, drop_rate=0.0)
    slow = with_torch_pools(timm.create_model(name, num_classes=5, in_chans=1, drop_rate=0.0))
    slow.load_state_dict(fast.state_dict())
    assert sum(isinstance(m, MaxPool2x2) for m in fast.modules()) == pools
    assert not any(isinstance(m, MaxPool2x2) for m in slow.modules())
    x = torch.rand(4, 1, size, size)
    x[:, :, :12, :12] = 0.5  # a flat corner: ties after the first convolution
    for net in (fast, slow):
        net.train().zero_grad()
        net(x).sum().backward()
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(fast.parameters(), slow.parameters()))
    fast.eval(), slow.eval()
    with torch.no_grad():
        assert torch.equal(fast(x), slow(x))
        assert torch.equal(fast.forward_features(x), slow.forward_features(x))
