"""Throughput of 1 vs N processes (DDP, gloo on the CPU; NCCL on GPUs) for MAE pretraining and the teacher.

Each measurement runs in fresh processes started with ``torch.multiprocessing`` (the same
environment ``torchrun`` gives: ``RANK``, ``WORLD_SIZE``, ...), one thread each, the same
**global** batch for every process count; 1 and N processes alternate ``--repeats`` times in
one run and the table gives the median of each and their ratio.

* pretraining: ``pretrain_mae`` (``vit_face_tiny``, 64 px, 75% masking, global batch
  ``--batch``, default 64 as in cfer); images/s of the last epoch (the first warms up);
* teacher: ``train_teacher`` (``resemotenet_slim``, 48 px, global batch ``--batch``, fixed
  epochs, no early stop); images/s over the epochs after the first, validation included;
* pool: ``distil_unlabelled`` (the ``--distil-pool`` step of ``cfer run``: a
  ``resemotenet_slim`` student matching another one's outputs on rendered faces, 48 px,
  global batch ``--batch``); images/s over the epochs after the first.

Usage:
    python benchmarks/ddp_scaling.py --json docs/results/ddp_scaling.json
    python benchmarks/ddp_scaling.py --batch 256 --pretrain-subjects 64 --json docs/results/ddp_scaling_b256.json
    python benchmarks/ddp_scaling.py --jobs teacher --cpu-bucket-mb 0  # DDP's own bucket sizes
    python benchmarks/ddp_scaling.py --jobs pool --json docs/results/ddp_scaling_pool.json
    python benchmarks/ddp_scaling.py --device cuda --nproc 1 2 4     # on a machine with GPUs
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


def _epoch_clock(logger_name: str, marker: str) -> list[float]:
    """The times at which a training loop logs the end of an epoch (its log lines holding ``marker``)."""
    import logging

    stamps: list[float] = []

    class Clock(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if marker in record.getMessage():
                stamps.append(time.perf_counter())
            return True

    log = logging.getLogger(logger_name)
    log.setLevel(logging.INFO)
    log.addFilter(Clock())
    return stamps


def _worker(rank: int, world: int, port: int, job: str, device: str, out: str, sizes: dict) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        from cfer.app.launch import join

        join(device=device, seed=0)
    import cfer.distributed
    from cfer.distributed import is_main

    if sizes.get("cpu_bucket_mb") is not None:  # 0: DDP's own bucket sizes
        cfer.distributed.CPU_BUCKET_MB = sizes["cpu_bucket_mb"] or None

    if job == "pretrain":
        from cfer.data.synthetic import render_faces
        from cfer.pretrain import PretrainConfig, pretrain_mae

        faces = render_faces(classes="all", n_subjects=sizes["pretrain_subjects"], per_class=1, image_size=64,
                             channels=1, seed=0)
        cfg = PretrainConfig(arch="vit_face_tiny", image_size=64, epochs=2, batch_size=sizes["batch"],
                             warmup_epochs=0.5,
                             device=device)
        res = pretrain_mae(images=faces, config=cfg)
        value, n = res.history[-1]["images_per_s"], len(faces)
    elif job == "pool":
        from cfer.continual.evaluation import inputs_of
        from cfer.continual.growing import build_model
        from cfer.continual.unlabelled_distillation import distil_unlabelled
        from cfer.data.synthetic import render_faces
        from cfer.distributed import resolve_device

        dev = resolve_device(device)
        faces = render_faces(classes="all", n_subjects=sizes["pool_subjects"], per_class=1, image_size=48,
                             channels=1, seed=0)
        images = inputs_of(faces, range(len(faces))).to(dev)
        student, teacher = (build_model(arch="resemotenet_slim", num_classes=6, in_chans=1, img_size=48, seed=s).to(dev)
                            for s in (0, 1))
        stamps = _epoch_clock("cfer.continual.unlabelled_distillation", "unlabelled faces, epoch")
        distil_unlabelled(student=student, teacher=teacher, images=images, epochs=sizes["pool_epochs"],
                          batch_size=sizes["batch"])
        n = len(images)
        value = n * (len(stamps) - 1) / (stamps[-1] - stamps[0])
    else:
        from cfer.continual.teacher import TeacherConfig, train_teacher
        from cfer.data.synthetic import make_synthetic_splits

        sp = make_synthetic_splits(classes="basic", subjects=(sizes["teacher_subjects"], 4, 2), per_class=5,
                                   image_size=48, channels=1, seed=0)
        epochs = sizes["teacher_epochs"]
        stamps = _epoch_clock("cfer.continual.teacher", "teacher epoch")
        train_teacher(train=sp["train"], val=sp["val"], config=TeacherConfig(
            arch="resemotenet_slim", max_epochs=epochs, patience=epochs, batch_size=sizes["batch"], device=device))
        n = len(sp["train"])
        value = n * (len(stamps) - 1) / (stamps[-1] - stamps[0])
    if is_main():
        Path(out).write_text(json.dumps({"images_per_s": value, "n_images": n}))


def measure(job: str, world: int, *, device: str, sizes: dict) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "r.json")
        mp.spawn(_worker, args=(world, _free_port(), job, device, out, sizes), nprocs=world, join=True)
        return json.loads(Path(out).read_text())["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="process counts (the first is the base)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", nargs="+", default=["pretrain", "teacher"], choices=["pretrain", "teacher", "pool"])
    p.add_argument("--pretrain-subjects", type=int, default=32, help="identities x 21 classes = faces per epoch")
    p.add_argument("--teacher-subjects", type=int, default=24)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--pool-subjects", type=int, default=50, help="pool job: identities x 21 classes = faces")
    p.add_argument("--pool-epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64, help="global batch of both jobs (cfer's default: 64)")
    p.add_argument("--cpu-bucket-mb", type=float, default=None,
                   help="DDP's gradient bucket size on the CPU in MiB (default: cfer's, 1; 0: DDP's own, 25)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sizes = {"pretrain_subjects": a.pretrain_subjects, "teacher_subjects": a.teacher_subjects,
             "teacher_epochs": a.teacher_epochs, "batch": a.batch, "cpu_bucket_mb": a.cpu_bucket_mb,
             "pool_subjects": a.pool_subjects, "pool_epochs": a.pool_epochs}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"device {a.device}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, load {os.getloadavg()[0]:.2f}",
          flush=True)
    rows = []
    for job in a.jobs:
        values: dict[int, list[float]] = {n: [] for n in a.nproc}
        for _ in range(a.repeats):
            for n in a.nproc:
                values[n].append(measure(job, n, device=a.device, sizes=sizes))
                print(f"  {job} x{n}: {values[n][-1]:.1f} images/s", file=sys.stderr, flush=True)
        base = statistics.median(values[a.nproc[0]])
        for n in a.nproc:
            med = statistics.median(values[n])
            rows.append({"job": job, "processes": n, "images_per_s": med, "runs": values[n],
                         "ratio": med / base})
    print("| job | processes (1 thread each) | images/s (median) | runs | ratio to 1 process |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['job']} | {r['processes']} | {r['images_per_s']:.1f} | "
              f"{', '.join(f'{v:.1f}' for v in r['runs'])} | {r['ratio']:.2f}x |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"device": a.device, "cores": os.cpu_count(), "sizes": sizes, "rows": rows},
                                     indent=2))


if __name__ == "__main__":
    main()
