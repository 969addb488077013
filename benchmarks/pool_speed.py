"""cfer's 2x2 max pooling against PyTorch's ``nn.MaxPool2d(2)`` inside ``resemotenet_slim``.

Two copies of the model with the same weights, one with cfer's pools
(:class:`cfer.models.pooling.MaxPool2x2`, the default) and one with PyTorch's, take turns
on the same batch: a no-grad forward in eval mode (evaluation, the teacher's outputs,
class means) and a training step's forward + backward. Before timing, the script checks
that the two give the same outputs and the same gradients bit for bit. Median of
``--repeats`` rounds (each round times ``--steps`` calls of each), one thread unless
``--threads``.

A clip model (``--arch temporal_slim``) gets random packed clips of its own layout instead
of images (``--size`` and ``--channels`` then do not apply).

Usage:
    python benchmarks/pool_speed.py [--batch 64] [--size 48] [--channels 1] [--threads 1] [--repeats 7]
    python benchmarks/pool_speed.py --arch temporal_slim --batch 16
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
import torch.nn.functional as F
from torch import nn

import cfer.models  # noqa: F401 - registers cfer's models
from cfer.models.pooling import MaxPool2x2


def with_torch_pools(net: nn.Module) -> nn.Module:
    """``net`` with every :class:`MaxPool2x2` replaced by ``nn.MaxPool2d(2)`` (in place)."""
    for name, child in net.named_children():
        if isinstance(child, MaxPool2x2):
            setattr(net, name, nn.MaxPool2d(2))
        else:
            with_torch_pools(child)
    return net


def _infer(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        return net(x)


def _train_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    net.train()
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    return [p.grad for p in net.parameters()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resemotenet_slim")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = {"cfer (MaxPool2x2)": timm.create_model(args.arch, num_classes=7, in_chans=args.channels, drop_rate=0.0)}
    torch_net = with_torch_pools(timm.create_model(args.arch, num_classes=7, in_chans=args.channels, drop_rate=0.0))
    torch_net.load_state_dict(nets["cfer (MaxPool2x2)"].state_dict())
    nets["PyTorch (nn.MaxPool2d)"] = torch_net
    layout = getattr(torch_net, "clip_layout", None)  # a clip model takes packed clips (frames, landmarks, voice)
    x = torch.rand(args.batch, *layout.shape) if layout is not None else torch.rand(args.batch, args.channels,
                                                                                    args.size, args.size)
    y = torch.randint(0, 7, (args.batch,))
    a, b = nets.values()
    same_out = torch.equal(_infer(a, x), _infer(b, x))
    grads = []
    for net in (a, b):  # the same draws for both (dropout, a clip model's modality dropout)
        torch.manual_seed(1)
        grads.append(_train_step(net, x, y))
    same_grad = all(torch.equal(p, q) for p, q in zip(*grads))
    if not (same_out and same_grad):
        raise SystemExit(f"the two pools disagree (outputs equal: {same_out}, gradients equal: {same_grad})")
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for name, net in nets.items():
            for what, call in (("no-grad forward", lambda net=net: _infer(net, x)),
                               ("forward + backward", lambda net=net: _train_step(net, x, y))):
                call()  # warm
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    call()
                times.setdefault((what, name), []).append((time.perf_counter() - t0) / args.steps)
    what_in = (f"{args.batch} clips {tuple(layout.shape)}" if layout is not None
               else f"{args.batch} images {args.size}x{args.size}x{args.channels}")
    print(f"{args.arch}, {what_in}, {args.threads} thread(s), "
          f"median of {args.repeats} rounds (torch {torch.__version__}); outputs and gradients equal bit for bit\n")
    print("| pass | pools | ms / batch | items / s | time vs PyTorch's pools |")
    print("|---|---|---:|---:|---:|")
    for what in ("no-grad forward", "forward + backward"):
        ref = statistics.median(times[(what, "PyTorch (nn.MaxPool2d)")])
        for name in nets:
            sec = statistics.median(times[(what, name)])
            print(f"| {what} | {name} | {1000 * sec:.1f} | {args.batch / sec:,.0f} | {sec / ref:.2f}x |")


if __name__ == "__main__":
    main()
