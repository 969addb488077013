"""A model on paper of data-parallel (DDP) scaling for the workloads cfer trains under ``torchrun``.

Part one is measured, on the CPU, in a few seconds: for each workload the trainable
parameter count, the gradient bytes DDP all-reduces per step (fp32, 4 bytes a parameter,
whatever the autocast precision) and the FLOPs per image of one forward + backward pass,
counted with ``torch.utils.flop_counter.FlopCounterMode`` on a batch of ``--probe-batch``
(8) and divided by it. The workloads:

* ``mae``: MAE pretraining, ``build_mae(PretrainConfig(arch="vit_face_tiny", image_size=64,
  mask_ratio=0.75), in_chans=1)``, loss ``model(x).loss``;
* ``teacher_cnn``: the teacher, ``build_model(arch="resemotenet_slim", num_classes=6,
  in_chans=1, img_size=48)``, cross-entropy on its logits;
* ``teacher_vit``: the same with ``arch="vit_face_tiny"`` at 64 px.

Part two is a model, not a measurement. With N GPUs and a global batch B per step (the
global batch stays the configured one; each GPU takes B/N images):

* compute ``t_c(N) = B * F / (N * S)``, F the FLOPs per image, S one GPU's sustained FLOP/s;
* ring all-reduce ``t_a(N) = 2 (N-1)/N * bytes / BW + 2 (N-1) * alpha`` (0 for N = 1), BW
  the bus bandwidth, alpha the latency of one hop;
* a fixed overhead ``t_o`` per step (kernel launches, optimiser step, Python) that does not
  shrink with N;
* step time without overlap ``t_c + t_a + t_o``; with perfect overlap (the bound DDP's
  bucketed all-reduce during the backward pass tends to) ``max(t_c, t_a) + t_o``;
* speed-up ``t(1) / t(N)`` and efficiency ``speed-up / N``; the smallest N (at most B) where
  the efficiency falls below 50%.

ASSUMPTIONS, not measurements (no GPU was measured to set them; replace them with figures
from ``benchmarks/ddp_scaling.py --device cuda`` and ``benchmarks/precision_compile.py
--device cuda`` on your own machine): S = 100 TFLOP/s (bf16, sustained, an H100/H200-class
GPU), BW = 300 GB/s (NVLink-class) and 20 GB/s (PCIe-class), alpha = 10 us, t_o = 2 ms.

Usage:
    python benchmarks/scaling_model.py
    python benchmarks/scaling_model.py --batch 1024 --json docs/results/scaling_model.json
    python benchmarks/scaling_model.py --tflops 40 --nvlink-gbs 150 --overhead-ms 1 --nproc 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Workload:
    """One training workload: how to build it, its input, how to get its loss."""

    name: str
    what: str
    build: Callable[[], torch.nn.Module]
    image_size: int
    loss: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Measured:
    """What was measured for one workload (per image, per step at batch B)."""

    name: str
    what: str
    input_shape: tuple[int, int, int]
    params: int
    grad_bytes: int
    forward_flops_per_image: float
    train_flops_per_image: float


def _mae() -> torch.nn.Module:
    from cfer.pretrain import PretrainConfig, build_mae

    return build_mae(PretrainConfig(arch="vit_face_tiny", image_size=64, mask_ratio=0.75), in_chans=1)


def _teacher(arch: str, size: int) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from cfer.continual.growing import build_model

        return build_model(arch=arch, num_classes=6, in_chans=1, img_size=size, seed=0)

    return build


WORKLOADS = (
    Workload("mae", "MAE pretraining, vit_face_tiny, 64 px, 75% masked", _mae, 64,
             lambda m, x, y: m(x).loss),
    Workload("teacher_cnn", "teacher, resemotenet_slim, 48 px, 6 classes", _teacher("resemotenet_slim", 48), 48,
             lambda m, x, y: F.cross_entropy(m(x), y)),
    Workload("teacher_vit", "teacher, vit_face_tiny, 64 px, 6 classes", _teacher("vit_face_tiny", 64), 64,
             lambda m, x, y: F.cross_entropy(m(x), y)),
)


def measure(w: Workload, *, probe_batch: int) -> Measured:
    """Parameters, gradient bytes and FLOPs per image (forward, and forward + backward) of ``w``."""
    model = w.build().train()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(probe_batch, 1, w.image_size, w.image_size, generator=g)
    y = torch.randint(0, 6, (probe_batch,), generator=g)
    with FlopCounterMode(display=False) as fwd:
        loss = w.loss(model, x, y)
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    f_fwd = fwd.get_total_flops() / probe_batch
    f_bwd = bwd.get_total_flops() / probe_batch
    return Measured(name=w.name, what=w.what, input_shape=(1, w.image_size, w.image_size), params=params,
                    grad_bytes=4 * params, forward_flops_per_image=f_fwd, train_flops_per_image=f_fwd + f_bwd)


def step_times(m: Measured, n: int, *, batch: int, flops_per_s: float, bw_bytes_per_s: float, alpha_s: float,
               overhead_s: float) -> dict:
    """The model's times (seconds) for one step on ``n`` GPUs."""
    t_c = batch * m.train_flops_per_image / (n * flops_per_s)
    t_a = 0.0 if n == 1 else 2 * (n - 1) / n * m.grad_bytes / bw_bytes_per_s + 2 * (n - 1) * alpha_s
    return {"n": n, "per_gpu_batch": batch / n, "t_compute": t_c, "t_allreduce": t_a, "t_overhead": overhead_s,
            "t_serial": t_c + t_a + overhead_s, "t_overlap": max(t_c, t_a) + overhead_s}


