"""Parameter counts and training-step time of cfer's models and a timm baseline.

Times one forward + backward (cross-entropy over 7 classes) of a batch of 64x64 RGB
images, for every model in the same run with the same threads, and prints a markdown
table with ratios to ``resemotenet_slim``. Times are the median of ``--repeats`` steps
after two warm-up steps. Targets on 2 CPU threads: ``cfer_tiny`` under 30 ms,
``resemotenet_slim`` well under 0.5 s.

Usage:
    python benchmarks/model_speed.py [--batch 64] [--threads 2] [--repeats 7]
        [--models cfer_tiny resemotenet_slim resemotenet resnet18]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm
import torch
import torch.nn.functional as F

import cfer.models  # noqa: F401 - registers cfer's models


def step_seconds(name: str, *, batch: int, repeats: int, seed: int = 0) -> tuple[int, float]:
    """Parameter count and median seconds of one forward + backward of ``batch`` images."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = timm.create_model(name, num_classes=7, pretrained=False).train()
    x = torch.rand(batch, 3, 64, 64, generator=gen)
    y = torch.randint(0, 7, (batch,), generator=gen)
    times = []
    for i in range(repeats + 2):
        net.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        F.cross_entropy(net(x), y).backward()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return sum(p.numel() for p in net.parameters()), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["cfer_tiny", "resemotenet_slim", "resemotenet", "resnet18"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {name: step_seconds(name, batch=args.batch, repeats=args.repeats) for name in args.models}
    ref_params, ref_time = rows.get("resemotenet_slim", next(iter(rows.values())))
    ref = "resemotenet_slim" if "resemotenet_slim" in rows else args.models[0]
    print(f"forward + backward of {args.batch} images 64x64x3, {args.threads} threads, "
          f"median of {args.repeats} steps (torch {torch.__version__}, timm {timm.__version__})\n")
    print(f"| model | parameters | ms / batch | images / s | params vs {ref} | time vs {ref} |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (params, sec) in rows.items():
        print(f"| {name} | {params:,} | {1000 * sec:.1f} | {args.batch / sec:,.0f} | "
              f"{params / ref_params:.3g}x | {sec / ref_time:.2f}x |")


if __name__ == "__main__":
    main()
