"""Each member alone vs the late-fusion ensemble vs the dual-view model, as teachers.

Same synthetic faces, same optimiser, epochs and early stopping for every model; held-out
test subjects. Two tasks: the six basic classes (the teacher's job) and all 22 classes.
Prints accuracy and macro-F1 (mean ± std over seeds) and each ensemble's macro-F1 minus its
best member's, seed by seed; writes the runs as JSON with every run's per-class precision,
recall, F1 and support.

    python benchmarks/fusion_compare.py --json docs/results/fusion_compare.json
    python benchmarks/fusion_compare.py --quick          # a smoke run: 1 seed, 2 epochs
    python benchmarks/fusion_compare.py --framed         # detector crops of photo-like frames
    python benchmarks/fusion_compare.py --summarise a.json b.json   # runs split with --first-seed, together

Any model may end in ``/precise_bn``: its BatchNorm statistics are recomputed on the training
faces before each validation (``TeacherConfig(precise_bn=True)``); an ensemble with it is
compared with its members run with it. An ensemble name may end in ``/one_by_one``: its
members then train one at a time, each with its own early stopping, and with
``learn_weights=true`` the fusion weights are fitted on the validation subjects
(``TeacherConfig(member_training="one_by_one")``). A model ending in ``/photo`` trains with
cfer's recipe for photos (:func:`cfer.continual.teacher.photo_recipe`: face augmentation,
AdamW, label smoothing, cosine schedule, its own 40 epochs with patience 8; what ``cfer run
--data`` uses) instead of the fast defaults and ``--epochs``::

    python benchmarks/fusion_compare.py --tasks all22 --models resemotenet_slim manet_slim \
        "ensemble:resemotenet_slim+manet_slim,learn_weights=true/one_by_one"
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from cfer import taxonomy
from cfer.continual.confusion import confusion
from cfer.continual.teacher import TeacherConfig, photo_recipe, train_teacher
from cfer.data.synthetic import make_synthetic_splits
from cfer.data.synthetic.framed_splits import make_framed_splits
from cfer.machine import describe, machines_note

MEMBERS = ("resemotenet_slim", "vit_tiny_patch16_224", "manet_slim")
MODELS = (*MEMBERS, "ensemble:" + "+".join(MEMBERS), "dualview_slim")
TASKS = {"basic": list(taxonomy.BASIC), "all22": [taxonomy.NEUTRAL, *taxonomy.BASIC, *taxonomy.COMPOUND]}


def splits_for(task: str, seed: int, *, subjects: tuple[int, int, int], per_class: int, size: int,
               framed: bool) -> dict:
    """The task's faces: the renderer's crops, or (``framed``) the detector's crops of photo-like frames."""
    if framed:
        return make_framed_splits(classes=TASKS[task], subjects=subjects, per_class=per_class, image_size=size,
                                  seed=seed)
    return make_synthetic_splits(classes=TASKS[task], subjects=subjects, per_class=per_class, image_size=size,
                                 seed=seed)


FLAGS = ("one_by_one", "precise_bn", "photo")


def parse_spec(spec: str) -> tuple[str, set[str]]:
    """``"ARCH[/one_by_one][/precise_bn][/photo]"`` -> the arch and its training flags."""
    arch, *flags = spec.split("/")
    unknown = set(flags) - set(FLAGS)
    if unknown:
        raise ValueError(f"unknown flag(s) {sorted(unknown)} in {spec!r}; a model may end in {list(FLAGS)}")
    return arch, set(flags)


def member_spec(member: str, ensemble_spec: str) -> str:
    """How a member trained alone is named next to an ensemble: with the ensemble's ``/precise_bn``
    and ``/photo``."""
    flags = parse_spec(ensemble_spec)[1]
    return member + "".join(f"/{f}" for f in FLAGS if f in flags and f != "one_by_one")


