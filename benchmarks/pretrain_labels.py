"""Does masked-autoencoder pretraining lift the teacher when labels are scarce? (synthetic faces)

For every seed the same synthetic faces (basic + compound classes, subject-disjoint train /
validation / test) feed three ViT teachers on the basic classes, fine-tuned the same way
(:func:`vit_recipe`) on 10%, 30% and 100% of the training labels:

* ``scratch``: random initialisation;
* ``mae-same``: the encoder of ``cfer.pretrain.pretrain_mae`` on the unlabelled pool of the
  same data (every training face of every class, labels ignored);
* ``mae-large``: the same pretraining on a larger pool of other identities
  (``--large-subjects`` subjects, one face per class), for the same number of steps
  (with ``--framed``, the detector's crops of their photo-like frames).

and, as a reference, the CNN ``--cnn`` from scratch with cfer's fast teacher defaults. With a fraction
``f`` of the labels a teacher runs ``epochs / f`` epochs (patience and warm-up scaled
alike), so every fraction gets the same number of optimiser steps. Reported per arm and
fraction: basic test accuracy and macro-F1 on the held-out subjects, 5-way 1- and 5-shot
episode accuracy on the test subjects' compound classes (prototypes over the teacher's
features), and, for ``--continual-fractions``, the cfer student's average accuracy over the
steps of the published protocol (one compound class per step). Pretrained encoders are
cached in ``--cache``.

    python benchmarks/pretrain_labels.py --seeds 0 --json docs/results/pretrain_labels_s0.json
    python benchmarks/pretrain_labels.py --summarise docs/results/pretrain_labels_s*.json
    python benchmarks/pretrain_labels.py --quick     # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from cfer import taxonomy
from cfer.continual.confusion import confusion
from cfer.continual.factory import CferConfig
from cfer.continual.resume import run_order, seed_everything
from cfer.continual.stream import compound_orders, make_stream
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.data.synthetic import make_synthetic_splits
from cfer.fewshot.config import EpisodeConfig
from cfer.fewshot.episodes import evaluate_model
from cfer.pretrain import PretrainConfig, pretrain_mae

ARMS = ("scratch", "mae-same", "mae-large", "cnn")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="vit_face_mini", help="the ViT encoder")
    ap.add_argument("--cnn", default="resemotenet_slim", help="the CNN reference (from scratch)")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    ap.add_argument("--continual-fractions", type=float, nargs="*", default=[1.0])
    ap.add_argument("--subjects", type=int, nargs=3, default=(24, 6, 10), metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument("--per-class", type=int, default=3)
    ap.add_argument("--large-subjects", type=int, default=200, help="identities of the larger unlabelled pool")
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=60, help="ViT epochs with all labels (scaled by 1/fraction; the "
                    "CNN keeps its 15, scaled alike)")
    ap.add_argument("--patience", type=int, default=20, help="ViT patience with all labels (scaled by 1/fraction)")
    ap.add_argument("--vit-lr", type=float, default=5e-4, help="ViT learning rate from MAE weights")
    ap.add_argument("--scratch-lr", type=float, default=2e-4, help="ViT learning rate from random init")
    ap.add_argument("--vit-mixup", type=float, default=0.0, help="mixup's Beta(a, a) for both ViT arms (0: none)")
    ap.add_argument("--layer-decay", type=float, default=1.0, help="layer-wise lr decay from MAE weights (1: none)")
    ap.add_argument("--pretrain-images", type=int, default=100_000, help="faces seen by each pretraining")
    ap.add_argument("--mask-ratio", type=float, default=0.75, help="share of the patches each pretraining hides")
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5], help="5-way episodes with these shots")
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--student-epochs", type=int, default=4, help="epochs per compound step")
    ap.add_argument("--student-lr", type=float, default=5e-4)
    ap.add_argument("--framed", action="store_true", help="photo-like frames (render_framed_faces) read through the "
                    "face detector (PHOTO_CROPPER's settings) instead of the renderer's own crops")
    ap.add_argument("--align", action="store_true", help="with --framed: align the eyes in the detected face")
    ap.add_argument("--cache", type=Path, default=Path("runs/pretrain_labels"), help="pretrained encoders")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny data, few epochs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--summarise", type=Path, nargs="+", default=None, help="print the table of these JSON files "
                    "(a later file's record of the same seed, fraction and arm replaces an earlier one)")
    args = ap.parse_args(argv)
    if args.quick:
        args.arch, args.subjects, args.per_class, args.large_subjects = "vit_face_micro", (4, 2, 2), 1, 8
        args.epochs, args.patience, args.pretrain_images, args.student_epochs = 2, 2, 200, 1
        args.fractions, args.image_size, args.shots, args.queries = [0.5, 1.0], 32, [1], 1
    return args


def _subset(train, fraction: float, seed: int):
    """A class-stratified ``fraction`` of the training items (at least one per class)."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(train.labels):
        idx = np.flatnonzero(train.labels == c)
        keep += list(rng.choice(idx, size=max(1, round(fraction * len(idx))), replace=False))
    return train.subset(np.sort(np.asarray(keep)))


