"""Compare cfer with the baselines on the same synthetic basic -> compound stream.

Every strategy gets the same data, class orders, initial weights, epochs, optimiser and
replay budget. For each class order the stream is: the basic classes, then the compound
classes ``--per-step`` at a time. Prints a markdown table (mean +- std over orders; the
final model's macro-F1 over all seen classes next to the accuracies),
optionally writes one JSON record per strategy (``--json``) and a plot of seen-class
accuracy against step (``--plot``).

Any data set ``cfer run`` reads works with ``--data PATH --format FORMAT`` (with the same
face options and the same subject-disjoint train/validation/test splits as ``cfer run``):
the first step holds ``--first`` (default: cfer's basic classes the data has), the later
steps ``--later`` (default: the compound classes it has), in ``--orders`` random orders.
A data set of basic expressions only (CK+48) is split into a first step and later steps.

Usage:
    python benchmarks/continual_compare.py                 # default run (<= 20 min, 2 cores)
    python benchmarks/continual_compare.py --data data/CK+48 --format imagefolder \
        --subject-pattern '^(S\\d+)_' --first happy,sad,surprised --later angry,disgusted,fearful --per-step 1
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
from cfer.machine import describe, mixed_machines, record_of

COLUMNS = [
    ("average_accuracy", "avg acc over steps"),
    ("final_accuracy", "final acc (all classes)"),
    ("final_basic_accuracy", "final basic acc"),
    ("final_compound_accuracy", "final compound acc"),
    ("mean_newest_accuracy", "newest-class acc"),
    ("forgetting", "forgetting"),
    ("final_macro_f1", "final macro-F1 (all classes)"),
    ("mean_step_time_s", "s / step"),
]
JSON_ONLY = ("final_macro_f1_basic", "final_macro_f1_compound")
"""Summarised in the JSON (mean and std over orders) but not printed."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", nargs="+", default=[*STRATEGIES, "cfer+la"], type=_strategy_name,
                    help="strategy names; a cfer variant adds options with '+': la (logit adjustment, "
                         "--logit-adjustment), ncm / ncmnew (nearest class mean over the memory / memory and new "
                         "items), mirror (class means also over the mirror images), ncmhead (class means and the "
                         "head vote), sig (per-class sigmoid loss, old classes' targets from the previous student), "
                         "bft (balanced fine-tuning, --balanced-epochs), nofeat (no feature distillation), "
                         "grow (PSMR grow mode), cat (train on new data and the whole memory "
                         "concatenated), herd (PSMR sorts, then herds within the top half), prev / prevW (distil "
                         "the previous student, weight 1 / W; prevsW: weight W x sqrt(old / new classes)), "
                         "pfW (the previous student's features, 1 - cosine, weight W), cos (a cosine-normalised "
                         "head instead of the linear one), wa (weight aligning of the head after each step), "
                         "margin (PSMR sorts by the true class's logit margin), fmem / fnew (feature "
                         "distillation on the memory's / the new classes' items only), eN (N epochs per compound step "
                         "instead of --epochs), bal (class-balanced draws of new data and memory), "
                         "esP (early stopping within each step on validation subjects, "
                         "patience P epochs, the best epoch kept; eN is then the maximum), bwW (a class of the "
                         "first step keeps W times the memory items of a later class; the preset: 0.5, a spelt-out "
                         "variant: 1), supW (a supervised contrastive term on the features, weight W), lrcos (the "
                         "learning rate decays by a cosine within each step; baselines take it too, e.g. icarl+lrcos), "
                         "hws (the new classes' head rows fitted on frozen features before each step; baselines too), "
                         "mixed (the preset with random replay's half-memory mini-batches, an epoch as long as the "
                         "new data); "
                         "e.g. "
                         "cfer+la+ncm, cfer+bw1 (the preset with every class alike in the memory)")
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
    ap.add_argument("--init-per-order", action="store_true",
                    help="draw each class order's initial weights and training randomness from its own seed "
                         "(order k: --seed + 1000 k; order 0 as without the flag), so that the basic step, which "
                         "every order otherwise shares, varies with the orders and their spread counts it")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--psmr-mode", choices=("grow", "limit"), default="limit",
                    help="cfer's buffer mode; 'limit' uses the same budget M at every step as the other replay methods")
    ap.add_argument("--gamma0", type=float, default=0.1, help="cfer's logit-distillation weight (published: 0.1)")
    ap.add_argument("--feature-weight", type=float, default=1.0, help="cfer's feature-distillation weight")
    ap.add_argument("--logit-adjustment", type=float, default=1.0,
                    help="tau of the logit adjustment in the 'cfer+la' variant ('cfer' has none, as published)")
    ap.add_argument("--balanced-epochs", type=int, default=2, help="epochs of the 'bft' variant's pass")
    ap.add_argument("--balanced-lr", type=float, default=1e-4, help="learning rate of the 'bft' variant's pass")
    ap.add_argument("--evaluate-on", choices=("test", "val"), default="test",
                    help="'val' to choose hyper-parameters on the validation subjects; report on 'test'")
    ap.add_argument("--data", type=Path, default=None, help="a data set cfer run reads (default: synthetic faces)")
    ap.add_argument("--format", default="imagefolder", help="its format, as cfer run's --format")
    ap.add_argument("--subject-pattern", default=None,
                    help=r"imagefolder: regex capturing the subject, e.g. '^(S\d+)_'")
    ap.add_argument("--crop-faces", action="store_true", help="detect and crop the face in each image")
    ap.add_argument("--align-faces", action="store_true", help="eyes level at fixed places in the crop")
    ap.add_argument("--crop-cascade", default=None, help="Haar cascade of the face crop (as cfer run's)")
    ap.add_argument("--crop-margin", type=float, default=None, help="border around the detected face (as cfer run's)")
    ap.add_argument("--crop-min-neighbors", type=int, default=None, help="overlapping detections a face needs")
    ap.add_argument("--grey", action="store_true", help="single-channel images")
    ap.add_argument("--skip-invalid", action="store_true", help="skip unreadable images and unknown class folders "
                                                                "(CK+48's contempt)")
    ap.add_argument("--first", default=None, help="comma-separated classes of the first step (default: cfer's "
                                                  "basic classes present in the data)")
    ap.add_argument("--later", default=None, help="comma-separated classes of the later steps (default: the compound "
                                                  "classes present in the data)")
    ap.add_argument("--quick", action="store_true", help="small smoke run: 2 orders, fewer subjects/epochs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only-orders", type=int, nargs="+", default=None, metavar="K",
                    help="run only these of the --orders class orders (0-based), e.g. to share orders between "
                         "processes; --merge joins their --json files")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="print one table (and --plot) from --json files of the same setting, e.g. run in parallel "
                         "with different --strategies; a later file's run of the same strategy and order replaces "
                         "an earlier one")
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.orders, args.epochs, args.basic_epochs = min(args.orders, 2), 2, 3
        args.subjects, args.per_class, args.per_step = (8, 2, 4), 3, 5
    return args


