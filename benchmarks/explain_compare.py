"""Where do the teacher and the students look? Localisation, basic vs compound, what distillation kept.

Trains a basic teacher, a cfer student and a naive student on the synthetic stream
(basic -> 15 compound classes, 3 per step), then on faces of unseen subjects:

* localisation: CAM energy inside the regions of the AUs each face actually shows,
  over what a uniform map would get (1 = no better than uniform);
* basic vs compound: for each compound class, the correlation (and top-20% overlap) of
  its mean CAM with its two constituents' mean CAMs minus that with the other basics;
* what distillation kept: per basic class, the correlation of each student's mean CAM
  with the teacher's mean CAM.

Writes the figures of each model under ``--out`` and prints markdown tables.

Usage:
    python benchmarks/explain_compare.py [--out docs/img/explain] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from cfer import taxonomy
from cfer.continual.factory import make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.runner import run_stream
from cfer.continual.stream import make_stream
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.data.synthetic import make_synthetic_splits, render_faces
from cfer.explain.analysis import analyse
from cfer.explain.compare import correlation, mean_maps
from cfer.explain.figures import save_analysis


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resemotenet_slim")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--subjects", type=int, nargs=3, default=(16, 4, 8))
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--cam-method", default="gradcam")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.subjects, args.per_class = (8, 2, 3), 3
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    t_start = time.perf_counter()
    splits = make_synthetic_splits(subjects=tuple(args.subjects), per_class=args.per_class,
                                   image_size=args.image_size, seed=args.seed)
    basic = {k: v.subset(np.flatnonzero(np.isin(np.asarray(v.classes)[v.labels], taxonomy.BASIC)))
             for k, v in splits.items()}
    teacher = train_teacher(train=basic["train"], val=basic["val"],
                            config=TeacherConfig(arch=args.arch, max_epochs=12, patience=3, batch_size=32,
                                                 seed=args.seed))
    stream = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], per_step=3, seed=args.seed)
    models = {"teacher": (teacher.model, teacher.classes)}
    for name in ("cfer", "naive"):
        model = build_model(arch=args.arch, num_classes=6, img_size=args.image_size, seed=args.seed)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        strategy = make_strategy(name, model=model, optimizer=opt, train_epochs=4, train_mb_size=32,
                                 memory_size=int(0.3 * len(splits["train"])), total_classes=21,
                                 plugins=[BasicEpochsPlugin(basic_epochs=6, later_epochs=4)])
        res = run_stream(strategy, stream)
        print(f"  {name} student: final accuracy {res.final_accuracy:.3f}", file=sys.stderr)
        models[f"{name} student"] = (model, stream.class_names)

    faces = render_faces(n_subjects=6, per_class=2, image_size=args.image_size, seed=args.seed + 99,
                         first_subject=90_000)
    summaries, basic_means = {}, {}
    for name, (model, classes) in models.items():
        out = None if args.out is None else args.out / name.replace(" ", "_")
        result = analyse(model, classes=classes, faces=faces, method=args.cam_method)
        if out is not None:
            save_analysis(result, out, title=name)
        summaries[name] = result.summary
        basic_means[name] = mean_maps(result.cams, faces.labels, faces.classes)
    kept = {name: {b: correlation(basic_means[name][b], basic_means["teacher"][b]) for b in taxonomy.BASIC}
            for name in ("cfer student", "naive student")}
    total = time.perf_counter() - t_start

    print(f"\n{args.cam_method} on {len(faces)} synthetic faces of 6 unseen subjects (22 classes), {args.arch} "
          f"{args.image_size}x{args.image_size}; total {total / 60:.1f} min\n")
    print("| model | empty maps | localisation, all | basic faces | compound faces | "
          "compound-vs-constituents gap (corr) | (top-20% IoU) |")
    print("|---|---|---|---|---|---|---|")
    for name, s in summaries.items():
        loc = s["localisation"]
        gap = s.get("constituent_gap", {})
        print(f"| {name} | {100 * s['empty_maps']:.0f}% | {loc['mean']:.2f} | {loc.get('basic', float('nan')):.2f} | "
              f"{loc.get('compound', float('nan')):.2f} | "
              f"{gap.get('correlation', {}).get('mean', float('nan')):+.3f} | "
              f"{gap.get('overlap', {}).get('mean', float('nan')):+.3f} |")
    print("\nWhat distillation kept: correlation of each student's mean CAM with the teacher's, per basic class "
          "(n/a: the student's mean map is empty, Grad-CAM finds no positive evidence for that class)\n")
    print("| student | " + " | ".join(taxonomy.BASIC) + " | mean |")
    print("|---|" + "---|" * (len(taxonomy.BASIC) + 1))
    for name, row in kept.items():
        vals = np.array([row[b] for b in taxonomy.BASIC], float)
        mean = f"{np.nanmean(vals):.2f}" if np.isfinite(vals).any() else "n/a"
        print(f"| {name} | " + " | ".join("n/a" if not np.isfinite(v) else f"{v:.2f}" for v in vals) + f" | {mean} |")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summaries": summaries, "kept": kept}, indent=1))
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