def _framed_cropper(args: argparse.Namespace):
    """The photo cropper (``PHOTO_CROPPER``), or with ``--align`` a ``FaceAligner`` of its settings."""
    from cfer.data.align import FaceAligner
    from cfer.data.synthetic.framed import PHOTO_CROPPER

    if not args.align:
        return PHOTO_CROPPER
    return FaceAligner(margin=PHOTO_CROPPER.margin, min_neighbors=PHOTO_CROPPER.min_neighbors,
                       cascade=PHOTO_CROPPER.cascade)


def _framed_splits(classes: list[str], args: argparse.Namespace, seed: int) -> dict:
    """Train/val/test faces cut out of photo-like frames by the face detector (and aligned), grey."""
    from cfer.data.synthetic.framed_splits import make_framed_splits

    cropper = _framed_cropper(args)
    parts = make_framed_splits(classes=classes, subjects=tuple(args.subjects), per_class=args.per_class,
                               image_size=args.image_size, channels=1, cropper=cropper, seed=seed)
    for name, part in parts.items():
        print(f"framed {name}: {len(part)} faces found", file=sys.stderr, flush=True)
    if args.align:
        print(f"alignment: {cropper.stats}", file=sys.stderr, flush=True)
    return parts


def data_splits(classes: list[str], args: argparse.Namespace, seed: int) -> dict:
    """One seed's train/val/test faces: the renderer's own crops, or with ``--framed`` the detector's."""
    if args.framed:
        return _framed_splits(classes, args, seed)
    return make_synthetic_splits(classes=classes, subjects=tuple(args.subjects), per_class=args.per_class,
                                 image_size=args.image_size, channels=1, seed=seed)


def _large_pool(classes: list[str], args: argparse.Namespace, seed: int):
    """The larger unlabelled pool: one face per class of ``--large-subjects`` other identities,
    rendered faces, or with ``--framed`` crops the detector finds in photo-like frames."""
    if not args.framed:
        return make_synthetic_splits(classes=classes, subjects=(args.large_subjects, 1, 1), per_class=1,
                                     image_size=args.image_size, channels=1, seed=10_000 + seed)["train"]
    from cfer.data.synthetic.framed_splits import make_framed_splits

    pool = make_framed_splits(classes=classes, subjects=(args.large_subjects, 1, 1), per_class=1,
                              image_size=args.image_size, channels=1, cropper=_framed_cropper(args),
                              seed=10_000 + seed)["train"]
    print(f"framed larger pool: {len(pool)} faces found", file=sys.stderr, flush=True)
    return pool


