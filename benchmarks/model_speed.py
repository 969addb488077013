"""Parameter counts and training-step time of cfer's models and a timm baseline.

Times one forward + backward (cross-entropy over 7 classes) of a batch of RGB images
(64x64 unless ``--size``), for every model in the same run with the same threads, and prints
a markdown table with ratios to ``resemotenet_slim``. Times are the median of ``--repeats`` steps
after two warm-up steps; the models take turns step by step. Targets on 2 CPU threads: ``cfer_tiny`` under 30 ms,
``resemotenet_slim`` well under 0.5 s.

Usage:
    python benchmarks/model_speed.py [--batch 64] [--size 64] [--threads 2] [--repeats 7]
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


def step_seconds(names: list[str], *, batch: int, repeats: int, size: int = 64,
                 seed: int = 0) -> dict[str, tuple[int, float]]:
    """Parameter count and median seconds of one forward + backward of ``batch`` images, per model.

    The models take turns, one step each per round, so a change in the machine's load
    touches every model alike and the ratios stay comparable on a shared machine.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    nets = {name: timm.create_model(name, num_classes=7, pretrained=False).train() for name in names}
    x = torch.rand(batch, 3, size, size, generator=gen)
    y = torch.randint(0, 7, (batch,), generator=gen)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats + 2):
        for name, net in nets.items():
            net.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            F.cross_entropy(net(x), y).backward()
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    return {name: (sum(p.numel() for p in net.parameters()), statistics.median(times[name]))
            for name, net in nets.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["cfer_tiny", "resemotenet_slim", "resemotenet", "resnet18"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = step_seconds(args.models, batch=args.batch, repeats=args.repeats, size=args.size)
    ref_params, ref_time = rows.get("resemotenet_slim", next(iter(rows.values())))
    ref = "resemotenet_slim" if "resemotenet_slim" in rows else args.models[0]
    print(f"forward + backward of {args.batch} images {args.size}x{args.size}x3, {args.threads} threads, "
          f"median of {args.repeats} steps (torch {torch.__version__}, timm {timm.__version__})\n")
    print(f"| model | parameters | ms / batch | images / s | params vs {ref} | time vs {ref} |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (params, sec) in rows.items():
        print(f"| {name} | {params:,} | {1000 * sec:.1f} | {args.batch / sec:,.0f} | "
              f"{params / ref_params:.3g}x | {sec / ref_time:.2f}x |")


if __name__ == "__main__":
    main()
