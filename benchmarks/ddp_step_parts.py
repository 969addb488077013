"""Where a DDP step of the teacher spends its time on the CPU: the parts of 1 vs 2 processes.

The end-to-end ratio of ``ddp_scaling.py`` (2 processes against 1 at the same global batch)
is the product of a few parts, each timed here in fresh processes, one thread each,
``resemotenet_slim`` on grey 48 px faces, the teacher's model (``build_model``):

* ``fb(B) alone``: forward + backward of a batch of B in one process (nothing else running);
* ``fb(B/2) side by side``: the same for the half batch, in 2 processes at once without DDP
  (no communication: what sharing the cores' memory and caches costs);
* ``fb(B/2) under DDP``: the same 2 processes with the model in :func:`cfer.distributed.wrap_ddp`
  (gradient all-reduce overlapped with the backward pass, cfer's 1 MiB buckets);
* ``all-reduce``: gloo's all-reduce of the model's gradients (one flat tensor) between the 2
  processes, alone;
* ``optimiser step``: Adam over the model's parameters (each process does it in both set-ups).

A step of one process costs ``fb(B) + opt``, a step of two ``fb(B/2) under DDP + opt``; their
ratio is the speed-up the training loop could reach if nothing else (data, augmentation,
validation, logging) cost time. Medians of ``--repeats`` timed steps after ``--warmup``.

Usage:
    python benchmarks/ddp_step_parts.py --json docs/results/ddp_step_parts.json
    python benchmarks/ddp_step_parts.py --loop --json docs/results/ddp_step_parts_loop.json   # + the whole loop
    python benchmarks/ddp_step_parts.py --batch 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model() -> torch.nn.Module:
    from cfer.continual.growing import build_model

    return build_model(arch="resemotenet_slim", num_classes=6, in_chans=1, img_size=48, seed=0).train()


def _time_fb(model: torch.nn.Module, batch: int, *, warmup: int, repeats: int, sync=None) -> list[float]:
    """Forward + backward times (ms) of ``repeats`` batches; ``sync()`` runs before each (untimed)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 48, 48, generator=g)
    y = torch.randint(0, 6, (batch,), generator=g)
    loss_fn = torch.nn.CrossEntropyLoss()
    out = []
    for i in range(warmup + repeats):
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        loss_fn(model(x), y).backward()
        dt = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            out.append(dt)
    return out