def _encoder(pool: np.ndarray, name: str, args: argparse.Namespace, seed: int) -> tuple[Path, dict]:
    masked = "" if args.mask_ratio == 0.75 else f"-m{args.mask_ratio:g}"  # 0.75: the names of the first runs
    stem = f"{args.arch}-{args.image_size}-{name}-seed{seed}-n{len(pool)}-i{args.pretrain_images}"
    path = args.cache / f"{stem}{masked}.pt"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        return path, json.loads(info_path.read_text())
    epochs = max(1, round(args.pretrain_images / len(pool)))
    t0 = time.perf_counter()
    result = pretrain_mae(images=pool, config=PretrainConfig(arch=args.arch, image_size=args.image_size,
                                                             epochs=epochs, mask_ratio=args.mask_ratio, seed=seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save_encoder(path)
    info = {"pool": len(pool), "epochs": epochs, "final_loss": result.history[-1]["loss"],
            "seconds": time.perf_counter() - t0}
    info_path.write_text(json.dumps(info))
    return path, info


def vit_recipe(args: argparse.Namespace) -> TeacherConfig:
    """The ViTs' fine-tuning settings (chosen on the validation subjects of seed 0; docs/benchmarks.md):
    AdamW with warm-up and cosine decay, flips and shifts (the synthetic faces are aligned:
    the photo augmentation's crops and rotations cost 5-10 points there), no label smoothing."""
    return TeacherConfig(optimizer="adamw", lr=args.vit_lr, weight_decay=0.05, warmup_epochs=3, schedule="cosine",
                         augment="shift", max_epochs=args.epochs, patience=args.patience, mixup=args.vit_mixup)


def _teacher(arch: str, weights: Path | None, train, splits: dict, fraction: float,
             args: argparse.Namespace, seed: int) -> tuple[torch.nn.Module, dict]:
    scale = 1.0 / fraction
    base = TeacherConfig(arch=arch) if arch == args.cnn else vit_recipe(args)  # the CNN: cfer's fast defaults
    if arch != args.cnn and weights is None:
        base = dataclasses.replace(base, lr=args.scratch_lr)
    elif arch != args.cnn:
        base = dataclasses.replace(base, layer_decay=args.layer_decay)
    config = dataclasses.replace(base, arch=arch, weights=None if weights is None else str(weights), seed=seed,
                                 max_epochs=round(base.max_epochs * scale), patience=round(base.patience * scale),
                                 warmup_epochs=round(base.warmup_epochs * scale))
    t0 = time.perf_counter()
    res = train_teacher(train=train, val=splits["val"], classes=taxonomy.BASIC, config=config)
    scores = confusion(res.model, splits["test"], classes=res.classes).scores()
    shots = {}
    for k in args.shots:
        fs = evaluate_model(res.model, splits["test"], config=EpisodeConfig(ways=5, shots=k, queries=args.queries,
                                                                             episodes=300,
                                                                             seed=seed, sampler="builtin"))
        shots[f"{k}-shot"] = fs.accuracy
    return res.model, {"accuracy": scores.accuracy, "macro_f1": scores.macro_f1(),
                       "val_accuracy": res.best_val_accuracy, "epochs_run": len(res.history),
                       "best_epoch": res.best_epoch, **shots, "seconds": time.perf_counter() - t0}


def _continual(teacher: torch.nn.Module, splits: dict, compound: list[str], order: tuple, args: argparse.Namespace,
               seed: int, folder: Path) -> dict:
    stream = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], basic=taxonomy.BASIC,
                         compound=compound, per_step=1, order=order)
    memory = int(0.3 * sum(len(e.dataset) for e in stream.train_stream))
    seed_everything(seed)
    results, _ = run_order(stream=stream, teacher=teacher, memory_size=memory, epochs=args.student_epochs,
                           lr=args.student_lr, cfer=CferConfig(), checkpoint=folder / f"student-{time.time_ns()}.pt",
                           seed=seed)
    d = results.to_dict()
    return {"average_accuracy": d["average_accuracy"], "final_accuracy": d["final_accuracy"]}


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    compound = list(taxonomy.COMPOUND)
    classes = [*taxonomy.BASIC, *compound]
    records, encoders = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            splits = data_splits(classes, args, seed)
            order = compound_orders(classes=tuple(compound), n_orders=1, seed=seed)[0]
            weights: dict[str, Path | None] = {"scratch": None, "cnn": None}
            if "mae-same" in args.arms:
                pool_name = "framed-same" if args.framed else "same"
                weights["mae-same"], encoders[f"{pool_name}-{seed}"] = _encoder(splits["train"].images, pool_name,
                                                                                args, seed)
            if "mae-large" in args.arms:
                large = _large_pool(classes, args, seed)
                pool_name = "framed-large" if args.framed else "large"
                weights["mae-large"], encoders[f"{pool_name}-{seed}"] = _encoder(large.images, pool_name, args, seed)
            for fraction in args.fractions:
                train = _subset(splits["train"], fraction, seed)
                for arm in args.arms:
                    arch = args.cnn if arm == "cnn" else args.arch
                    model, rec = _teacher(arch, weights[arm], train, splits, fraction, args, seed)
                    if fraction in args.continual_fractions:
                        rec["continual"] = _continual(model, splits, compound, order, args, seed, Path(tmp))
                    records.append({"seed": seed, "fraction": fraction, "arm": arm, "arch": arch, **rec})
                    shots = " ".join(f"{k}-shot {rec[f'{k}-shot']:.3f}" for k in args.shots)
                    print(f"seed {seed} labels {fraction:.0%} {arm:9s} acc {rec['accuracy']:.3f} "
                          f"F1 {rec['macro_f1']:.3f} {shots}"
                          + (f" continual {rec['continual']['average_accuracy']:.3f}" if "continual" in rec else "")
                          + f" ({rec['seconds']:.0f} s)", file=sys.stderr, flush=True)
                    _write(args, records, encoders)
    return {"args": _jsonable(args), "encoders": encoders, "records": records}


