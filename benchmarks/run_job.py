"""Time the main job (`cfer run`) and the cost of its checkpoints, in one run.

Runs the pipeline with the default configuration (what `make demo` runs) or a YAML file,
and prints two markdown tables: seconds per stage, and what the checkpoint after every
experience costs (size, write time, and write time as a share of the step's training
time, measured in the same run).

Usage:
    python benchmarks/run_job.py                       # the default job (synthetic faces)
    python benchmarks/run_job.py --config my.yaml --out runs/bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np

from cfer.app.config import RunConfig
from cfer.app.config_io import config_from_dict, load_config
from cfer.app.pipeline import run_pipeline
from cfer.continual import resume as resumable


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=None, help="YAML config (default: the built-in defaults)")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    config = config_from_dict(load_config(args.config)) if args.config else RunConfig()
    out = args.out or Path(tempfile.mkdtemp(prefix="cfer-bench-")) / "run"

    saves: list[tuple[float, int]] = []
    original = resumable._save

    def timed_save(path, **kwargs):
        t0 = time.perf_counter()
        original(path, **kwargs)
        saves.append((time.perf_counter() - t0, Path(path).stat().st_size))

    resumable._save = timed_save
    t0 = time.perf_counter()
    try:
        metrics = run_pipeline(config, out_dir=out, progress=False)
    finally:
        resumable._save = original
    total = time.perf_counter() - t0
    timing = __import__("json").loads((out / "timing.json").read_text())

    print(f"\ncfer run, {config.model.arch}, {config.data.image_size} px, {metrics['data']['n_train']} training faces, "
          f"{len(metrics['continual']['orders'])} class order(s), {config.threads} threads\n")
    print("| stage | seconds |\n|---|---|")
    for k, v in timing.items():
        if k.endswith("_s"):
            print(f"| {k[:-2]} | {v:.1f} |")
    print(f"| **total** | **{total:.1f}** |\n")
    steps = np.concatenate([r["step_time_s"] for r in metrics["continual"]["orders"]])
    trained = steps[1:] if len(steps) > 1 else steps  # step 0 only fills the buffer
    secs = np.array([s for s, _ in saves])
    size = np.mean([b for _, b in saves]) / 2**20
    print("| checkpoints | value |\n|---|---|")
    print(f"| checkpoints written | {len(saves)} (one per experience) |")
    print(f"| size | {size:.2f} MiB |")
    print(f"| write time (mean) | {1000 * secs.mean():.0f} ms |")
    print(f"| compound step training time (mean) | {trained.mean():.2f} s |")
    print(f"| write time / step time | {secs.mean() / trained.mean():.3f} |")
    s = metrics["continual"]["summary"]
    print(f"\naverage accuracy over steps {s['average_accuracy']['mean']:.3f}, final {s['final_accuracy']['mean']:.3f}")
    if args.out is None:
        shutil.rmtree(out.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