VARIANTS = ("la", "ncm", "ncmnew", "mirror", "ncmhead", "sig", "bft", "nofeat", "grow", "cat", "herd", "prev",
            "nocache", "cos", "wa", "margin", "fmem", "fnew", "bal", "flip", "noflip", "noshift", "lrcos", "hws",
            "mixed")


def _number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _strategy_name(name: str) -> str:
    base, *opts = name.split("+")
    bad = [o for o in opts if o not in VARIANTS and not (o[:1] == "e" and o[1:].isdigit() and int(o[1:]) > 0)
           and not (o[:4] == "prev" and o[4:].isdigit()) and not (o[:5] == "prevs" and _number(o[5:]))
           and not (o[:2] == "pf" and _number(o[2:])) and not (o[:2] == "bw" and _number(o[2:]))
           and not (o[:2] == "wi" and _number(o[2:])) and not (o[:3] == "sup" and _number(o[3:]))
           and not (o[:5] == "shift" and o[5:].isdigit() and int(o[5:]) > 0)
           and not (o[:2] == "es" and o[2:].isdigit() and int(o[2:]) > 0)]
    baseline_opts = {o for o in opts if o[:5] != "shift"}
    if base not in STRATEGIES or (opts and base != "cfer" and not baseline_opts <= {"flip", "lrcos", "hws"}) or bad:
        raise argparse.ArgumentTypeError(f"{name!r}: use one of {list(STRATEGIES)}, or cfer+OPT[+OPT...] with OPT in "
                                         f"{list(VARIANTS)}")
    return name


