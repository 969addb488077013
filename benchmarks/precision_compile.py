"""Training-step throughput with mixed precision (``--precision bf16``) and ``torch.compile`` (``--compile``).

The teacher's step (forward, cross-entropy, backward, optimiser step) on a batch of 64 grey
faces, for a CNN (``resemotenet_slim``, 48 px) and a ViT (``vit_face_tiny``, 64 px): fp32,
bf16 autocast, ``torch.compile`` (fp32) and both. Images/s over ``--steps`` steps after
``--warmup`` steps (compilation happens in the warm-up and is reported separately); ratios
to fp32 measured in the same run. Also checks that one bf16 step's loss stays within 2% of
fp32's.

Usage:
    python benchmarks/precision_compile.py --json docs/results/precision_compile.json
    python benchmarks/precision_compile.py --device cuda        # fp16 joins the list on CUDA
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from cfer.continual.growing import build_model
from cfer.distributed import autocast, resolve_device


def _step_fn(model: torch.nn.Module, opt: torch.optim.Optimizer, device: torch.device, precision: str):
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return float(loss.detach())

    return step


def measure(arch: str, size: int, *, precision: str, compiled: bool, device: torch.device, steps: int,
            warmup: int) -> dict:
    model = build_model(arch=arch, num_classes=6, in_chans=1, img_size=size, seed=0).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    net = torch.compile(model) if compiled else model
    step = _step_fn(net, opt, device, precision)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, size, size, generator=g).to(device)
    y = torch.randint(0, 6, (64,), generator=g).to(device)
    t0 = time.perf_counter()
    torch.manual_seed(0)  # the same dropout draws in every setting: the first losses compare
    first = step(x, y)
    for _ in range(warmup - 1):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    took = time.perf_counter() - t0
    return {"arch": arch, "precision": precision, "compile": compiled, "images_per_s": 64 * steps / took,
            "warmup_s": warm_s, "first_loss": first}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    print(f"# {os.cpu_count()} cores, {a.threads} threads, torch {torch.__version__}, device {device}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for arch, size in (("resemotenet_slim", 48), ("vit_face_tiny", 64)):
        base = None
        for compiled in (False, True):
            for precision in precisions:
                try:
                    r = measure(arch, size, precision=precision, compiled=compiled, device=device, steps=a.steps,
                                warmup=a.warmup)
                except Exception as exc:  # noqa: BLE001 - a setting that does not work here is a result too
                    r = {"arch": arch, "precision": precision, "compile": compiled, "error": str(exc)[:200]}
                if "error" not in r:
                    if base is None:
                        base = r
                    r["ratio"] = r["images_per_s"] / base["images_per_s"]
                    r["loss_vs_fp32"] = r["first_loss"] / base["first_loss"] - 1
                rows.append(r)
                print(r, flush=True)
    print("| model | precision | compile | images/s | ratio to fp32 | warm-up s (incl. compilation) | "
          "first-step loss vs fp32 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['arch']} | {r['precision']} | {r['compile']} | failed: {r['error']} | | | |")
        else:
            print(f"| {r['arch']} | {r['precision']} | {'yes' if r['compile'] else 'no'} | {r['images_per_s']:.1f} | "
                  f"{r['ratio']:.2f}x | {r['warmup_s']:.1f} | {100 * r['loss_vs_fp32']:+.2f}% |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"device": str(device), "threads": a.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
