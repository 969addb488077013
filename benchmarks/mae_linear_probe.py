"""Is expression information linearly readable from a frozen MAE encoder? (validation subjects)

A diagnostic for the scarce-label goal of ``pretrain_labels.py``: with 10% of the labels the
fine-tuned MAE ViT sometimes finds the basic classes and sometimes stays at chance. If the
frozen encoder's features already separated the classes linearly, a linear probe first and
fine-tuning after (LP-FT) would be the obvious remedy. This script fits a logistic regression
on the frozen pooled features of the labelled subset (the same data, subsets and cached
encoders as ``pretrain_labels.py``; standardised features; the six basic classes) for a few
regularisation strengths, and reports the validation accuracy of each, for the MAE encoder
and for the same architecture with random weights. The test subjects are never used.

    python benchmarks/mae_linear_probe.py --seeds 0 1 2 --fractions 0.1 0.3

(the encoders are the ones ``pretrain_labels.py --seeds 0 1 2`` caches in ``runs/pretrain_labels``;
a missing one is pretrained as that script does.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pretrain_labels  # the same splits, subsets and encoder cache (a sibling script)

from cfer import taxonomy
from cfer.data.synthetic import make_synthetic_splits
from cfer.models.backbones import create_backbone

STRENGTHS = (0.01, 0.1, 1.0, 10.0)
"""Inverse L2 strengths ``C`` of the logistic regression."""


@torch.no_grad()
def pooled_features(model: torch.nn.Module, dataset, *, batch_size: int = 128) -> np.ndarray:
    """The frozen model's pooled features of every item of a :class:`~cfer.data.base.FaceDataset`."""
    model.eval()
    x = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).float().div_(255.0)
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


def probe_accuracies(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                     *, strengths: tuple[float, ...] = STRENGTHS) -> dict[float, float]:
    """Validation accuracy of a logistic regression on standardised features, per ``C``."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    out = {}
    for c in strengths:
        clf = LogisticRegression(C=c, max_iter=3000).fit((train_x - mu) / sd, train_y)
        out[c] = float((clf.predict((val_x - mu) / sd) == val_y).mean())
    return out


def run(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    classes = [*taxonomy.BASIC, *taxonomy.COMPOUND]
    basic = list(range(len(taxonomy.BASIC)))
    cfg = pretrain_labels.parse_args(["--quick"] if args.quick else [])
    cfg.cache = args.cache
    if not args.quick:
        cfg.pretrain_images = args.pretrain_images
    rows = []
    for seed in args.seeds:
        splits = make_synthetic_splits(classes=classes, subjects=tuple(cfg.subjects), per_class=cfg.per_class,
                                       image_size=cfg.image_size, channels=1, seed=seed)
        path, _ = pretrain_labels._encoder(splits["train"].images, "same", cfg, seed)
        torch.manual_seed(seed)
        encoders = {"mae": create_backbone(cfg.arch, in_chans=1, img_size=cfg.image_size, weights=str(path)),
                    "random": create_backbone(cfg.arch, in_chans=1, img_size=cfg.image_size)}
        val = splits["val"]
        keep_val = np.isin(val.labels, basic)
        for fraction in args.fractions:
            train = pretrain_labels._subset(splits["train"], fraction, seed)
            keep = np.isin(train.labels, basic)
            for name, model in encoders.items():
                accs = probe_accuracies(pooled_features(model, train)[keep], np.asarray(train.labels)[keep],
                                        pooled_features(model, val)[keep_val], np.asarray(val.labels)[keep_val])
                rows.append({"seed": seed, "fraction": fraction, "encoder": name, "labelled": int(keep.sum()),
                             "val_faces": int(keep_val.sum()), "accuracy_by_C": accs, "best": max(accs.values())})
                print(f"seed {seed} labels {fraction:.0%} {name:6s} " +
                      " ".join(f"C={c}: {a:.3f}" for c, a in accs.items()), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Mean over seeds of the best validation accuracy over ``C``, per fraction and encoder."""
    lines = ["| labels | encoder | best validation accuracy over C, per seed | mean |", "|---|---|---|---|"]
    for fraction in sorted({r["fraction"] for r in rows}):
        for name in ("mae", "random"):
            rs = [r for r in rows if r["fraction"] == fraction and r["encoder"] == name]
            per = ", ".join(f"{r['best']:.3f}" for r in rs)
            lines.append(f"| {fraction:.0%} | {name} | {per} | {np.mean([r['best'] for r in rs]):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3])
    ap.add_argument("--cache", type=Path, default=Path("runs/pretrain_labels"), help="pretrained encoders")
    ap.add_argument("--pretrain-images", type=int, default=100_000, help="faces each cached encoder's pretraining saw")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke run: pretrain_labels.py's --quick data and encoder")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = run(args)
    print(table(rows))
    print(f"\nchance: {1 / len(taxonomy.BASIC):.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v
                                                  for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
