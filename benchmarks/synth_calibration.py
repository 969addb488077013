"""Calibrate the synthetic faces: are they learnable, not trivial, and compound-like?

Trains a small CNN for a few epochs on the basic classes of the synthetic faces, then
reports, on subjects never seen in training:

1. basic-class accuracy (chance is 1/6): should be clearly above chance and clearly
   below 100%, so that methods have room to differ;
2. how the basic model labels *compound* faces: the share of compound faces it assigns
   to one of the two constituent basics of their class, against what a uniform guess
   over the six basics would give to two of them (2/6), and the rate per constituent
   basic versus the rate per other basic.

Usage:
    python benchmarks/synth_calibration.py [--difficulty 1.0] [--epochs 6] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from cfer import taxonomy
from cfer.data.synthetic import render_faces


def small_cnn(n_classes: int, channels: int = 3) -> nn.Module:
    def block(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        block(channels, 16), block(16, 32), block(32, 64), block(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n_classes),
    )


def run(seed: int, difficulty: float, epochs: int, train_subjects: int, per_class: int) -> dict[str, float]:
    torch.manual_seed(seed)
    train = render_faces(classes="basic", n_subjects=train_subjects, per_class=per_class,
                         difficulty=difficulty, seed=seed)
    test = render_faces(classes="basic", n_subjects=10, per_class=per_class, difficulty=difficulty,
                        seed=seed, first_subject=train_subjects)
    comp = render_faces(classes="compound", n_subjects=10, per_class=per_class, difficulty=difficulty,
                        seed=seed, first_subject=train_subjects)
    assert not set(train.subjects) & set(test.subjects)
    x, y = train.tensors()
    model = small_cnn(len(train.classes))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        xt, yt = test.tensors()
        acc = (model(xt).argmax(1) == yt).float().mean().item()
        xc, yc = comp.tensors()
        pred = model(xc).argmax(1).numpy()
    basic = list(train.classes)
    hits = []
    for i, p in enumerate(pred):
        cons = taxonomy.CONSTITUENTS[comp.classes[yc[i]]]
        in_c = basic[p] in cons
        hits.append(in_c)
    hits = np.array(hits, float)
    return dict(basic_acc=acc, constituent_share=hits.mean(),
                rate_per_constituent=hits.mean() / 2, rate_per_other=(1 - hits.mean()) / 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--difficulty", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-subjects", type=int, default=30)
    ap.add_argument("--per-class", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    rows = [run(s, args.difficulty, args.epochs, args.train_subjects, args.per_class) for s in args.seeds]
    keys = rows[0].keys()
    print(f"difficulty={args.difficulty} epochs={args.epochs} train subjects={args.train_subjects} "
          f"per class={args.per_class} seeds={args.seeds}  ({time.perf_counter() - t0:.0f} s)\n")
    print("| figure | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("|---|" + "---|" * (len(args.seeds) + 1))
    names = {"basic_acc": "basic accuracy, held-out subjects (chance 0.167)",
             "constituent_share": "compound faces labelled as a constituent basic (uniform: 0.333)",
             "rate_per_constituent": "rate per constituent basic",
             "rate_per_other": "rate per other basic"}
    for k in keys:
        vals = [r[k] for r in rows]
        print(f"| {names[k]} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")


if __name__ == "__main__":
    main()
