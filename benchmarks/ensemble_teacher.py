"""Does a late-fusion ensemble teacher make a better cfer student than a single-model teacher?

The published protocol on the synthetic faces: the six basic classes, then the 15 compound
classes one per step, the cfer strategy with its `cfer run` defaults (logit and feature
distillation from the frozen teacher, PSMR replay with M = 0.3 |train|). For every seed
``k`` the same data, class order ``k`` and training seed feed four set-ups:

* ``single``: a ``--single`` teacher, the student a copy of it (what ``cfer run`` does);
* ``single->own``: the same teacher, a fresh ``--single`` student that first learns the
  basic classes for ``--basic-epochs`` epochs with distillation (the control for the next);
* ``ensemble->single``: an ``--ensemble`` teacher distilled into a fresh ``--single``
  student the same way (``run_order(student=..., basic_epochs=...)``);
* ``ensemble->member``: the ensemble teacher, the student a copy of its ``--single`` member
  (:func:`cfer.continual.growing.member_classifier`), distilled from the fused outputs from
  the first compound step on, as ``single`` is from its teacher;
* ``ensemble``: the ensemble teacher, the student a copy of it (every member head grows);
* ``ensemble->member+basic``: as ``ensemble->member``, but the copied member first goes over
  the basic classes again for ``--copy-basic-epochs`` epochs, distilling the fused
  ensemble (labels and soft targets), before the compound steps;
* ``single->self``: its control: a copy of the single teacher, the same basic epochs
  distilling from that teacher itself;
* ``ensemble->member+pool``: as ``ensemble->member``, but the copied member is first
  distilled from the fused ensemble on unlabelled faces
  (:func:`cfer.continual.unlabelled_distillation.distil_unlabelled`: the basic training faces
  and one face per class of ``--pool-subjects`` other people, ``--pool-epochs`` epochs);
* ``ensemble->best+pool``: as ``ensemble->member+pool``, but the copied member is the one
  most accurate on the validation subjects (:func:`cfer.continual.growing.best_member`; what
  ``cfer run --student-arch member:best`` takes);
* ``single->self+pool``: its control: a copy of the single teacher put through the same
  distillation from that teacher itself (a student that already matches its teacher, moved
  only by rounding).

Teachers train with :func:`cfer.continual.teacher.train_teacher` (early stopping on the
validation subjects), students with :func:`cfer.continual.resume.run_order`. Prints the
teachers' test accuracy and macro-F1, then per set-up the average accuracy over steps (the
published metric), final accuracy and final macro-F1 (mean ± std over seeds), and the
paired difference of each set-up against ``single`` (same seed and order).

    python benchmarks/ensemble_teacher.py --json docs/results/ensemble_teacher.json
    python benchmarks/ensemble_teacher.py --quick        # smoke run: 1 seed, 4 compound classes
    python benchmarks/ensemble_teacher.py --seeds 5 --only-seeds 3 4 --json b.json   # seeds 3-4 of five, in a
                                                         # second process beside --only-seeds 0 1 2
    python benchmarks/ensemble_teacher.py --summarise a.json b.json   # their tables, runs paired by seed
    python benchmarks/ensemble_teacher.py --ensemble "ensemble:resemotenet_slim+manet_slim,learn_weights=true" \
        --ensemble-training one_by_one                   # members one by one, weights fitted on validation
"""

from __future__ import annotations

import argparse
import copy
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
from cfer.continual.evaluation import inputs_of
from cfer.continual.factory import CferConfig
from cfer.continual.growing import best_member, build_model, member_classifier
from cfer.continual.resume import run_order, seed_everything
from cfer.continual.stream import compound_orders, make_stream
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.continual.unlabelled_distillation import distil_unlabelled
from cfer.data.synthetic import make_synthetic_splits
from cfer.machine import describe, machines_note

SETUPS = ("single", "single->own", "ensemble->single", "ensemble->member", "ensemble", "single->self",
          "ensemble->member+basic", "ensemble->member+pool", "single->self+pool", "ensemble->best+pool")