def cfer_options(name: str, args: argparse.Namespace) -> CferConfig:
    """The :class:`CferConfig` of ``cfer`` (the preset) or of a ``cfer+opt+...`` variant: the
    published method with feature distillation (``--feature-weight``) and ``--psmr-mode``,
    plus the options named; ``cfer+nocache`` is the preset with the teacher's outputs
    computed on every mini-batch (no :mod:`cfer.continual.output_cache`), ``cfer+noflip`` the
    preset without mirror images in training (``flip`` in a spelt-out variant turns them on),
    ``shiftN`` random shifts of up to N pixels in the training faces (the preset has none,
    as a spelt-out variant: ``cfer+shift2`` is the preset of part of 2026-12-06, and
    ``cfer+noshift``, the preset without them then, is the preset now); ``cfer+mixed`` the preset
    with random replay's mini-batches (half new faces, half memory; an epoch ends with the new
    faces) instead of the whole memory every epoch. ``eN``, ``esP``,
    ``wiA`` and ``bal`` (epochs, early stopping, weight interpolation, the class-balanced
    sampler) and ``supW`` (a supervised contrastive term of weight W) add plugins, not
    options: ``cfer+e8`` is the preset's configuration."""
    opts = set(name.split("+")[1:])
    weights = [float(o[2:]) for o in opts if o[:2] == "bw"]
    moved = [0] * ("noshift" in opts) + [int(o[5:]) for o in opts if o[:5] == "shift"]
    shifts = {"shift_training": max(moved)} if moved else {}
    extra = {o for o in opts if o[:2] in ("es", "bw", "wi") or o[:3] == "sup" or o[:5] == "shift"
             or (o[:1] == "e" and o[1:].isdigit())}
    if not opts - {"nocache", "bal", "flip", "noflip", "noshift", "lrcos", "hws", "mixed"} - extra:
        # the preset (eN, esP: epochs and stopping; noflip: without its mirror images in training;
        # bwW: another weight of the first step's classes in the memory; noshift, shiftN: its shifts;
        # mixed: half-memory mini-batches, an epoch as long as the new data, as random replay's)
        return CferConfig(cache_teacher="nocache" not in opts, mirror_training="noflip" not in opts,
                          **({"replay_batches": "mixed"} if "mixed" in opts else {}),
                          **({"psmr_first_step_weight": weights[0]} if weights else {}), **shifts)
    return CferConfig(gamma0=args.gamma0, feature_weight=0.0 if "nofeat" in opts else args.feature_weight,
                      psmr_mode="grow" if "grow" in opts else args.psmr_mode,
                      logit_adjustment=args.logit_adjustment if "la" in opts else 0.0,
                      nearest_mean="memory+new" if "ncmnew" in opts else "memory" if "ncm" in opts else "off",
                      nearest_mean_mirror="mirror" in opts,
                      nearest_mean_head_weight=1.0 if "ncmhead" in opts else 0.0,
                      balanced_epochs=args.balanced_epochs if "bft" in opts else 0, balanced_lr=args.balanced_lr,
                      replay_batches="concat" if "cat" in opts else "mixed",
                      criterion="sigmoid" if "sig" in opts else "ce",
                      psmr_new_class_selection="sorted_herding" if "herd" in opts else "sorted",
                      previous_weight=max([1.0 if o == "prev" else float(o[4:].lstrip("s")) for o in opts
                                           if o[:4] == "prev"] or [0.0]),
                      previous_weight_scale="sqrt_ratio" if any(o[:5] == "prevs" for o in opts) else "constant",
                      previous_feature_weight=max([float(o[2:]) for o in opts if o[:2] == "pf"] or [0.0]),
                      head="cosine" if "cos" in opts else "linear", cache_teacher="nocache" not in opts,
                      weight_aligning="wa" in opts, psmr_score="margin" if "margin" in opts else "softmax",
                      feature_samples="memory" if "fmem" in opts else "new" if "fnew" in opts else "all",
                      mirror_training="flip" in opts, psmr_first_step_weight=weights[0] if weights else 1.0,
                      shift_training=shifts.get("shift_training", 0))