def _worker(rank: int, world: int, port: int, out: str, cfg: dict) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(1)
    warmup, repeats, batch = cfg["warmup"], cfg["repeats"], cfg["batch"]
    result: dict[str, list[float]] = {}
    model = _model()
    if world == 1:
        result["fb_full_alone"] = _time_fb(model, batch, warmup=warmup, repeats=repeats)
        result["fb_half_alone"] = _time_fb(model, batch // 2, warmup=warmup, repeats=repeats)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            opt.step()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
        result["optimiser_step"] = times
        result["gradient_mb"] = [sum(p.numel() * 4 for p in model.parameters()) / 2**20]
    else:
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}")
        result["fb_half_side_by_side"] = _time_fb(model, batch // 2, warmup=warmup, repeats=repeats,
                                                  sync=dist.barrier)
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()
        times = []
        for i in range(warmup + repeats):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(flat)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
        result["all_reduce"] = times
        from cfer.distributed import wrap_ddp

        ddp = wrap_ddp(_model(), device="cpu")
        result["fb_half_ddp"] = _time_fb(ddp, batch // 2, warmup=warmup, repeats=repeats, sync=dist.barrier)
        gathered = [None] * world
        dist.all_gather_object(gathered, result)
        dist.destroy_process_group()
        if rank != 0:
            return
        result = {k: [v for r in gathered for v in r[k]] for k in result}  # both ranks' steps
    Path(out).write_text(json.dumps(result))


def measure(world: int, cfg: dict) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "r.json")
        mp.spawn(_worker, args=(world, _free_port(), out, cfg), nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def _summary(parts: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, float], float]:
    med = {k: statistics.median(v) for k, v in parts.items()}
    opt = med["optimiser_step"]
    factors = {
        "batch split (fb(B) / 2 fb(B/2), alone)": med["fb_full_alone"] / (2 * med["fb_half_alone"]),
        "sharing the cores (fb(B/2) alone / side by side)": med["fb_half_alone"] / med["fb_half_side_by_side"],
        "DDP (side by side / under DDP)": med["fb_half_side_by_side"] / med["fb_half_ddp"],
        "optimiser step in both": ((med["fb_full_alone"] + opt) / (med["fb_half_ddp"] + opt))
        / (med["fb_full_alone"] / med["fb_half_ddp"]),
    }
    return med, factors, (med["fb_full_alone"] + opt) / (med["fb_half_ddp"] + opt)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64, help="global batch (cfer's default: 64); each of 2 gets half")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3, help="rounds of (1 process, 2 processes); the parts' medians are "
                   "over every round's steps, and each round's ratio is printed")
    p.add_argument("--loop", action="store_true", help="in every round also time the whole teacher loop, 1 and 2 "
                   "processes (ddp_scaling.py's teacher job): what the loop adds to the step, measured alongside")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    if a.batch < 2 or a.batch % 2:
        raise SystemExit(f"--batch must be an even number >= 2, got {a.batch}")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cfg = {"batch": a.batch, "warmup": a.warmup, "repeats": a.repeats}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, load {os.getloadavg()[0]:.2f}", flush=True)
    if a.loop:  # ddp_scaling.py's teacher job, its default sizes at this batch
        sys.path.insert(0, str(Path(__file__).parent))
        from ddp_scaling import measure as measure_loop

        sizes = {"teacher_subjects": 24, "teacher_epochs": 3, "batch": a.batch, "cpu_bucket_mb": None}
    parts: dict[str, list[float]] = {}
    rounds = []
    for r in range(a.rounds):
        this = {**measure(1, cfg), **measure(2, cfg)}
        _, _, step_ratio = _summary(this)
        row = {"step_ratio": step_ratio}
        if a.loop:
            one, two = (measure_loop("teacher", n, device="cpu", sizes=sizes) for n in (1, 2))
            row.update(loop_1=one, loop_2=two, loop_ratio=two / one)
        rounds.append(row)
        print(f"  round {r}: step ratio {step_ratio:.2f}x"
              + (f", teacher loop {row['loop_1']:.0f} -> {row['loop_2']:.0f} images/s = {row['loop_ratio']:.2f}x"
                 if a.loop else ""), flush=True)
        for k, v in this.items():
            parts.setdefault(k, []).extend(v)
    med, factors, ratio = _summary(parts)
    half, full = a.batch // 2, a.batch
    rows = [
        (f"fb({full}) alone, 1 process", med["fb_full_alone"]),
        (f"fb({half}) alone, 1 process", med["fb_half_alone"]),
        (f"fb({half}) side by side, 2 processes, no DDP", med["fb_half_side_by_side"]),
        (f"fb({half}) under DDP, 2 processes", med["fb_half_ddp"]),
        (f"all-reduce of {med['gradient_mb']:.1f} MiB of gradients, 2 processes, alone", med["all_reduce"]),
        ("optimiser step (Adam)", med["optimiser_step"]),
    ]
    print(f"\n{a.rounds} rounds, medians over all of them\n\n| part | ms (median) |")
    print("|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")
    print("\n| factor of the 2-process speed-up | value |")
    print("|---|---|")
    print("| ideal | 2.00 |")
    for name, f in factors.items():
        print(f"| x {name} | {f:.3f} |")
    print(f"| **= step speed-up, (fb({full}) + opt) / (fb({half}) under DDP + opt)** | **{ratio:.2f}x** |")
    if a.loop:
        loops = ", ".join(f"{r['loop_ratio']:.2f}x" for r in rounds)
        steps = ", ".join(f"{r['step_ratio']:.2f}x" for r in rounds)
        print(f"\nper round, teacher loop ratio: {loops}; step ratio: {steps}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"batch": a.batch, "cores": os.cpu_count(), "torch": torch.__version__,
                                      "median_ms": med, "factors": factors, "step_ratio": ratio, "rounds": rounds,
                                      "samples_ms": parts}, indent=2))


if __name__ == "__main__":
    main()
