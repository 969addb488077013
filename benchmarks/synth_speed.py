"""Faces per second of the synthetic renderer on one core.

Renders the same set of faces several times with one thread and prints a markdown table
(RGB and grey, 64x64 by default). The requirement is at least 2,000 faces/s for 64x64
faces on one core.

Usage:
    python benchmarks/synth_speed.py [--image-size 64] [--subjects 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy loads

import time

from cfer.data.synthetic import render_faces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--subjects", type=int, default=60)
    ap.add_argument("--per-class", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    render_faces(n_subjects=1, per_class=1, image_size=args.image_size)  # warm-up
    print(f"| image | channels | faces | best of {args.repeats} (s) | faces/s |")
    print("|---|---|---|---|---|")
    for channels in (3, 1):
        best = float("inf")
        for r in range(args.repeats):
            t0 = time.perf_counter()
            faces = render_faces(n_subjects=args.subjects, per_class=args.per_class,
                                 image_size=args.image_size, channels=channels, seed=r)
            best = min(best, time.perf_counter() - t0)
        side = f"{args.image_size}x{args.image_size}"
        print(f"| {side} | {channels} | {len(faces)} | {best:.3f} | {len(faces) / best:,.0f} |")


if __name__ == "__main__":
    main()
