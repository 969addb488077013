"""Few-shot comparison of encoders on compound classes they never saw, and episode speed.

In one run, on the synthetic faces:

1. a basic teacher is trained on the six basic classes (early stopping on validation
   subjects); a cfer student and a naive fine-tuned student are trained on the stream
   basic -> 8 compound classes (3 per step);
2. the other 7 compound classes are **novel to every encoder**; N-way K-shot episodes are
   drawn from them on test subjects, with queries from every class of each episode;
3. each encoder (random init, teacher, cfer student, naive student) embeds the pool once
   and is scored with a nearest-prototype classifier: 5-way 1-shot and 5-way 5-shot,
   ``--episodes`` episodes each (mean accuracy, 95% CI);
4. speed, measured in the same run: one embedding pass over a pool of all 15 compound
   classes (median of 3), 1,000 episodes on the cached embeddings with each episode sampler
   (learn2learn's, the default where it imports, and cfer's built-in one; median of 3),
   and the cost of embedding each episode's images again (timed on ``--reembed-episodes`` episodes, scaled to 1,000).

Usage:
    python benchmarks/fewshot_compare.py [--episodes 600] [--json out.json] [--plot out.png]
    python benchmarks/fewshot_compare.py --quick
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
from cfer.continual.stream import compound_orders, make_stream
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.data.synthetic import make_synthetic_splits, render_faces
from cfer.fewshot.episodes import EpisodeConfig, embed, evaluate_embeddings, sample_episodes
from cfer.fewshot.sampling import resolve_sampler


def _plain(v: object) -> object:
    """An argparse value as JSON holds it."""
    return list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resemotenet_slim")
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--subjects", type=int, nargs=3, default=(16, 4, 8), metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--queries", type=int, default=15)
    ap.add_argument("--reembed-episodes", type=int, default=100)
    ap.add_argument("--speed-pool", type=int, nargs=2, default=(8, 10), metavar=("SUBJECTS", "PER_CLASS"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.subjects, args.per_class, args.episodes, args.reembed_episodes = (8, 2, 4), 4, 100, 20
        args.queries = 10
        args.speed_pool = (4, 6)
    return args


def train_students(splits, seen, args):
    stream = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], compound=seen,
                         order=seen, per_step=3)
    out = {}
    for name in ("cfer", "naive"):
        model = build_model(arch=args.arch, num_classes=stream.n_basic, img_size=args.image_size, seed=args.seed)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        strategy = make_strategy(name, model=model, optimizer=opt, train_epochs=4, train_mb_size=32,
                                 memory_size=int(0.3 * sum(len(e.dataset) for e in stream.train_stream)),
                                 total_classes=len(stream.class_names),
                                 plugins=[BasicEpochsPlugin(basic_epochs=8, later_epochs=4)])
        torch.manual_seed(args.seed)
        res = run_stream(strategy, stream)
        print(f"  {name} student: final seen-class test accuracy {res.final_accuracy:.3f}", file=sys.stderr)
        out[name] = model
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    order = compound_orders(n_orders=1, seed=args.seed)[0]
    seen, novel = list(order[:8]), list(order[8:])
    splits = make_synthetic_splits(subjects=tuple(args.subjects), per_class=args.per_class,
                                   image_size=args.image_size, seed=args.seed)
    print(f"# seen compound classes: {seen}\n# novel (episodes): {novel}", file=sys.stderr)

    basic = {k: v.subset(np.flatnonzero(np.isin(np.asarray(v.classes)[v.labels], taxonomy.BASIC)))
             for k, v in splits.items()}
    teacher = train_teacher(train=basic["train"], val=basic["val"],
                            config=TeacherConfig(arch=args.arch, max_epochs=12, patience=3, batch_size=32,
                                                 seed=args.seed))
    print(f"  teacher: best val accuracy {teacher.best_val_accuracy:.3f} (epoch {teacher.best_epoch})",
          file=sys.stderr)
    students = train_students(splits, seen, args)
    encoders = {
        "random init": build_model(arch=args.arch, num_classes=6, img_size=args.image_size, seed=args.seed + 1),
        "basic teacher": teacher.model,
        "cfer student": students["cfer"],
        "naive student": students["naive"],
    }

    test = splits["test"]
    names = np.asarray(test.classes)[test.labels]
    pool = test.subset(np.flatnonzero(np.isin(names, novel)))
    x, y = pool.tensors()
    rows = []
    for enc_name, model in encoders.items():
        feats = embed(model, x)
        row = {"encoder": enc_name}
        for shots in (1, 5):
            cfg = EpisodeConfig(ways=5, shots=shots, queries=args.queries, episodes=args.episodes, seed=args.seed)
            res = evaluate_embeddings(features=feats, labels=y, class_names=list(pool.classes), config=cfg)
            row[f"5w{shots}s"] = res.to_dict()
        rows.append(row)

    # Speed: one pass over a larger pool vs 1,000 episodes on its cached embeddings.
    speed_pool = render_faces(classes="compound", n_subjects=args.speed_pool[0], per_class=args.speed_pool[1],
                              image_size=args.image_size, seed=args.seed + 7, first_subject=50_000)
    xs, ys = speed_pool.tensors()
    enc = teacher.model
    embed(enc, xs[:64])  # warm-up
    passes = []
    for _ in range(3):  # the median of 3 passes
        t0 = time.perf_counter()
        fs = embed(enc, xs)
        passes.append(time.perf_counter() - t0)
    t_embed = float(np.median(passes))
    # 1,000 episodes with each sampler cfer has here (learn2learn's task transforms when it
    # imports: the default; cfer's built-in one), after a warm-up call of each (the first
    # imports the sampler, as the embedding pass had its warm-up); median of 3, interleaved.
    samplers = ["builtin"] + (["learn2learn"] if resolve_sampler("auto") == "learn2learn" else [])
    times: dict[str, list[float]] = {name: [] for name in samplers}
    for repeat in range(4):
        for name in samplers:
            cfg = EpisodeConfig(ways=5, shots=1, queries=args.queries, episodes=1000 if repeat else 2,
                                seed=args.seed, sampler=name)
            t0 = time.perf_counter()
            evaluate_embeddings(features=fs, labels=ys, class_names=list(speed_pool.classes), config=cfg)
            if repeat:
                times[name].append(time.perf_counter() - t0)
    by_sampler = {name: float(np.median(t)) for name, t in times.items()}
    t_eps = by_sampler[resolve_sampler("auto")]
    few = EpisodeConfig(ways=5, shots=1, queries=args.queries, episodes=args.reembed_episodes, seed=args.seed)
    t0 = time.perf_counter()
    for support, query, _ in sample_episodes(labels=ys, config=few):
        embed(enc, xs[support])
        embed(enc, xs[query])
    t_reembed = (time.perf_counter() - t0) * 1000 / args.reembed_episodes
    speed = {"pool_images": len(xs), "embed_pass_s": t_embed, "episodes_1000_cached_s": t_eps,
             "episodes_1000_reembed_s": t_reembed, "cached_over_embed": t_eps / t_embed,
             "reembed_over_cached": t_reembed / t_eps, "reembed_timed_episodes": args.reembed_episodes,
             "default_sampler": resolve_sampler("auto"), "episodes_1000_cached_s_by_sampler": by_sampler}
    total = time.perf_counter() - t_start

    print(f"\n5-way episodes on the {len(novel)} compound classes no encoder saw ({', '.join(novel)}), "
          f"{len(x)} test images of {args.subjects[2]} unseen subjects, nearest-prototype classifier, "
          f"{args.episodes} episodes, {args.queries} queries per class; "
          f"{args.arch} {args.image_size}x{args.image_size}; "
          f"total {total / 60:.1f} min\n")
    print("| encoder | 5-way 1-shot | 5-way 5-shot |")
    print("|---|---|---|")
    for r in rows:
        cells = [f"{100 * r[k]['accuracy']:.2f} ± {100 * r[k]['ci95']:.2f}" for k in ("5w1s", "5w5s")]
        print(f"| {r['encoder']} | " + " | ".join(cells) + " |")
    print(f"\nspeed ({speed['pool_images']} images, teacher encoder, 5-way 1-shot {args.queries}-query episodes):\n")
    print("| sampler | one embedding pass | 1,000 episodes on cached embeddings | 1,000 episodes re-embedding "
          "their images | cached / pass | re-embed / cached |")
    print("|---|---|---|---|---|---|")
    for name, t in by_sampler.items():
        label = f"{name} (the default)" if name == speed["default_sampler"] else name
        print(f"| {label} | {t_embed:.2f} s | {t:.2f} s | {t_reembed:.1f} s (timed on {args.reembed_episodes}) "
              f"| {t / t_embed:.2f}x | {t_reembed / t:.0f}x |")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seen": seen, "novel": novel, "rows": rows, "speed": speed,
                                         "args": {k: _plain(v) for k, v in vars(args).items()}}, indent=1))
        print(f"\nJSON written to {args.json}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        width = 0.38
        xs_ = np.arange(len(rows))
        for j, key in enumerate(("5w1s", "5w5s")):
            m = [100 * r[key]["accuracy"] for r in rows]
            e = [100 * r[key]["ci95"] for r in rows]
            label = key.replace("w", "-way ").replace("s", "-shot")
            ax.bar(xs_ + (j - 0.5) * width, m, width, yerr=e, capsize=4, label=label)
        ax.axhline(20, color="grey", ls="--", lw=1, label="chance (5-way)")
        ax.set_xticks(xs_)
        ax.set_xticklabels([r["encoder"] for r in rows])
        ax.set_ylabel("accuracy (%) ± 95% CI")
        ax.set_title(f"few-shot on {len(novel)} novel compound classes, {args.episodes} episodes", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
