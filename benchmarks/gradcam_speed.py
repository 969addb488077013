"""Grad-CAM throughput on 64x64 faces, and its cost relative to a plain forward + backward.

Times ``cfer.explain.gradcam.explain`` over a batch of synthetic faces with the default
model, and a plain forward + backward (sum of the target logits) over the same batch, in
the same run and with the same threads. Requirement: at least 100 images/s on 2 cores.

Usage:
    python benchmarks/gradcam_speed.py [--arch resemotenet_slim] [--batch 64] [--images 512]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from cfer.continual.growing import build_model
from cfer.data.synthetic import render_faces
from cfer.explain.gradcam import explain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resemotenet_slim")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=["gradcam", "gradcam++", "layercam", "eigencam"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    faces = render_faces(n_subjects=max(1, args.images // 22 + 1), per_class=1, seed=3)
    x = faces.tensors()[0][: args.images]
    model = build_model(arch=args.arch, num_classes=22, seed=0)
    targets = faces.labels[: len(x)].tolist()
    explain(model, x[: args.batch], targets=targets[: args.batch], batch_size=args.batch)  # warm-up

    def plain() -> float:
        model.eval()
        t0 = time.perf_counter()
        for i in range(0, len(x), args.batch):
            xb = x[i:i + args.batch].clone().requires_grad_(True)
            out = model(xb)
            out.gather(1, torch.as_tensor(targets[i:i + args.batch])[:, None]).sum().backward()
            model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    def cam(method: str) -> float:
        t0 = time.perf_counter()
        explain(model, x, method=method, targets=targets, batch_size=args.batch)
        return time.perf_counter() - t0

    # Interleave the measurements and keep each one's best of --repeats, so drifts in
    # machine load hit every row alike.
    best = {name: float("inf") for name in ["plain", *args.methods]}
    for _ in range(args.repeats):
        best["plain"] = min(best["plain"], plain())
        for m in args.methods:
            best[m] = min(best[m], cam(m))
    base = best["plain"]
    print(f"{args.arch}, {len(x)} images 64x64, batch {args.batch}, {args.threads} threads, "
          f"best of {args.repeats} interleaved runs\n")
    print("| method | images/s | s | ratio to forward+backward |")
    print("|---|---|---|---|")
    print(f"| plain forward + backward | {len(x) / base:,.0f} | {base:.2f} | 1.00 |")
    for m in args.methods:
        t = best[m]
        print(f"| {m} | {len(x) / t:,.0f} | {t:.2f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
