"""Which streams of a clip help: single frame vs temporal vs + motion vs + audio (issue 14).

On synthetic clips (held-out people), every variant is trained with the same teacher
loop (:func:`cfer.continual.teacher.train_teacher`: Adam, early stopping on validation
people) and scored on the test people, on the basic classes (neutral included) and on
the compound classes:

* ``apex``: the middle frame only (the single-frame model);
* ``frames``: all frames, temporal transformer;
* ``frames+motion``: + the landmark-motion stream;
* ``fused``: + the audio stream (frames, motion and audio, attention fusion);
* ``frames+audio`` and ``motion+audio``: the fused model trained without one stream.

Multi-stream variants train with modality dropout (``--modality-dropout``). For the fused
model the script also scores each stream alone (the others dropped at test time) and the
model with one stream dropped at test time, next to the variant trained without it.

With ``--pool-people N`` every multi-stream variant is then fine-tuned on unlabelled clips of
N other people, the model teaching its own stream subsets from its full output
(:func:`cfer.continual.stream_distillation.distil_streams_unlabelled`); the JSON keeps the
figures before that step under ``"before_pool"`` (``--merge --before-pool`` prints them).

Each process runs the seeds it is given (one seed = other people and another
initialisation); ``--merge`` makes the tables from the JSON files of parallel runs (runs of one seed with
different variants are joined).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/clip_streams.py --seeds 0 --out /tmp/cs0.json &
    OMP_WAIT_POLICY=PASSIVE python benchmarks/clip_streams.py --seeds 1 2 --out /tmp/cs12.json
    python benchmarks/clip_streams.py --merge /tmp/cs0.json /tmp/cs12.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from cfer.machine import describe, machines_note

VARIANTS = {
    "apex": dict(temporal="apex", streams=("frames",)),
    "frames": dict(temporal="transformer", streams=("frames",)),
    "frames+motion": dict(temporal="transformer", streams=("frames", "motion")),
    "fused": dict(temporal="transformer", streams=("frames", "motion", "audio")),
    "frames+audio": dict(temporal="transformer", streams=("frames", "audio")),
    "motion+audio": dict(temporal="transformer", streams=("motion", "audio")),
}
WITHOUT = {"audio": "frames+motion", "motion": "frames+audio", "frames": "motion+audio"}


def _accuracy(model: torch.nn.Module, ds, classes: tuple[str, ...], names: tuple[str, ...]) -> float:
    from cfer.continual.evaluation import evaluate

    keep = np.flatnonzero(np.isin(np.asarray(ds.classes)[ds.labels], names))
    sub = ds.subset(keep)
    label_map = np.array([classes.index(c) if c in classes else -1 for c in sub.classes])
    return evaluate(model, sub, label_map=label_map, batch_size=64)


def _dropped(model: torch.nn.Module, splits: dict, classes, groups) -> tuple[dict, dict]:
    """Each stream alone in the fused model, and the fused model with each stream dropped, at test."""
    net, streams = model.backbone, ("frames", "motion", "audio")
    alone, dropped = {}, {}
    for s in streams:
        with net.dropping(set(streams) - {s}):
            alone[s] = {k: _accuracy(model, splits["test"], classes, v) for k, v in groups}
        with net.dropping({s}):
            dropped[s] = {k: _accuracy(model, splits["test"], classes, v) for k, v in groups}
            dropped[s]["val_all"] = _accuracy(model, splits["val"], classes, classes)
    return alone, dropped


def _row(model: torch.nn.Module, splits: dict, classes, groups) -> dict:
    row = {k: _accuracy(model, splits["test"], classes, v) for k, v in groups}
    row["val_all"] = _accuracy(model, splits["val"], classes, classes)
    return row


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    from cfer import taxonomy
    from cfer.continual.stream_distillation import distil_streams_unlabelled
    from cfer.continual.teacher import TeacherConfig, train_teacher
    from cfer.data.video import ClipLayout, make_clip_splits, synthetic_clips

    layout = ClipLayout(frames=args.frames, image_size=args.size)
    splits = make_clip_splits(classes="all", subjects=tuple(args.subjects), per_class=args.per_class, layout=layout,
                              decoded_frames=args.decoded_frames, seed=1000 + seed)
    pool = None
    if args.pool_people:  # other people (ids after the test people's), no random crops; labels unused
        pool = synthetic_clips(classes="all", n_subjects=args.pool_people, per_class=1,
                               first_subject=sum(args.subjects), layout=layout, decoded_frames=args.decoded_frames,
                               seed=1000 + seed, split="pool")
    classes = tuple(splits["train"].classes)
    basic = tuple(c for c in classes if c not in taxonomy.COMPOUND)
    compound = tuple(c for c in classes if c in taxonomy.COMPOUND)
    groups = (("basic", basic), ("compound", compound), ("all", classes))
    out: dict = {"seed": seed, "variants": {}}
    before: dict = {"variants": {}}
    for name in args.variants:
        multi = len(VARIANTS[name]["streams"]) > 1
        opts = dict(VARIANTS[name], fusion=args.fusion, modality_dropout=args.modality_dropout if multi else 0.0,
                    stream_loss=args.stream_loss if multi else 0.0)
        cfg = TeacherConfig(arch=args.arch, arch_options=opts, augment="none", max_epochs=args.epochs,
                            patience=args.patience, batch_size=args.batch, lr=args.lr, seed=seed)
        t0 = time.perf_counter()
        res = train_teacher(train=splits["train"], val=splits["val"], config=cfg, classes=classes)
        took = time.perf_counter() - t0
        row = {**_row(res.model, splits, classes, groups), "best_epoch": res.best_epoch,
               "epochs": len(res.history), "seconds": took,
               "clips_per_s": len(res.history) * len(splits["train"]) / took}
        if pool is not None and multi and args.stream_loss > 0:
            before["variants"][name] = dict(row)
            if name == "fused":
                before["fused_alone"], before["fused_dropped"] = _dropped(res.model, splits, classes, groups)
            t0 = time.perf_counter()
            hist = distil_streams_unlabelled(model=res.model, pool=pool, train=splits["train"], val=splits["val"],
                                             epochs=args.pool_epochs, lr=args.pool_lr, batch_size=args.batch,
                                             seed=seed)
            best = max(hist, key=lambda h: h["val"])  # the first of the best: the state kept
            row.update(_row(res.model, splits, classes, groups), pool_seconds=time.perf_counter() - t0,
                       pool_best_epoch=best["epoch"], pool_history=hist)
        out["variants"][name] = row
        logging.info("seed %d %s: %s", seed, name,
                     {k: round(v, 3) for k, v in row.items() if isinstance(v, (int, float))})
        if name == "fused":
            out["fused_alone"], out["fused_dropped"] = _dropped(res.model, splits, classes, groups)
    if before["variants"]:
        out["before_pool"] = before
    return out


def _ms(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def tables(runs: list[dict]) -> str:
    lines = [f"{len(runs)} seeds: {sorted(r['seed'] for r in runs)}", "",
             "| variant | basic | compound | all 22 | epochs | train clips/s |", "|---|---|---|---|---|---|"]
    names = [n for n in VARIANTS if all(n in r["variants"] for r in runs)]
    for n in names:
        v = [r["variants"][n] for r in runs]
        lines.append(f"| {n} | {_ms([x['basic'] for x in v])} | {_ms([x['compound'] for x in v])} | "
                     f"{_ms([x['all'] for x in v])} | {np.mean([x['epochs'] for x in v]):.1f} | "
                     f"{np.mean([x['clips_per_s'] for x in v]):.1f} |")
    if "apex" in names and "fused" in names:
        d = [r["variants"]["fused"]["compound"] - r["variants"]["apex"]["compound"] for r in runs]
        lines += ["", f"fused - apex on compound classes (paired over seeds): {_ms(d)}"]
    if all("fused_alone" in r for r in runs):
        lines += ["", "| stream | alone in the fused model (compound / all) | fused without it at test | "
                      "trained without it | test-time cost | training-time cost | dropped - trained without, by seed |",
                  "|---|---|---|---|---|---|---|"]
        for s, other in WITHOUT.items():
            alone = [r["fused_alone"][s] for r in runs]
            test = [r["fused_dropped"][s]["all"] for r in runs]
            full = [r["variants"]["fused"]["all"] for r in runs]
            trained = [r["variants"][other]["all"] for r in runs if other in r["variants"]]
            cost_test = [f - t for f, t in zip(full, test)]
            cost_train = [f - t for f, t in zip(full, trained)] if len(trained) == len(runs) else []
            lines.append(f"| {s} | {_ms([a['compound'] for a in alone])} / {_ms([a['all'] for a in alone])} | "
                         f"{_ms(test)} | {_ms(trained) if trained else '-'} | {_ms(cost_test)} | "
                         f"{_ms(cost_train) if cost_train else '-'} | "
                         f"{', '.join(f'{t - w:+.3f}' for t, w in zip(test, trained)) if cost_train else '-'} |")
    return "\n".join(lines)


def merge_runs(runs: list[dict], *, before_pool: bool = False) -> list[dict]:
    """One run per seed: runs of the same seed (other variants, run in parallel) are joined.
    ``before_pool``: the figures of the runs with ``--pool-people`` before the unlabelled step
    (the multi-stream variants; others as they are)."""
    if before_pool:
        runs = [{**r, "variants": {**r["variants"], **r["before_pool"]["variants"]},
                 **{k: v for k, v in r["before_pool"].items() if k != "variants"}} if "before_pool" in r else r
                for r in runs]
    by_seed: dict[int, dict] = {}
    for r in runs:
        into = by_seed.setdefault(r["seed"], {"seed": r["seed"], "variants": {}})
        into["variants"].update(r["variants"])
        into.update({k: v for k, v in r.items() if k not in ("seed", "variants")})
    return [by_seed[s] for s in sorted(by_seed)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--arch", default="temporal_slim")
    p.add_argument("--subjects", type=int, nargs=3, default=[16, 4, 8], metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--per-class", type=int, default=2)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--frames", type=int, default=8, help="frames the model sees")
    p.add_argument("--decoded-frames", type=int, default=16, help="frames rendered per clip")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--modality-dropout", type=float, default=0.25)
    p.add_argument("--fusion", default="attention", choices=("attention", "late"))
    p.add_argument("--stream-loss", type=float, default=0.0,
                   help="weight of each stream's own cross-entropy (multi-stream variants)")
    p.add_argument("--pool-people", type=int, default=0,
                   help="then fine-tune each multi-stream variant on unlabelled clips of this many other people "
                        "(one clip per class and person), the model teaching its stream subsets (needs --stream-loss)")
    p.add_argument("--pool-epochs", type=int, default=8, help="epochs (passes over the unlabelled clips) of that step")
    p.add_argument("--pool-lr", type=float, default=3e-4, help="Adam learning rate of that step")
    p.add_argument("--before-pool", action="store_true", help="with --merge: the figures before the unlabelled step")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="JSON files of earlier runs: print the tables")
    args = p.parse_args()
    if args.pool_people and args.stream_loss <= 0:
        p.error("--pool-people needs --stream-loss > 0: the subset terms are what the unlabelled clips teach")
    if args.merge:
        note = machines_note(args.merge)
        if note:
            print(note + "\n")
        print(tables(merge_runs([r for f in args.merge for r in json.loads(f.read_text())["runs"]],
                                before_pool=args.before_pool)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("cfer").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    runs = []
    for seed in args.seeds:
        runs.append(run_seed(seed, args))
        if args.out:
            args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                            "machine": describe(), "runs": runs}, indent=1))
    print(tables(runs))


if __name__ == "__main__":
    main()