COLUMNS = (("average_accuracy", "avg acc over steps"), ("final_accuracy", "final acc"),
           ("final_basic_accuracy", "final basic acc"), ("final_compound_accuracy", "final compound acc"),
           ("final_macro_f1", "final macro-F1"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", default="resemotenet_slim", help="the single-model teacher and student")
    ap.add_argument("--ensemble", default="ensemble:resemotenet_slim+manet_slim", help="the ensemble teacher")
    ap.add_argument("--ensemble-training", default="joint", choices=["joint", "one_by_one"],
                    help="train the ensemble teacher's members jointly or one by one (weights fitted on validation "
                         "with learn_weights=true)")
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=SETUPS)
    ap.add_argument("--seeds", type=int, default=3, help="seeds = class orders (teachers are trained per seed)")
    ap.add_argument("--only-seeds", type=int, nargs="+", default=None, metavar="K",
                    help="run only these of the --seeds (parallel processes split the seeds; pair the JSON files "
                         "by seed)")
    ap.add_argument("--compound", type=int, default=15, help="compound classes in the stream (15: all)")
    ap.add_argument("--per-step", type=int, default=1, help="compound classes per step (1 = published protocol)")
    ap.add_argument("--teacher-epochs", type=int, default=15)
    ap.add_argument("--precise-bn", action="store_true", help="teachers recompute their BatchNorm statistics on "
                    "the training faces before each validation (TeacherConfig(precise_bn=True))")
    ap.add_argument("--basic-epochs", type=int, default=10, help="basic epochs of a student of its own")
    ap.add_argument("--copy-basic-epochs", type=int, default=5, help="basic epochs of a copied student "
                    "(ensemble->member+basic, single->self)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per compound step")
    ap.add_argument("--pool-subjects", type=int, default=100, help="other people of the unlabelled pool (+pool "
                    "set-ups): one face per class each")
    ap.add_argument("--pool-epochs", type=int, default=20, help="epochs of distillation on the unlabelled pool")
    ap.add_argument("--pool-lr", type=float, default=1e-4, help="Adam learning rate of that distillation")
    ap.add_argument("--head", default=CferConfig().head, choices=["linear", "cosine"],
                    help="the students' head (default: the cfer preset's)")
    ap.add_argument("--subjects", type=int, nargs=3, default=(16, 4, 8), metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 4 compound classes, few epochs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--summarise", type=Path, nargs="+", default=None, metavar="JSON",
                    help="print the tables of earlier runs' JSON files (runs paired by seed; with --setups, only "
                         "those) and exit")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.compound, args.per_step, args.teacher_epochs, args.basic_epochs, args.epochs = 1, 4, 2, 2, 2, 1
        args.subjects = (4, 2, 2)
        args.pool_subjects, args.pool_epochs = 2, 1
    return args


def _teacher(arch: str, splits: dict, args: argparse.Namespace, seed: int) -> tuple[torch.nn.Module, dict]:
    t0 = time.perf_counter()
    training = args.ensemble_training if arch.startswith("ensemble:") else "joint"
    res = train_teacher(train=splits["train"], val=splits["val"], classes=taxonomy.BASIC,
                        config=TeacherConfig(arch=arch, max_epochs=args.teacher_epochs, seed=seed,
                                             member_training=training, precise_bn=args.precise_bn))
    scores = confusion(res.model, splits["test"], classes=res.classes).scores()
    return res.model, {"accuracy": scores.accuracy, "macro_f1": scores.macro_f1(), "epochs_run": len(res.history),
                       "train_s": time.perf_counter() - t0}


def _student_run(setup: str, teacher: torch.nn.Module, stream, splits: dict, args: argparse.Namespace,
                 seed: int, folder: Path) -> dict:
    own = setup in ("single->own", "ensemble->single")
    extra, chosen = {}, {}
    if setup == "ensemble->member":
        extra = {"student": member_classifier(teacher, member=args.single), "basic_epochs": 0}
    elif setup == "ensemble->member+basic":
        extra = {"student": member_classifier(teacher, member=args.single), "basic_epochs": args.copy_basic_epochs}
    elif setup == "single->self":
        extra = {"student": copy.deepcopy(teacher), "basic_epochs": args.copy_basic_epochs}
    elif setup.endswith("+pool"):
        member = (best_member(teacher, data=splits["val"], classes=taxonomy.BASIC) if setup == "ensemble->best+pool"
                  else args.single)
        extra = {"student": _pool_distilled(setup, teacher, splits, args, seed, member=member), "basic_epochs": 0}
        chosen = {"member": member}
    elif own:
        extra = {"student": build_model(arch=args.single, num_classes=len(taxonomy.BASIC), img_size=args.image_size,
                                        seed=seed + 1000), "basic_epochs": args.basic_epochs}
    memory = int(0.3 * sum(len(e.dataset) for e in stream.train_stream))
    seed_everything(seed)
    t0 = time.perf_counter()
    results, student = run_order(stream=stream, teacher=teacher, memory_size=memory, epochs=args.epochs,
                                 cfer=CferConfig(head=args.head),
                                 checkpoint=folder / f"{setup.replace('>', '')}-{seed}.pt",
                                 seed=seed, **extra)
    scores = confusion(student, splits["test"], classes=tuple(stream.class_names)).scores()
    return {**results.to_dict(), "final_macro_f1": scores.macro_f1(), "seconds": time.perf_counter() - t0, **chosen}


def _pool_distilled(setup: str, teacher: torch.nn.Module, splits: dict, args: argparse.Namespace,
                    seed: int, *, member: int | str) -> torch.nn.Module:
    """The copied student of a ``+pool`` set-up, distilled from ``teacher`` on the unlabelled pool."""
    if setup.startswith("ensemble"):
        student = member_classifier(teacher, member=member)
    else:
        student = copy.deepcopy(teacher)
        for p in student.parameters():
            p.requires_grad_(True)
        student.trained_basic = True
    train = splits["train"]
    basic = np.flatnonzero(np.isin(np.asarray(train.classes)[train.labels], taxonomy.BASIC))
    pool = make_synthetic_splits(classes=[*taxonomy.BASIC, *taxonomy.COMPOUND], subjects=(args.pool_subjects, 1, 1),
                                 per_class=1, image_size=args.image_size, seed=10_000 + seed)["train"]
    faces = torch.cat([inputs_of(train, basic), inputs_of(pool, np.arange(len(pool)))])
    distil_unlabelled(student=student, teacher=teacher, images=faces, epochs=args.pool_epochs, lr=args.pool_lr,
                      seed=seed)
    return student


def _fmt(vals: list[float]) -> str:
    a = np.asarray(vals, float)
    return f"{a.mean():.3f} ± {a.std():.3f}"


def summarise(paths: list[Path], setups: list[str] | None = None) -> str:
    """The set-ups of several runs' JSON files (``setups``: only these), paired by seed: means and
    paired differences over the seeds every set-up has."""
    runs: dict[str, dict[int, dict]] = {}
    note = machines_note(paths)
    for path in paths:
        for setup, recs in json.loads(path.read_text())["runs"].items():
            if setups is not None and setup not in setups:
                continue
            for r in recs:
                runs.setdefault(setup, {})[r["seed"]] = r
    if not runs:
        raise SystemExit("no runs in the files given")
    seeds = sorted(set.intersection(*(set(v) for v in runs.values())))
    lines = [*([note, ""] if note else []), f"seeds {seeds} (those every set-up has)", "",
             "| set-up | " + " | ".join(label for _, label in COLUMNS) + " | forgetting |", "|---|" + "---|" * 6]
    for setup, by_seed in runs.items():
        cells = [_fmt([by_seed[k][key] for k in seeds]) for key, _ in (*COLUMNS, ("forgetting", ""))]
        lines.append(f"| {setup} | " + " | ".join(cells) + " |")
    lines += ["", "| minus | set-up | metric | per seed | mean ± std | ahead |", "|---|---|---|---|---|---|"]
    for a in runs:
        for b in runs:
            if a == b:
                continue
            for key in ("average_accuracy", "final_macro_f1"):
                d = np.array([runs[a][k][key] - runs[b][k][key] for k in seeds])
                lines.append(f"| {b} | {a} | {key} | {' '.join(f'{v:+.3f}' for v in d)} | {_fmt(d)} | "
                             f"{int((d > 0).sum())} of {len(d)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarise:
        print(summarise(args.summarise, None if args.setups == list(SETUPS) else args.setups))
        return 0
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    compound = list(taxonomy.COMPOUND[: args.compound])
    classes = [*taxonomy.BASIC, *compound]
    orders = compound_orders(classes=tuple(compound), n_orders=args.seeds, seed=0)
    runs: dict[str, list[dict]] = {s: [] for s in args.setups}
    teachers: dict[str, list[dict]] = {"single": [], "ensemble": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed, order in enumerate(orders):
            if args.only_seeds is not None and seed not in args.only_seeds:
                continue
            splits = make_synthetic_splits(classes=classes, subjects=tuple(args.subjects), per_class=args.per_class,
                                           image_size=args.image_size, seed=seed)
            stream = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], basic=taxonomy.BASIC,
                                 compound=compound, per_step=args.per_step, order=order)
            trained = {}
            for kind, arch in (("single", args.single), ("ensemble", args.ensemble)):
                if any(s.startswith(kind) for s in args.setups):
                    trained[kind], info = _teacher(arch, splits, args, seed)
                    teachers[kind].append(info)
                    print(f"seed {seed} teacher {kind:8s} acc {info['accuracy']:.3f} macro-F1 {info['macro_f1']:.3f} "
                          f"({info['train_s']:.0f} s)", file=sys.stderr, flush=True)
            for setup in args.setups:
                rec = _student_run(setup, trained[setup.split("->")[0]], stream, splits, args, seed, Path(tmp))
                runs[setup].append({"seed": seed, "order": list(order), **rec})
                print(f"seed {seed} {setup:16s} " + " ".join(f"{key} {rec[key]:.3f}" for key, _ in COLUMNS)
                      + f" ({rec['seconds']:.0f} s)", file=sys.stderr, flush=True)
            _write(args, teachers, runs, time.perf_counter() - t_start)  # after every seed: a killed run keeps them
    total = time.perf_counter() - t_start

    print(f"\n{args.seeds} seeds (= class orders), {len(compound)} compound classes, {args.per_step} per step, "
          f"{args.image_size}x{args.image_size}, teachers <= {args.teacher_epochs} epochs, students "
          f"{args.basic_epochs} basic (own students) + {args.epochs} per step; total {total / 60:.1f} min\n")
    print("| teacher | basic test accuracy | basic macro-F1 |\n|---|---|---|")
    for kind, infos in teachers.items():
        if infos:
            arch = args.single if kind == "single" else args.ensemble
            print(f"| {arch} | {_fmt([i['accuracy'] for i in infos])} | {_fmt([i['macro_f1'] for i in infos])} |")
    print("\n| set-up | " + " | ".join(label for _, label in COLUMNS) + " | avg acc − single (paired) |")
    print("|---|" + "---|" * (len(COLUMNS) + 1))
    for setup in args.setups:
        cells = [_fmt([r[key] for r in runs[setup]]) for key, _ in COLUMNS]
        diff = "–"
        if setup != "single" and runs.get("single"):
            diff = _fmt([a["average_accuracy"] - b["average_accuracy"] for a, b in zip(runs[setup], runs["single"])])
        print(f"| {setup} | " + " | ".join(cells) + f" | {diff} |")
    if args.json is not None:
        _write(args, teachers, runs, total)
        print(f"\nJSON written to {args.json}")
    return 0


def _write(args: argparse.Namespace, teachers: dict, runs: dict, seconds: float) -> None:
    if args.json is None:
        return
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: (list(v) if isinstance(v, tuple) else v)
                                              for k, v in vars(args).items() if k != "json"},
                                     "machine": describe(), "total_seconds": seconds, "teachers": teachers,
                                     "runs": runs},
                                    indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