def run_one(spec: str, task: str, seed: int, *, epochs: int, sp: dict) -> dict:
    arch, flags = parse_spec(spec)
    classes = TASKS[task]
    opts = dict(arch=arch, seed=seed, member_training="one_by_one" if "one_by_one" in flags else "joint",
                precise_bn="precise_bn" in flags)
    # /photo: cfer's recipe for photos (what `cfer run --data` trains with; its own 40 epochs, patience 8)
    config = photo_recipe(**opts) if "photo" in flags else TeacherConfig(max_epochs=epochs, **opts)
    t0 = time.perf_counter()
    res = train_teacher(train=sp["train"], val=sp["val"], classes=tuple(classes), config=config)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    conf = confusion(res.model, sp["test"], classes=res.classes)
    test_s = time.perf_counter() - t0
    scores = conf.scores()
    weights = getattr(res.model, "fusion_weights", None)
    members = {}  # an ensemble's members on the same test faces, each on its own head
    for name, member in zip(getattr(res.model, "member_names", ()), getattr(res.model, "members", ())):
        m = confusion(member.eval(), sp["test"], classes=res.classes).scores()
        members[name] = {"accuracy": m.accuracy, "macro_f1": m.macro_f1()}
    return {"arch": spec, "task": task, "fusion_weights": None if weights is None else weights.tolist(),
            "members": members or None,
            "seed": seed, "accuracy": scores.accuracy, "macro_f1": scores.macro_f1(),
            "macro_f1_compound": scores.macro_f1(kind="compound") if task == "all22" else None,
            "val_accuracy": res.best_val_accuracy, "best_epoch": res.best_epoch, "epochs_run": len(res.history),
            "train_s": train_s, "test_s": test_s,
            "n_test": int(len(sp["test"])), "scores": scores.to_dict()}


def _fmt(vals: list[float]) -> str:
    a = np.asarray(vals, float)
    return f"{a.mean():.3f} ± {a.std():.3f}"


def _paired(runs: list[dict], models: list[str], tasks: list[str]) -> None:
    """Each ensemble's macro-F1 minus its best member's (the member with the higher mean),
    seed by seed: the comparison the goal names, with its spread."""
    from cfer.models.ensemble_arch import parse_ensemble_arch

    for arch in [m for m in models if m.startswith("ensemble:")]:
        members = [member_spec(m, arch) for m in parse_ensemble_arch(parse_spec(arch)[0])["members"]]
        members = [m for m in members if m in models]
        for task in tasks:
            f1 = {m: {r["seed"]: r["macro_f1"] for r in runs if r["task"] == task and r["arch"] == m}
                  for m in [*members, arch]}
            if not members or not f1[arch]:
                continue
            best = max(members, key=lambda m: np.mean(list(f1[m].values())))
            diff = [f1[arch][s] - f1[best][s] for s in sorted(f1[arch]) if s in f1[best]]
            wins = sum(d > 0 for d in diff)
            print(f"{task}: {arch} minus its best member {best}, macro-F1 per seed: "
                  f"{' '.join(f'{d:+.3f}' for d in diff)} (mean {np.mean(diff):+.3f} ± {np.std(diff):.3f}, "
                  f"ahead in {wins} of {len(diff)} seeds)")
    for arch in [m for m in models if m.startswith("ensemble:")]:
        for task in tasks:  # against the members inside it, on their own heads (same run, same test faces)
            rs = sorted((r for r in runs if r["task"] == task and r["arch"] == arch and r.get("members")),
                        key=lambda r: r["seed"])
            if not rs:
                continue
            names = list(rs[0]["members"])
            best = max(names, key=lambda m: np.mean([r["members"][m]["macro_f1"] for r in rs]))
            diff = [r["macro_f1"] - r["members"][best]["macro_f1"] for r in rs]
            print(f"{task}: {arch} minus its own member {best} (inside it), macro-F1 per seed: "
                  f"{' '.join(f'{d:+.3f}' for d in diff)} (mean {np.mean(diff):+.3f} ± {np.std(diff):.3f}, "
                  f"ahead in {sum(d > 0 for d in diff)} of {len(diff)} seeds)")
            # the stricter reference: whichever member is better in each seed (a choice made on the test faces)
            diff = [r["macro_f1"] - max(m["macro_f1"] for m in r["members"].values()) for r in rs]
            print(f"{task}: {arch} minus the better of its own members in each seed, macro-F1 per seed: "
                  f"{' '.join(f'{d:+.3f}' for d in diff)} (mean {np.mean(diff):+.3f} ± {np.std(diff):.3f}, "
                  f"ahead in {sum(d > 0 for d in diff)} of {len(diff)} seeds)")