def _jsonable(args: argparse.Namespace) -> dict:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in vars(args).items() if k not in ("json", "summarise")}


def _write(args: argparse.Namespace, records: list, encoders: dict) -> None:
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": _jsonable(args), "encoders": encoders, "records": records}, indent=1))


def _fmt(vals: list[float]) -> str:
    a = np.asarray(vals, float)
    return f"{a.mean():.3f} ± {a.std():.3f}" if len(a) > 1 else f"{a.mean():.3f}"


def summarise(records: list[dict]) -> str:
    """The table: per fraction and arm, mean ± std over seeds, and the paired gain over scratch."""
    lines = ["| labels | arm | basic accuracy | basic macro-F1 | 5-way 1-shot | 5-way 5-shot | continual avg acc "
             "| accuracy − scratch (paired) | per seed | seeds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for fraction in sorted({r["fraction"] for r in records}):
        base = {r["seed"]: r for r in records if r["fraction"] == fraction and r["arm"] == "scratch"}
        for arm in ARMS:
            rs = [r for r in records if r["fraction"] == fraction and r["arm"] == arm]
            if not rs:
                continue
            cont = [r["continual"]["average_accuracy"] for r in rs if "continual" in r]
            rs = sorted(rs, key=lambda r: r["seed"])
            gain = [r["accuracy"] - base[r["seed"]]["accuracy"] for r in rs if r["seed"] in base]
            per_seed = ", ".join(f"{g:+.3f}" for g in gain) if gain and arm != "scratch" else "–"
            lines.append(f"| {fraction:.0%} | {arm} ({rs[0]['arch']}) | {_fmt([r['accuracy'] for r in rs])} | "
                         f"{_fmt([r['macro_f1'] for r in rs])} | {_fmt([r.get('1-shot', np.nan) for r in rs])} | "
                         f"{_fmt([r.get('5-shot', np.nan) for r in rs])} | {_fmt(cont) if cont else '–'} | "
                         f"{_fmt(gain) if gain and arm != 'scratch' else '–'} | {per_seed} | {len(rs)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.summarise:
        latest = {(r["seed"], r["fraction"], r["arm"]): r
                  for p in args.summarise for r in json.loads(p.read_text())["records"]}
        print(summarise(list(latest.values())))
        return 0
    t0 = time.perf_counter()
    out = run(args)
    print(f"\n{args.arch}, {args.image_size} px grey, subjects {list(args.subjects)} x {args.per_class} per class, "
          f"seeds {args.seeds}; {(time.perf_counter() - t0) / 60:.1f} min\n")
    print(summarise(out["records"]))
    if args.json is not None:
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