def load_splits(args: argparse.Namespace) -> tuple[dict[str, FaceDataset], tuple[str, ...], tuple[str, ...]]:
    """Train/val/test faces and the classes of the first and later steps: synthetic faces,
    or ``--data`` read and split by person exactly as ``cfer run`` does it."""
    from cfer import taxonomy

    if args.data is None:
        splits = make_synthetic_splits(subjects=tuple(args.subjects), per_class=args.per_class,
                                       image_size=args.image_size, channels=1 if args.grey else 3, seed=args.seed)
    else:
        from cfer.app.config_io import config_from_dict
        from cfer.app.prepare import load_dataset, split_run_data

        config = config_from_dict({"seed": args.seed, "data": {
            "path": str(args.data), "format": args.format, "image_size": args.image_size, "grey": args.grey,
            "crop_faces": args.crop_faces, "align_faces": args.align_faces, "subject_pattern": args.subject_pattern,
            "skip_invalid": args.skip_invalid, **{k: v for k, v in (("crop_cascade", args.crop_cascade),
            ("crop_margin", args.crop_margin), ("crop_min_neighbors", args.crop_min_neighbors)) if v is not None}}})
        splits = split_run_data(load_dataset(config), config=config)
    have = set.intersection(*(set(splits[k].classes[i] for i in np.unique(splits[k].labels)) for k in splits))
    first = (taxonomy.normalize_many(args.first.split(",")) if args.first
             else tuple(c for c in taxonomy.BASIC if c in have))
    later = (taxonomy.normalize_many(args.later.split(",")) if args.later
             else tuple(c for c in taxonomy.COMPOUND if c in have and c not in first))
    missing = sorted(c for c in (*first, *later) if c not in have)
    if missing or not first or not later:
        raise SystemExit(f"classes {missing or list(first) + list(later)} are not in every split of the data (it "
                         f"has {sorted(have)} in train, val and test); choose --first and --later among those")
    if args.data is not None:
        print(f"# {args.data}: {', '.join(f'{k} {len(v)}' for k, v in splits.items())} faces; first step "
              f"{list(first)}, later steps {list(later)}", file=sys.stderr)
    return splits, first, later


def final_scores(model: torch.nn.Module, data: FaceDataset, *, classes: tuple[str, ...],
                 first: tuple[str, ...] | None = None) -> dict:
    """Per-class precision, recall, F1 and macro-F1 of the final model over every class it
    learnt (:meth:`cfer.continual.confusion.Confusion.scores`), on ``data`` (the split the
    accuracies are measured on): ``{"final_macro_f1", "final_macro_f1_basic",
    "final_macro_f1_compound", "final_scores"}``; "basic" is the first step's classes
    ``first`` (default: the taxonomy's basic classes), "compound" the later steps'."""
    scores = confusion(model, data, classes=classes).scores(basic=first)
    return {"final_macro_f1": scores.macro_f1(), "final_macro_f1_basic": scores.macro_f1(kind="basic"),
            "final_macro_f1_compound": scores.macro_f1(kind="compound"), "final_scores": scores.to_dict()}


