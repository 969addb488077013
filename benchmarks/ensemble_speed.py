"""What a late-fusion ensemble costs over its members run one after the other.

Times, in one process with the same threads, a training step (forward, loss, backward,
Adam step) and an inference pass (eval, no gradients) of a batch of RGB images for

* a :class:`cfer.models.ensemble.LateFusionEnsemble` of the members, trained with its
  ensemble loss (every member's and the fused cross-entropy plus the KL term);
* each member alone (the same backbone and a linear head, cross-entropy), summed.

Steps alternate between the two (so load changes hit both alike); times are medians of
``--repeats`` steps after two warm-up steps. The goal is a ratio of at most 1.1.

Usage:
    python benchmarks/ensemble_speed.py [--members resemotenet_slim cfer_tiny] [--sizes 0 0]
        [--batch 64] [--image-size 48] [--threads 1] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm
import torch
from torch import nn

from cfer.models import create_backbone
from cfer.models.ensemble import LateFusionEnsemble
from cfer.models.ensemble_loss import EnsembleCriterion


class Alone(nn.Module):
    """One member by itself: backbone, linear head, resize to its own size."""

    def __init__(self, name: str, size: int | None, classes: int) -> None:
        super().__init__()
        self.backbone = create_backbone(name, img_size=size)
        self.head = nn.Linear(self.backbone.num_features, classes)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor) -> float:
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()
    return time.perf_counter() - t0


@torch.no_grad()
def _infer(model: nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    model(x)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", nargs="+", default=["resemotenet_slim", "cfer_tiny"])
    ap.add_argument("--sizes", nargs="+", type=int, default=None, help="member input sides (0: the batch's)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [s or None for s in (args.sizes or [0] * len(args.members))]
    torch.manual_seed(0)
    ens = LateFusionEnsemble(members=args.members, img_sizes=sizes, num_classes=args.classes,
                             img_size=args.image_size)
    alone = [Alone(n, s or args.image_size, args.classes) for n, s in zip(args.members, sizes)]
    x = torch.rand(args.batch, 3, args.image_size, args.image_size)
    y = torch.randint(0, args.classes, (args.batch,))
    # each member alone is fed at its own size (resized once, outside the timing)
    xs = [x if s is None else nn.functional.interpolate(x, size=(s, s), mode="bilinear", antialias=True)
          for s in sizes]
    crit, ce = EnsembleCriterion(ens), nn.CrossEntropyLoss()
    e_opt = torch.optim.Adam(ens.parameters())
    a_opt = [torch.optim.Adam(m.parameters()) for m in alone]
    times: dict[str, list[float]] = {"ens_train": [], "sum_train": [], "ens_infer": [], "sum_infer": []}
    for i in range(args.repeats + 2):
        ens.train()
        t_e = _train_step(ens, e_opt, crit, x, y)
        t_a = 0.0
        for m, o, xm in zip(alone, a_opt, xs):
            m.train()
            t_a += _train_step(m, o, ce, xm, y)
        ens.eval()
        i_e = _infer(ens, x)
        i_a = 0.0
        for m, xm in zip(alone, xs):
            m.eval()
            i_a += _infer(m, xm)
        if i >= 2:
            for k, v in zip(times, (t_e, t_a, i_e, i_a)):
                times[k].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    names = " + ".join(n if s is None else f"{n}@{s}" for n, s in zip(args.members, sizes))
    print(f"{names}: batch {args.batch}, {args.image_size} px RGB, {args.threads} thread(s), median of "
          f"{args.repeats} steps (torch {torch.__version__}, timm {timm.__version__})\n")
    print("| pass | ensemble ms | members alone, summed ms | ratio |")
    print("|---|---:|---:|---:|")
    for what, e, a in (("training step", "ens_train", "sum_train"), ("inference", "ens_infer", "sum_infer")):
        print(f"| {what} | {1000 * med[e]:.1f} | {1000 * med[a]:.1f} | {med[e] / med[a]:.3f}x |")


if __name__ == "__main__":
    main()