def scaling(m: Measured, ns: list[int], **kw: float) -> tuple[list[dict], dict]:
    """Rows for ``ns`` and the first N (1..batch) where efficiency < 50%, without and with overlap."""
    batch = int(kw["batch"])
    base = step_times(m, 1, **kw)
    rows = []
    for n in ns:
        r = step_times(m, n, **kw)
        for mode in ("serial", "overlap"):
            r[f"speedup_{mode}"] = base[f"t_{mode}"] / r[f"t_{mode}"]
            r[f"efficiency_{mode}"] = r[f"speedup_{mode}"] / n
        rows.append(r)
    below: dict = {}
    for mode in ("serial", "overlap"):
        below[mode] = next((n for n in range(1, batch + 1)
                            if base[f"t_{mode}"] / step_times(m, n, **kw)[f"t_{mode}"] / n < 0.5), None)
    return rows, below


def _si(x: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _ms(t: float) -> str:
    return f"{1e3 * t:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64, help="global batch per step (all GPUs together)")
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64],
                   help="GPU counts to tabulate (those above --batch are dropped)")
    p.add_argument("--tflops", type=float, default=100.0,
                   help="ASSUMED sustained TFLOP/s of one GPU (default: bf16, H100/H200 class)")
    p.add_argument("--nvlink-gbs", type=float, default=300.0, help="ASSUMED all-reduce bus bandwidth, NVLink, GB/s")
    p.add_argument("--pcie-gbs", type=float, default=20.0, help="ASSUMED all-reduce bus bandwidth, PCIe, GB/s")
    p.add_argument("--latency-us", type=float, default=10.0, help="ASSUMED latency of one ring hop, microseconds")
    p.add_argument("--overhead-ms", type=float, default=2.0,
                   help="ASSUMED fixed per-step overhead (launches, optimiser step), ms; does not shrink with N")
    p.add_argument("--probe-batch", type=int, default=8, help="batch of the FLOP count (divided out)")
    p.add_argument("--workloads", nargs="+", default=[w.name for w in WORKLOADS], choices=[w.name for w in WORKLOADS])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(a.threads)
    ns = sorted({n for n in a.nproc if 1 <= n <= a.batch} | {1})
    links = {"NVLink": a.nvlink_gbs * 1e9, "PCIe": a.pcie_gbs * 1e9}
    kw_base = {"batch": a.batch, "flops_per_s": a.tflops * 1e12, "alpha_s": a.latency_us * 1e-6,
               "overhead_s": a.overhead_ms * 1e-3}

    print(f"# torch {torch.__version__}, python {platform.python_version()}; command: "
          f"python {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    print(f"# ASSUMED (not measured): S = {a.tflops:g} TFLOP/s per GPU, BW = {a.nvlink_gbs:g} GB/s (NVLink) / "
          f"{a.pcie_gbs:g} GB/s (PCIe), alpha = {a.latency_us:g} us per hop, t_o = {a.overhead_ms:g} ms per step; "
          f"global batch B = {a.batch}\n")

    measured = [measure(w, probe_batch=a.probe_batch) for w in WORKLOADS if w.name in a.workloads]
    print("## Measured (CPU, FlopCounterMode; fp32 gradients)\n")
    print("| workload | what | input | trainable params | all-reduce per step | forward FLOPs/image | "
          f"fwd+bwd FLOPs/image | fwd+bwd FLOPs per step (B = {a.batch}) |")
    print("|---|---|---|---|---|---|---|---|")
    for m in measured:
        print(f"| {m.name} | {m.what} | {'x'.join(map(str, m.input_shape))} | {m.params:,} | "
              f"{m.grad_bytes / 1e6:.2f} MB | {_si(m.forward_flops_per_image, 'FLOP')} | "
              f"{_si(m.train_flops_per_image, 'FLOP')} | {_si(a.batch * m.train_flops_per_image, 'FLOP')} |")

    results: dict = {}
    summary = []
    for m in measured:
        for link, bw in links.items():
            rows, below = scaling(m, ns, bw_bytes_per_s=bw, **kw_base)
            results.setdefault(m.name, {})[link] = {"rows": rows, "first_n_below_50pct": below}
            summary.append((m, link, rows, below))
            print(f"\n## {m.name} over {link} ({a.tflops:g} TFLOP/s, {bw / 1e9:g} GB/s, "
                  f"alpha {a.latency_us:g} us, t_o {a.overhead_ms:g} ms, B = {a.batch})\n")
            print("| N | per-GPU batch | t_c ms | t_a ms | t_o ms | step ms (no overlap) | speed-up | efficiency | "
                  "step ms (overlap) | speed-up | efficiency |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            for r in rows:
                print(f"| {r['n']} | {r['per_gpu_batch']:g} | {_ms(r['t_compute'])} | {_ms(r['t_allreduce'])} | "
                      f"{_ms(r['t_overhead'])} | {_ms(r['t_serial'])} | {r['speedup_serial']:.2f}x | "
                      f"{100 * r['efficiency_serial']:.1f}% | {_ms(r['t_overlap'])} | {r['speedup_overlap']:.2f}x | "
                      f"{100 * r['efficiency_overlap']:.1f}% |")

    print(f"\n## Where efficiency falls below 50% (smallest N <= B = {a.batch})\n")
    print("| workload | link | 1-GPU step ms | of which compute | first N < 50% (no overlap) | "
          "first N < 50% (overlap) |")
    print("|---|---|---|---|---|---|")
    for m, link, rows, below in summary:
        r1 = rows[0]
        print(f"| {m.name} | {link} | {_ms(r1['t_serial'])} | {100 * r1['t_compute'] / r1['t_serial']:.0f}% | "
              f"{below['serial'] or f'none up to {a.batch}'} | {below['overlap'] or f'none up to {a.batch}'} |")

    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({
            "torch": torch.__version__,
            "assumptions": {"note": "assumed vendor-class figures, not measured", "tflops_per_gpu": a.tflops,
                            "bus_bandwidth_gbs": {"NVLink": a.nvlink_gbs, "PCIe": a.pcie_gbs},
                            "latency_us_per_hop": a.latency_us, "overhead_ms_per_step": a.overhead_ms},
            "global_batch": a.batch, "probe_batch": a.probe_batch,
            "measured": [asdict(m) for m in measured], "model": results}, indent=2))


if __name__ == "__main__":
    main()