def early_stopping(name: str, stop_val, cfer_opts: CferConfig) -> list:
    """``[StepEarlyStoppingPlugin]`` for a strategy named with ``esP`` (patience P), scoring on
    ``stop_val`` (validation experiences) what the strategy predicts with (its class means
    when it predicts by nearest class mean, else its head), else ``[]``."""
    from cfer.continual.plugins.early_stopping import StepEarlyStoppingPlugin

    patience = _patience(name)
    if patience is None:
        return []
    predictor = "class_means" if cfer_opts.nearest_mean != "off" else "model"
    return [StepEarlyStoppingPlugin(val_stream=stop_val, patience=patience, predictor=predictor)]


def _patience(name: str) -> int | None:
    """P of the last ``esP`` option of a strategy name (None: no early stopping)."""
    found = [int(o[2:]) for o in name.split("+")[1:] if o[:2] == "es" and o[2:].isdigit()]
    return found[-1] if found else None


def sampler(name: str) -> list:
    """``[ClassBalancedSamplerPlugin]`` for a strategy named with ``bal``, else ``[]``."""
    from cfer.continual.plugins.class_balanced_sampler import ClassBalancedSamplerPlugin

    return [ClassBalancedSamplerPlugin()] if "bal" in name.split("+")[1:] else []


def mirror(name: str) -> list:
    """``[MirrorAugmentPlugin]`` for a baseline named with ``flip`` (``joint+flip``: the same
    mirror images in training as cfer's, which has them as an option), else ``[]``."""
    from cfer.continual.plugins.mirror_augment import MirrorAugmentPlugin

    base, *opts = name.split("+")
    return [MirrorAugmentPlugin()] if base != "cfer" and "flip" in opts else []


def shift(name: str) -> list:
    """``[ShiftAugmentPlugin(max_shift=N)]`` for a baseline named with ``shiftN`` (``joint+flip+shift2``:
    the same training faces as cfer's, which has them as an option), else ``[]``."""
    from cfer.continual.plugins.shift_augment import ShiftAugmentPlugin

    base, *opts = name.split("+")
    found = [int(o[5:]) for o in opts if o[:5] == "shift" and o[5:].isdigit()]
    return [ShiftAugmentPlugin(max_shift=found[-1])] if base != "cfer" and found else []


def schedule(name: str) -> list:
    """``[StepCosinePlugin]`` for any strategy named with ``lrcos`` (``cfer+lrcos``,
    ``icarl+lrcos``: the learning rate decays to 1% over each step by a cosine), else ``[]``."""
    from cfer.continual.plugins.step_schedule import StepCosinePlugin

    return [StepCosinePlugin()] if "lrcos" in name.split("+")[1:] else []


def warm_start(name: str, cfer_opts: CferConfig) -> list:
    """``[HeadWarmStartPlugin]`` for any strategy named with ``hws`` (the new classes' head rows
    fitted on the frozen student's features before each step, with cfer's logit adjustment
    for a cfer variant), else ``[]``."""
    from cfer.continual.plugins.head_warm_start import HeadWarmStartPlugin

    if "hws" not in name.split("+")[1:]:
        return []
    return [HeadWarmStartPlugin(logit_adjustment=cfer_opts.logit_adjustment if name.startswith("cfer") else 0.0)]


