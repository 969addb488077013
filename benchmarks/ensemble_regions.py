"""Where does each member of a late-fusion ensemble look? Grad-CAM region attention per member.

Trains one late-fusion ensemble on all 22 synthetic classes (so every compound class has an
output of its own), then explains faces of unseen subjects with each member on its own head
and with the fused map (:func:`cfer.explain.analysis.analyse`, the report's analysis). Prints:

* per member: the share of Grad-CAM energy in each facial region, averaged over the basic
  and over the compound classes; localisation (CAM energy inside the regions of the AUs a
  face shows, over a uniform map's); the compound-vs-constituents gap (how much more a
  compound class's mean map correlates with its two constituents' than with the other
  basics);
* per pair of members: the correlation of their mean maps of each class (1 = the same
  place), averaged over the basic and the compound classes, and the regions where their
  attention differs most.

    python benchmarks/ensemble_regions.py --json docs/results/ensemble_regions.json
    python benchmarks/ensemble_regions.py --quick

A pretrained ViT member needs a ViT's fine-tuning recipe rather than the CNN teacher's
defaults (Adam 2e-3, no warm-up, patience 3); ``--optimizer``, ``--lr``, ``--warmup-epochs``,
``--schedule`` and ``--patience`` set it for the whole ensemble::

    python benchmarks/ensemble_regions.py --arch ensemble:resemotenet_slim+vit_face_mini+manet_slim \
        --weights - RUN/encoder.pt - --optimizer adamw --lr 5e-4 --warmup-epochs 3 --schedule cosine \
        --epochs 40 --patience 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from cfer import taxonomy
from cfer.continual.confusion import confusion
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.data.synthetic import make_synthetic_splits, render_faces
from cfer.explain.analysis import analyse
from cfer.explain.compare import correlation, mean_maps
from cfer.explain.figures import save_analysis

CLASSES = [taxonomy.NEUTRAL, *taxonomy.BASIC, *taxonomy.COMPOUND]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ensemble:resemotenet_slim+vit_tiny_patch16_224+manet_slim")
    ap.add_argument("--weights", nargs="+", default=None, metavar="FILE",
                    help="one local weight file per member, '-' for none (e.g. a cfer pretrain encoder.pt for the ViT)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--patience", type=int, default=3, help="early-stopping patience (epochs)")
    ap.add_argument("--optimizer", default="adam", choices=["adam", "adamw"])
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=None, help="default: 1e-4 with adam, 0.05 with adamw")
    ap.add_argument("--warmup-epochs", type=int, default=0)
    ap.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    ap.add_argument("--precise-bn", action="store_true", help="recompute the BatchNorm statistics on the training "
                    "faces before each validation (TeacherConfig(precise_bn=True))")
    ap.add_argument("--subjects", type=int, nargs=3, default=(16, 4, 8), metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--explain-subjects", type=int, default=6, help="unseen subjects whose faces are explained")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write each member's figures here")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.subjects, args.per_class, args.explain_subjects = 2, (4, 2, 2), 2, 2
    return args


def _kind_mean(per_class: dict[str, np.ndarray], kind: tuple[str, ...]) -> np.ndarray:
    rows = [v for c, v in per_class.items() if c in kind]
    return np.mean(rows, 0) if rows else np.full(len(taxonomy.REGIONS), np.nan)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    weights = None if args.weights is None else [None if w == "-" else w for w in args.weights]
    decay = args.weight_decay if args.weight_decay is not None else 0.05 if args.optimizer == "adamw" else 1e-4
    sp = make_synthetic_splits(classes=CLASSES, subjects=tuple(args.subjects), per_class=args.per_class,
                               image_size=args.image_size, seed=args.seed)
    res = train_teacher(train=sp["train"], val=sp["val"], classes=tuple(CLASSES),
                        config=TeacherConfig(arch=args.arch, max_epochs=args.epochs, seed=args.seed, weights=weights,
                                             patience=args.patience, optimizer=args.optimizer, lr=args.lr,
                                             weight_decay=decay, warmup_epochs=args.warmup_epochs,
                                             schedule=args.schedule, precise_bn=args.precise_bn))
    ens = res.model
    models = {**dict(zip(ens.member_names, ens.members)), "fused": ens}
    faces = render_faces(classes=CLASSES, n_subjects=args.explain_subjects, per_class=2, image_size=args.image_size,
                         seed=args.seed + 99, first_subject=90_000)
    rows, means, test = {}, {}, {}
    for name, model in models.items():
        test[name] = confusion(model, sp["test"], classes=res.classes).scores()
        result = analyse(model, classes=res.classes, faces=faces)
        model.zero_grad(set_to_none=True)
        if args.out is not None:
            save_analysis(result, args.out / name, title=name)
        rows[name] = result.summary
        rows[name]["per_class_vector"] = {c: v.tolist() for c, v in result.per_class.items()}
        means[name] = mean_maps(result.cams, faces.labels, faces.classes)
    total = time.perf_counter() - t_start

    print(f"\n{args.arch}, trained on all 22 classes ({len(sp['train'])} faces, <= {args.epochs} epochs, "
          f"fusion weights {[round(float(w), 3) for w in ens.fusion_weights]}); Grad-CAM of {len(faces)} faces of "
          f"{args.explain_subjects} unseen subjects; total {total / 60:.1f} min\n")
    print("| model | test accuracy | macro-F1 | localisation | compound-vs-constituents gap (corr) | empty maps |")
    print("|---|---|---|---|---|---|")
    for name, s in rows.items():
        gap = s.get("constituent_gap", {}).get("correlation", {}).get("mean", float("nan"))
        print(f"| {name} | {test[name].accuracy:.3f} | {test[name].macro_f1():.3f} | {s['localisation']['mean']:.2f} "
              f"| {gap:+.3f} | {100 * s['empty_maps']:.0f}% |")
    print("\nShare of Grad-CAM energy per region (mean over classes)\n")
    print("| model | classes | " + " | ".join(taxonomy.REGIONS) + " |")
    print("|---|---|" + "---|" * len(taxonomy.REGIONS))
    for name, s in rows.items():
        per_class = {c: np.asarray(v) for c, v in s["per_class_vector"].items()}
        for label, kind in (("basic", taxonomy.BASIC), ("compound", taxonomy.COMPOUND)):
            vec = _kind_mean(per_class, kind)
            print(f"| {name} | {label} | " + " | ".join(f"{v:.2f}" for v in vec) + " |")
    members = list(ens.member_names)
    pairs = {}
    print("\nHow alike two members' mean maps of a class are (correlation; 1 = the same place)\n")
    print("| members | basic classes | compound classes | region where they differ most (basic) |")
    print("|---|---|---|---|")
    for a, b in itertools.combinations(members, 2):
        corr = {c: correlation(means[a][c], means[b][c]) for c in CLASSES if c in means[a] and c in means[b]}
        basic = np.nanmean([corr[c] for c in taxonomy.BASIC if c in corr])
        compound = np.nanmean([corr[c] for c in taxonomy.COMPOUND if c in corr])
        va = _kind_mean({c: np.asarray(v) for c, v in rows[a]["per_class_vector"].items()}, taxonomy.BASIC)
        vb = _kind_mean({c: np.asarray(v) for c, v in rows[b]["per_class_vector"].items()}, taxonomy.BASIC)
        k = int(np.nanargmax(np.abs(va - vb)))
        pairs[f"{a} vs {b}"] = {"basic": float(basic), "compound": float(compound), "per_class": corr}
        print(f"| {a} vs {b} | {basic:.2f} | {compound:.2f} | {taxonomy.REGIONS[k]} ({va[k]:.2f} vs {vb[k]:.2f}) |")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {"args": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                        for k, v in vars(args).items() if k != "json"},
               "total_seconds": total, "fusion_weights": [float(w) for w in ens.fusion_weights],
               "test": {n: {"accuracy": t.accuracy, "macro_f1": t.macro_f1()} for n, t in test.items()},
               "summaries": {n: {k: v for k, v in s.items() if k != "similarity"} for n, s in rows.items()},
               "pairs": pairs}
        args.json.write_text(json.dumps(out, indent=1, default=float))
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
