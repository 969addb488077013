"""Real faces for development: CK+48, subject-disjoint k-fold teacher accuracy, from scratch vs MAE.

CK+48 is the ``CK+48`` folder of the public repository
``WuJie1010/Facial-Expression-Recognition.Pytorch`` (981 grey 48x48 face crops of 123
subjects, the last frames of posed sequences, one folder per class; the subject is the
``S###`` at the start of each file name). Fetch it into an ignored folder (``data/`` is in
``.gitignore``) and never commit it::

    git clone --depth 1 https://github.com/WuJie1010/Facial-Expression-Recognition.Pytorch /tmp/fer
    cp -r /tmp/fer/CK+48 data/

cfer's taxonomy has no contempt, so its 54 images are left out: six basic classes, 927
images. Subjects are shuffled (``--seed``) into ``--folds`` folds; fold ``k`` is the test set,
15% of the other subjects the validation set (early stopping), the rest the training set.
Each arm trains a teacher on the six classes and reports test accuracy and macro-F1:

* ``cnn-fast`` / ``cnn-photo``: ``--cnn`` from scratch with the fast defaults / the photo
  recipe (:func:`cfer.continual.teacher.photo_recipe`);
* ``vit-scratch``: ``--vit`` from scratch, photo recipe (60 epochs, patience 20, lr 2e-4);
* ``vit-mae``: ``--vit`` from the encoder of masked-autoencoder pretraining
  (:func:`cfer.pretrain.pretrain_mae`) on the fold's training and validation images, labels
  unused and the test subjects never seen; photo recipe (60 epochs, patience 20, lr 5e-4).

``--align`` aligns the eyes first (:class:`cfer.data.align.FaceAligner` with
``detect_face=False``: the images are face crops already).

    python benchmarks/ckplus_folds.py --data data/CK+48 --json docs/results/ckplus_folds.json
    python benchmarks/ckplus_folds.py --summarise docs/results/ckplus_folds*.json
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from cfer import taxonomy
from cfer.continual.confusion import confusion
from cfer.continual.teacher import TeacherConfig, photo_recipe, train_teacher
from cfer.data.align import FaceAligner
from cfer.data.readers import read_dataset
from cfer.pretrain import PretrainConfig, pretrain_mae

ARMS = ("cnn-fast", "cnn-photo", "vit-scratch", "vit-mae")
SUBJECT = re.compile(r"^(S\d+)_")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/CK+48"))
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--cnn", default="resemotenet_slim")
    ap.add_argument("--vit", default="vit_face_mini")
    ap.add_argument("--vit-epochs", type=int, default=60)
    ap.add_argument("--vit-patience", type=int, default=20)
    ap.add_argument("--vit-lr", type=float, default=5e-4, help="ViT learning rate from MAE weights")
    ap.add_argument("--scratch-lr", type=float, default=2e-4, help="ViT learning rate from random init")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only-folds", type=int, nargs="*", default=None, help="run these folds only (0-based)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fold assignment and of training")
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--align", action="store_true", help="align the eyes first (FaceAligner, detect_face=False)")
    ap.add_argument("--pretrain-images", type=int, default=100_000, help="faces seen by each pretraining")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--summarise", type=Path, nargs="+", default=None, help="print the table of these JSON files")
    return ap.parse_args(argv)


def read_ckplus(root: Path, *, image_size: int, align: bool, folder: Path):
    """CK+48's six basic classes through a CSV manifest (``path,label,subject``) and cfer's reader."""
    if not root.is_dir():
        raise SystemExit(f"{root} is not a folder; fetch CK+48 first (see this script's docstring)")
    rows = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name == "contempt":
            continue
        label = taxonomy.normalize(sub.name)
        for f in sorted(sub.glob("*.png")):
            m = SUBJECT.match(f.name)
            if m is None:
                raise SystemExit(f"{f.name}: no subject (S###_) at the start of the file name")
            rows.append({"path": str(f.resolve()), "label": label, "subject": m.group(1)})
    manifest = folder / "ckplus.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "subject"])
        w.writeheader()
        w.writerows(rows)
    crop = FaceAligner(detect_face=False, eye_distance=0.4, eye_height=0.35) if align else False
    ds = read_dataset(manifest, format="csv", image_size=image_size, channels=1, crop_faces=crop)
    if align:
        print(f"alignment: {crop.stats}", file=sys.stderr)
    return ds


def folds_of(subjects: np.ndarray, *, k: int, seed: int) -> list[np.ndarray]:
    """The subjects shuffled and dealt into ``k`` folds."""
    uniq = np.unique(subjects)
    np.random.default_rng(seed).shuffle(uniq)
    return [uniq[i::k] for i in range(k)]


def _split(ds, test_subjects: np.ndarray, seed: int) -> dict:
    subjects = np.asarray(ds.subjects)
    rest = np.setdiff1d(np.unique(subjects), test_subjects)
    rng = np.random.default_rng(seed)
    val_subjects = rng.choice(rest, size=max(1, round(0.15 * len(rest))), replace=False)
    test = np.isin(subjects, test_subjects)
    val = np.isin(subjects, val_subjects)
    return {"train": ds.subset(np.flatnonzero(~test & ~val)), "val": ds.subset(np.flatnonzero(val)),
            "test": ds.subset(np.flatnonzero(test))}


def _vit_recipe(args: argparse.Namespace, **changes: object) -> TeacherConfig:
    """The photo recipe for the ViTs, longer (a ViT's validation accuracy moves late) and with
    the learning rates chosen on the synthetic faces' validation subjects (pretrain_labels.py)."""
    return photo_recipe(arch=args.vit, max_epochs=args.vit_epochs, patience=args.vit_patience, **changes)


def _teacher(arch: str, config: TeacherConfig, parts: dict) -> dict:
    t0 = time.perf_counter()
    res = train_teacher(train=parts["train"], val=parts["val"], config=config,
                        classes=tuple(c for c in taxonomy.BASIC if c in parts["train"].classes))
    scores = confusion(res.model, parts["test"], classes=res.classes).scores()
    return {"arch": arch, "accuracy": scores.accuracy, "macro_f1": scores.macro_f1(), "epochs_run": len(res.history),
            "best_epoch": res.best_epoch, "seconds": time.perf_counter() - t0}


def run(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        ds = read_ckplus(args.data, image_size=args.image_size, align=args.align, folder=Path(tmp))
        folds = folds_of(np.asarray(ds.subjects), k=args.folds, seed=args.seed)
        for k, test_subjects in enumerate(folds):
            if args.only_folds is not None and k not in args.only_folds:
                continue
            parts = _split(ds, test_subjects, args.seed + k)
            sizes = {name: len(p) for name, p in parts.items()}
            for arm in args.arms:
                seed = args.seed + k
                if arm == "cnn-fast":
                    rec = _teacher(args.cnn, TeacherConfig(arch=args.cnn, seed=seed), parts)
                elif arm == "cnn-photo":
                    rec = _teacher(args.cnn, photo_recipe(arch=args.cnn, seed=seed), parts)
                elif arm == "vit-scratch":
                    rec = _teacher(args.vit, _vit_recipe(args, seed=seed, lr=args.scratch_lr), parts)
                else:
                    pool = np.concatenate([parts["train"].images, parts["val"].images])
                    epochs = max(1, round(args.pretrain_images / len(pool)))
                    t0 = time.perf_counter()
                    mae = pretrain_mae(images=pool, config=PretrainConfig(arch=args.vit, image_size=args.image_size,
                                                                          epochs=epochs, seed=seed))
                    encoder = mae.save_encoder(Path(tmp) / f"encoder-{k}.pt")
                    pre = {"pool": len(pool), "epochs": epochs, "final_loss": mae.history[-1]["loss"],
                           "seconds": time.perf_counter() - t0}
                    rec = _teacher(args.vit, _vit_recipe(args, seed=seed, lr=args.vit_lr, weights=str(encoder)), parts)
                    rec["pretrain"] = pre
                records.append({"fold": k, "arm": arm, "align": args.align, **sizes, **rec})
                print(f"fold {k} {arm:11s} acc {rec['accuracy']:.3f} macro-F1 {rec['macro_f1']:.3f} "
                      f"({rec['epochs_run']} epochs, {rec['seconds']:.0f} s)", file=sys.stderr, flush=True)
                _write(args, records)
    return records


def _write(args: argparse.Namespace, records: list) -> None:
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k not in ("json", "summarise")}
        args.json.write_text(json.dumps({"args": meta, "records": records}, indent=1))


def _fmt(vals: list[float]) -> str:
    a = np.asarray(vals, float)
    return f"{a.mean():.3f} ± {a.std():.3f}" if len(a) > 1 else f"{a.mean():.3f}"


def summarise(records: list[dict]) -> str:
    """Per arm (and alignment): mean ± std over folds, and the paired difference to vit-scratch / cnn-fast."""
    lines = ["| arm | aligned | test accuracy | macro-F1 | − vit-scratch (paired) | − cnn-fast (paired) | folds |",
             "|---|---|---|---|---|---|---|"]
    for align in sorted({r["align"] for r in records}):
        rs_align = [r for r in records if r["align"] == align]
        base = {a: {r["fold"]: r for r in rs_align if r["arm"] == a} for a in ("vit-scratch", "cnn-fast")}
        for arm in ARMS:
            rs = [r for r in rs_align if r["arm"] == arm]
            if not rs:
                continue
            cells = []
            for ref in ("vit-scratch", "cnn-fast"):
                diff = [r["accuracy"] - base[ref][r["fold"]]["accuracy"] for r in rs if r["fold"] in base[ref]]
                cells.append(_fmt(diff) if diff and arm != ref else "–")
            acc = _fmt([r["accuracy"] for r in rs])
            lines.append(f"| {arm} ({rs[0]['arch']}) | {'yes' if align else 'no'} | {acc} "
                         f"| {_fmt([r['macro_f1'] for r in rs])} | {cells[0]} | {cells[1]} | {len(rs)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.summarise:
        print(summarise([r for p in args.summarise for r in json.loads(p.read_text())["records"]]))
        return 0
    t0 = time.perf_counter()
    records = run(args)
    print(f"\nCK+48 ({args.folds} subject-disjoint folds, seed {args.seed}, {args.image_size} px grey"
          f"{', eyes aligned' if args.align else ''}); {(time.perf_counter() - t0) / 60:.1f} min\n")
    print(summarise(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
