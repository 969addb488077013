"""Compare cfer with the baselines on the same synthetic basic -> compound stream.

Every strategy gets the same data, class orders, initial weights, epochs, optimiser and
replay budget. For each class order the stream is: the basic classes, then the compound
classes ``--per-step`` at a time. Prints a markdown table (mean +- std over orders; the
final model's macro-F1 over all seen classes next to the accuracies),
optionally writes one JSON record per strategy (``--json``) and a plot of seen-class
accuracy against step (``--plot``).

Usage:
    python benchmarks/continual_compare.py                 # default run (<= 20 min, 2 cores)
    python benchmarks/continual_compare.py --quick         # smoke run (<= 3 min)
    python benchmarks/continual_compare.py --strategies cfer naive --orders 3 --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from cfer.continual.confusion import confusion
from cfer.continual.factory import STRATEGIES, CferConfig, make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.runner import run_stream
from cfer.continual.stream import compound_orders, make_stream
from cfer.data.base import FaceDataset
from cfer.data.synthetic import make_synthetic_splits

COLUMNS = [
    ("average_accuracy", "avg acc over steps"),
    ("final_accuracy", "final acc (all 21)"),
    ("final_basic_accuracy", "final basic acc"),
    ("final_compound_accuracy", "final compound acc"),
    ("mean_newest_accuracy", "newest-class acc"),
    ("forgetting", "forgetting"),
    ("final_macro_f1", "final macro-F1 (all 21)"),
    ("mean_step_time_s", "s / step"),
]
JSON_ONLY = ("final_macro_f1_basic", "final_macro_f1_compound")
"""Summarised in the JSON (mean and std over orders) but not printed."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", nargs="+", default=[*STRATEGIES, "cfer+la"], choices=[*STRATEGIES, "cfer+la"],
                    help="'cfer+la' is cfer with logit adjustment (--logit-adjustment)")
    ap.add_argument("--orders", type=int, default=3, help="number of random compound class orders")
    ap.add_argument("--per-step", type=int, default=3, help="compound classes per step (1 = published protocol)")
    ap.add_argument("--arch", default="resemotenet_slim")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per experience")
    ap.add_argument("--basic-epochs", type=int, default=6, help="epochs on the basic experience")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--subjects", type=int, nargs=3, default=(16, 4, 8), metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--memory-fraction", type=float, default=0.3,
                    help="replay budget M as a fraction of the training set (the published 0.3)")
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--psmr-mode", choices=("grow", "limit"), default="limit",
                    help="cfer's buffer mode; 'limit' uses the same budget M at every step as the other replay methods")
    ap.add_argument("--gamma0", type=float, default=0.1, help="cfer's logit-distillation weight (published: 0.1)")
    ap.add_argument("--feature-weight", type=float, default=1.0, help="cfer's feature-distillation weight")
    ap.add_argument("--logit-adjustment", type=float, default=1.0,
                    help="tau of the logit adjustment in the 'cfer+la' variant ('cfer' has none, as published)")
    ap.add_argument("--evaluate-on", choices=("test", "val"), default="test",
                    help="'val' to choose hyper-parameters on the validation subjects; report on 'test'")
    ap.add_argument("--quick", action="store_true", help="small smoke run: 2 orders, fewer subjects/epochs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.orders, args.epochs, args.basic_epochs = min(args.orders, 2), 2, 3
        args.subjects, args.per_class, args.per_step = (8, 2, 4), 3, 5
    return args


def final_scores(model: torch.nn.Module, data: FaceDataset, *, classes: tuple[str, ...]) -> dict:
    """Per-class precision, recall, F1 and macro-F1 of the final model over every class it
    learnt (:meth:`cfer.continual.confusion.Confusion.scores`), on ``data`` (the split the
    accuracies are measured on): ``{"final_macro_f1", "final_macro_f1_basic",
    "final_macro_f1_compound", "final_scores"}``."""
    scores = confusion(model, data, classes=classes).scores()
    return {"final_macro_f1": scores.macro_f1(), "final_macro_f1_basic": scores.macro_f1(kind="basic"),
            "final_macro_f1_compound": scores.macro_f1(kind="compound"), "final_scores": scores.to_dict()}


def run_one(name: str, stream, args: argparse.Namespace, init_state: dict, memory_size: int,
            eval_data: FaceDataset) -> dict:
    model = build_model(arch=args.arch, num_classes=stream.n_basic, in_chans=3, img_size=args.image_size,
                        seed=args.seed)
    model.load_state_dict(copy.deepcopy(init_state))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    epochs = BasicEpochsPlugin(basic_epochs=args.basic_epochs, later_epochs=args.epochs)
    cfer_opts = CferConfig(gamma0=args.gamma0, feature_weight=args.feature_weight, psmr_mode=args.psmr_mode,
                           logit_adjustment=args.logit_adjustment if name == "cfer+la" else 0.0)
    strategy = make_strategy(name.split("+")[0], model=model, optimizer=opt, train_epochs=args.epochs, train_mb_size=32,
                             eval_mb_size=256, memory_size=memory_size, total_classes=len(stream.class_names),
                             plugins=[epochs], cfer=cfer_opts)
    torch.manual_seed(args.seed)
    res = run_stream(strategy, stream, evaluate_on=args.evaluate_on)
    return {**res.to_dict(), **final_scores(strategy.model, eval_data, classes=tuple(stream.class_names))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    splits = make_synthetic_splits(subjects=tuple(args.subjects), per_class=args.per_class,
                                   image_size=args.image_size, seed=args.seed)
    memory_size = int(args.memory_fraction * len(splits["train"]))
    orders = compound_orders(n_orders=args.orders, seed=args.seed)
    init = build_model(arch=args.arch, num_classes=6, in_chans=3, img_size=args.image_size, seed=args.seed)
    init_state = init.state_dict()
    records: dict[str, list[dict]] = {n: [] for n in args.strategies}
    print(f"# continual comparison: {len(args.strategies)} strategies x {len(orders)} orders, arch {args.arch}, "
          f"{args.per_step} compound classes per step, M={memory_size}, train={len(splits['train'])} faces",
          file=sys.stderr)
    for k, order in enumerate(orders):
        stream = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], per_step=args.per_step,
                             order=order)
        for name in args.strategies:
            t0 = time.perf_counter()
            rec = run_one(name, stream, args, init_state, memory_size, splits[args.evaluate_on])
            rec["order"] = list(order)
            records[name].append(rec)
            print(f"  order {k} {name:8s} avg {rec['average_accuracy']:.3f} final {rec['final_accuracy']:.3f} "
                  f"macro-F1 {rec['final_macro_f1']:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    total = time.perf_counter() - t_start

    print(f"\nevaluated on {args.evaluate_on}; cfer: gamma0={args.gamma0}, feature weight={args.feature_weight}, "
          f"PSMR mode={args.psmr_mode}; cfer+la: logit adjustment tau={args.logit_adjustment}")
    print(f"{len(orders)} class orders, {args.per_step} compound classes per step, {args.arch} "
          f"{args.image_size}x{args.image_size}, {args.basic_epochs}+{args.epochs} epochs, "
          f"replay budget {memory_size}, "
          f"total {total / 60:.1f} min\n")
    print("| strategy | " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    summary = {}
    for name in args.strategies:
        cells, summary[name] = [], {}
        for key, _ in COLUMNS:
            vals = np.array([r[key] for r in records[name]], float)
            summary[name][key] = {"mean": float(vals.mean()), "std": float(vals.std())}
            fmt = "{:.1f} ± {:.1f}" if key == "mean_step_time_s" else "{:.3f} ± {:.3f}"
            cells.append(fmt.format(vals.mean(), vals.std()))
        print(f"| {name} | " + " | ".join(cells) + " |")
        for key in JSON_ONLY:
            vals = np.array([r[key] for r in records[name] if r[key] is not None], float)
            summary[name][key] = {"mean": float(vals.mean()), "std": float(vals.std())} if len(vals) else None
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = [{"strategy": n, "summary": summary[n], "runs": records[n]} for n in args.strategies]
        args.json.write_text(json.dumps({"args": {k: (list(v) if isinstance(v, tuple) else v)
                                                  for k, v in vars(args).items() if k not in ("json", "plot")},
                                         "total_seconds": total, "results": out}, indent=1, default=str))
        print(f"\nJSON written to {args.json}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name in args.strategies:
            curves = np.array([r["seen_accuracy"] for r in records[name]])
            m, s = curves.mean(0), curves.std(0)
            x = np.arange(len(m))
            ax.plot(x, m, marker="o", ms=3, label=name, lw=2.4 if name.startswith("cfer") else 1.3)
            ax.fill_between(x, m - s, m + s, alpha=0.12)
        ax.set_xlabel("step (0 = basic classes)")
        ax.set_ylabel("accuracy on all seen classes")
        ax.set_title(f"basic -> compound stream, mean ± std over {len(orders)} class orders")
        ax.grid(alpha=0.3)
        ax.legend(ncol=3, fontsize=8)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