def stop_and_score(val: FaceDataset, *, evaluate_on: str, early: bool) -> tuple[FaceDataset | None, FaceDataset]:
    """The validation faces early stopping reads and those a ``--evaluate-on val`` run is
    scored on. Scored on test, early stopping reads every validation subject; scored on
    validation with an ``esP`` variant in the run, the validation subjects are split in two
    halves (sorted ids): the first for stopping, the second for scoring every strategy, so
    no variant is scored on the faces it stopped on."""
    if evaluate_on == "test" or not early:
        return (val if early else None), val
    subjects = np.array(sorted(set(val.subjects)))
    if len(subjects) < 2:
        raise SystemExit("early stopping scored on validation needs at least 2 validation subjects (one half stops, "
                         "the other scores); raise the second --subjects figure")
    stop = set(subjects[: len(subjects) // 2])
    is_stop = np.array([s in stop for s in val.subjects])
    return val.subset(np.flatnonzero(is_stop)), val.subset(np.flatnonzero(~is_stop))


def order_seed(args: argparse.Namespace, k: int) -> int:
    """The seed of class order ``k``'s initial weights and training: ``--seed`` for every order,
    or with ``--init-per-order`` ``--seed + 1000 k`` (order 0 keeps ``--seed``)."""
    return args.seed + 1000 * k if args.init_per_order else args.seed


def run_one(name: str, stream, args: argparse.Namespace, init_state: dict, memory_size: int,
            eval_data: FaceDataset, stop_val=None, *, seed: int | None = None) -> dict:
    seed = args.seed if seed is None else seed
    model = build_model(arch=args.arch, num_classes=stream.n_basic, in_chans=3, img_size=args.image_size,
                        seed=seed)
    model.load_state_dict(copy.deepcopy(init_state))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    own = [int(o[1:]) for o in name.split("+")[1:] if o[:1] == "e" and o[1:].isdigit()]
    epochs = BasicEpochsPlugin(basic_epochs=args.basic_epochs, later_epochs=own[-1] if own else args.epochs)
    cfer_opts = cfer_options(name, args) if name.startswith("cfer") else CferConfig()
    # Seeded before the strategy is built too: iCaRL's classifier and DER's widened head are
    # drawn there, and torch's generator is seeded at random when a process starts.
    torch.manual_seed(seed)
    strategy = make_strategy(name.split("+")[0], model=model, optimizer=opt, train_epochs=args.epochs, train_mb_size=32,
                             eval_mb_size=256, memory_size=memory_size, total_classes=len(stream.class_names),
                             plugins=[epochs, *early_stopping(name, stop_val, cfer_opts), *sampler(name),
                                      *mirror(name), *shift(name), *schedule(name),
                                      *warm_start(name, cfer_opts)],
                             cfer=cfer_opts)
    interpolate = [float(o[2:]) for o in name.split("+")[1:] if o[:2] == "wi"]
    if interpolate:  # first in after_training_exp: every other plugin sees the interpolated student
        from cfer.continual.plugins.weight_interpolation import WeightInterpolationPlugin

        strategy.plugins.insert(0, WeightInterpolationPlugin(alpha=interpolate[-1]))
    contrast = [float(o[3:]) for o in name.split("+")[1:] if o[:3] == "sup"]
    if contrast:
        from cfer.continual.plugins.supervised_contrastive import SupConPlugin

        strategy.plugins.append(SupConPlugin(weight=contrast[-1]))
    torch.manual_seed(seed)
    res = run_stream(strategy, stream, evaluate_on=args.evaluate_on)
    names = tuple(stream.class_names)
    from cfer.continual.plugins.early_stopping import StepEarlyStoppingPlugin

    stopped = [p.history for p in strategy.plugins if isinstance(p, StepEarlyStoppingPlugin)]
    return {**res.to_dict(), **final_scores(strategy.model, eval_data, classes=names, first=names[:stream.n_basic]),
            **({"early_stopping": stopped[0]} if stopped else {})}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        return report_merged(args)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    splits, first, later = load_splits(args)
    memory_size = int(args.memory_fraction * len(splits["train"]))
    orders = compound_orders(classes=later, n_orders=args.orders, seed=args.seed)
    def initial_state(seed: int) -> dict:
        return build_model(arch=args.arch, num_classes=len(first), in_chans=1 if args.grey else 3,
                           img_size=args.image_size, seed=seed).state_dict()

    init_state = initial_state(args.seed)
    records: dict[str, list[dict]] = {n: [] for n in args.strategies}
    print(f"# continual comparison: {len(args.strategies)} strategies x {len(orders)} orders, arch {args.arch}, "
          f"{args.per_step} compound classes per step, M={memory_size}, train={len(splits['train'])} faces",
          file=sys.stderr)
    early = any(_patience(n) is not None for n in args.strategies)
    stop_faces, score_faces = stop_and_score(splits["val"], evaluate_on=args.evaluate_on, early=early)
    if early and args.evaluate_on == "val":
        print(f"# early stopping on {len(set(stop_faces.subjects))} validation subjects, every strategy scored on the "
              f"other {len(set(score_faces.subjects))}", file=sys.stderr)
    eval_faces = score_faces if args.evaluate_on == "val" else splits["test"]
    for k, order in enumerate(orders):
        if args.only_orders is not None and k not in args.only_orders:
            continue
        stream = make_stream(train=splits["train"], test=splits["test"], val=score_faces, per_step=args.per_step,
                             basic=first, compound=later, order=order)
        stop_val = None if stop_faces is None else (
            stream.val_stream if stop_faces is score_faces else
            make_stream(train=splits["train"], test=splits["test"], val=stop_faces, per_step=args.per_step,
                        basic=first, compound=later, order=order).val_stream)
        seed = order_seed(args, k)
        state = init_state if seed == args.seed else initial_state(seed)
        for name in args.strategies:
            t0 = time.perf_counter()
            rec = run_one(name, stream, args, state, memory_size, eval_faces, stop_val, seed=seed)
            rec["order"], rec["seed"] = list(order), seed
            records[name].append(rec)
            print(f"  order {k} {name:8s} avg {rec['average_accuracy']:.3f} final {rec['final_accuracy']:.3f} "
                  f"macro-F1 {rec['final_macro_f1']:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    total = time.perf_counter() - t_start

    print(f"\nevaluated on {args.evaluate_on}" + (" (its second half of subjects; early stopping on the first)"
                                                  if early and args.evaluate_on == "val" else "")
          + f"; cfer+OPT variants: gamma0={args.gamma0}, feature weight="
          f"{args.feature_weight}, PSMR mode={args.psmr_mode}, logit adjustment tau={args.logit_adjustment}")
    print(f"{len(orders)} class orders, {args.per_step} compound classes per step, {args.arch} "
          f"{args.image_size}x{args.image_size}, {args.basic_epochs}+{args.epochs} epochs, "
          f"replay budget {memory_size}, "
          f"total {total / 60:.1f} min\n")
    summary = print_tables(records)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = [{"strategy": n, "summary": summary[n], "runs": records[n]} for n in records]
        halved = early and args.evaluate_on == "val"
        args.json.write_text(json.dumps({"args": {k: (list(v) if isinstance(v, tuple) else v)
                                                  for k, v in vars(args).items() if k not in ("json", "plot", "merge")}
                                         | ({"scored_subjects": sorted(set(score_faces.subjects))} if halved else {}),
                                         "machine": describe(), "total_seconds": total, "results": out},
                                        indent=1, default=str))
        print(f"\nJSON written to {args.json}")
    if args.plot is not None:
        plot(records, args.plot)
    return 0


def print_tables(records: dict[str, list[dict]]) -> dict:
    """Print the mean ± std table and, with ``cfer`` among the strategies, the paired
    differences against it; return the summary (mean and std per strategy and column)."""
    print("| strategy | " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    summary = {}
    for name, runs in records.items():
        cells, summary[name] = [], {}
        for key, _ in COLUMNS:
            vals = np.array([r[key] for r in runs], float)
            summary[name][key] = {"mean": float(vals.mean()), "std": float(vals.std())}
            fmt = "{:.1f} ± {:.1f}" if key == "mean_step_time_s" else "{:.3f} ± {:.3f}"
            cells.append(fmt.format(vals.mean(), vals.std()))
        print(f"| {name} | " + " | ".join(cells) + " |")
        for key in JSON_ONLY:
            vals = np.array([r[key] for r in runs if r[key] is not None], float)
            summary[name][key] = {"mean": float(vals.mean()), "std": float(vals.std())} if len(vals) else None
    if "cfer" in records and len(records) > 1:
        print(paired_table(records, reference="cfer"))
    return summary


PAIRED = (("average_accuracy", "avg acc over steps"), ("final_accuracy", "final acc"),
          ("forgetting", "forgetting"))


def paired_table(records: dict[str, list[dict]], *, reference: str) -> str:
    """``reference`` minus each other strategy, order by order (the same class orders and
    seeds), as mean ± std of the differences, and the step-time ratio."""
    ref = {tuple(r["order"]): r for r in records[reference]}
    lines = [f"\npaired differences, {reference} minus each strategy (mean ± std over the same class orders):\n",
             "| strategy | orders | " + " | ".join(f"Δ {label}" for _, label in PAIRED) + " | s/step ratio |",
             "|---|---|" + "---|" * (len(PAIRED) + 1)]
    for name, runs in records.items():
        if name == reference:
            continue
        pairs = [(ref[tuple(r["order"])], r) for r in runs if tuple(r["order"]) in ref]
        if not pairs:
            continue
        cells = []
        for key, _ in PAIRED:
            d = np.array([a[key] - b[key] for a, b in pairs], float)
            cells.append(f"{d.mean():+.3f} ± {d.std():.3f}")
        ratio = np.mean([a["mean_step_time_s"] for a, _ in pairs]) / np.mean([b["mean_step_time_s"] for _, b in pairs])
        lines.append(f"| {name} | {len(pairs)} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    return "\n".join(lines)


def report_merged(args: argparse.Namespace) -> int:
    """Print the tables of several ``--json`` files of the same setting as one. A run of
    the same strategy and class order in a later file replaces the earlier one (a re-run
    supersedes); runs of other orders add up."""
    by_order: dict[str, dict[tuple, dict]] = {}
    replaced = 0
    settings = set()
    machines = {}
    for path in args.merge:
        data = json.loads(Path(path).read_text())
        machines[str(path)] = record_of(data)
        a = data["args"]
        settings.add((a["per_step"], a["arch"], a["epochs"], a["basic_epochs"], tuple(a["subjects"]), a["per_class"],
                      a["memory_fraction"], a["seed"], a["evaluate_on"], tuple(a.get("scored_subjects", ())),
                      a.get("init_per_order", False)))
        for res in data["results"]:
            runs = by_order.setdefault(res["strategy"], {})
            for run in res["runs"]:
                replaced += tuple(run["order"]) in runs
                runs[tuple(run["order"])] = run
    records = {name: list(runs.values()) for name, runs in by_order.items()}
    if len(settings) != 1:
        raise SystemExit(f"--merge: the files hold different settings {sorted(settings)}; merge runs of one setting")
    print(f"merged {len(args.merge)} files: {len(records)} strategies"
          + (f"; {replaced} runs replaced by a later file's" if replaced else "") + "\n")
    note = mixed_machines(machines)
    if note:
        print(note + "\n")
    print_tables(records)
    if args.plot is not None:
        plot(records, args.plot)
    return 0


def plot(records: dict[str, list[dict]], path: Path) -> None:
    """Seen-class accuracy against step, mean ± std over the orders, one line a strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    n_orders = 0
    for name, runs in records.items():
        curves = np.array([r["seen_accuracy"] for r in runs])
        n_orders = max(n_orders, len(runs))
        m, s = curves.mean(0), curves.std(0)
        x = np.arange(len(m))
        ax.plot(x, m, marker="o", ms=3, label=name, lw=2.4 if name in ("cfer", "published") else 1.3)
        ax.fill_between(x, m - s, m + s, alpha=0.12)
    ax.set_xlabel("step (0 = basic classes)")
    ax.set_ylabel("accuracy on all seen classes")
    ax.set_title(f"basic -> compound stream, mean ± std over {n_orders} class orders")
    ax.grid(alpha=0.3)
    ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


if __name__ == "__main__":
    sys.exit(main())