def _report(runs: list[dict], models: list[str], tasks: list[str]) -> None:
    """The table (mean ± std over the runs' seeds) and each ensemble's paired differences."""
    print("\n| task | model | accuracy | macro-F1 | macro-F1 compound | train s | epochs run |")
    print("|---|---|---|---|---|---|---|")
    for task in tasks:
        for arch in models:
            rs = [r for r in runs if r["task"] == task and r["arch"] == arch]
            if not rs:
                continue
            comp = _fmt([r["macro_f1_compound"] for r in rs]) if task == "all22" else "–"
            acc, f1 = _fmt([r["accuracy"] for r in rs]), _fmt([r["macro_f1"] for r in rs])
            train_s, ran = np.mean([r["train_s"] for r in rs]), np.mean([r["epochs_run"] for r in rs])
            print(f"| {task} | {arch} | {acc} | {f1} | {comp} | {train_s:.0f} | {ran:.1f} |")
    _paired(runs, models, tasks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 "
                   "(to split a run over processes)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--framed", action="store_true", help="faces cut out of photo-like frames by the face detector "
                   "(make_framed_splits, PHOTO_CROPPER) instead of the renderer's own crops")
    p.add_argument("--summarise", type=Path, nargs="+", default=None,
                   help="print the table of these JSON files' runs together (e.g. a run split with --first-seed)")
    p.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, few subjects (a smoke run)")
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if a.summarise:
        note = machines_note(a.summarise)
        if note:
            print(note + "\n")
        runs = [r for f in a.summarise for r in json.loads(f.read_text())["runs"]]
        _report(runs, list(dict.fromkeys(r["arch"] for r in runs)), list(dict.fromkeys(r["task"] for r in runs)))
        return
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    seeds, epochs, subjects, per_class = (1, 2, (3, 1, 2), 2) if a.quick else (a.seeds, a.epochs, (16, 4, 8), 4)
    runs, t_all = [], time.perf_counter()
    for task in a.tasks:
        for seed in range(a.first_seed, a.first_seed + seeds):
            sp = splits_for(task, seed, subjects=subjects, per_class=per_class, size=a.size, framed=a.framed)
            if a.framed:
                print(f"{task} seed {seed}: the detector found " + ", ".join(f"{len(v)} {k}" for k, v in sp.items())
                      + " faces", flush=True)
            for arch in a.models:
                r = run_one(arch, task, seed, epochs=epochs, sp=sp)
                runs.append(r)
                print(f"{task:6s} seed {seed} {arch:55s} acc {r['accuracy']:.3f} macro-F1 {r['macro_f1']:.3f} "
                      f"({r['train_s']:.0f} s)", flush=True)
                for name, m in (r["members"] or {}).items():
                    print(f"{'':13s} member {name:48s} acc {m['accuracy']:.3f} "
                          f"macro-F1 {m['macro_f1']:.3f}", flush=True)
    total = time.perf_counter() - t_all
    _report(runs, a.models, a.tasks)
    print(f"\n{total / 60:.1f} minutes in all")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"args": vars(a), "machine": describe(), "total_seconds": total, "runs": runs}, fh, indent=1)


if __name__ == "__main__":
    main()
