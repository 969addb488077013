"""Pool ``continual_compare.py`` runs over several subject splits and pair them.

On a small real data set one split into train / validation / test people is one draw:
CK+48's test split holds 186 faces, so two strategies 2 points apart may swap places on
another draw. ``continual_compare.py --seed S`` draws another split (and another set of
class orders and initial weights); this script reads the JSON files of the seeds (several per seed when they hold other
strategies) and reports,
for each strategy, the mean ± std over every (split, class order) run, and the paired
difference of ``--reference`` minus each other strategy over the same runs: its mean ±
std, how many runs the reference wins, and its mean within each split. A class order that
a split's file holds twice (few later classes: seeded orders can repeat) counts once.

Usage:
    for s in 0 1 2 3 4; do python benchmarks/continual_compare.py --data data/CK+48 ... --seed $s \\
        --json ck_seed$s.json; done
    python benchmarks/continual_splits.py ck_seed*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cfer.machine import machines_note

MUST_MATCH = ("data", "per_step", "epochs", "basic_epochs", "arch", "memory_fraction", "evaluate_on", "first", "later")
"""Arguments every file must share: the same comparison, only the seed differs."""


def _renamed(name: str, path: Path, renames: list[str]) -> str:
    """``name`` as ``--rename FOLDER:OLD=NEW`` relabels it in the files under ``FOLDER``."""
    for rule in renames:
        folder, _, pair = rule.rpartition(":")
        old, _, new = pair.partition("=")
        if not folder or not old or not new:
            raise SystemExit(f"--rename {rule!r}: write FOLDER:OLD=NEW (e.g. runs/before:cfer=cfer+noflip)")
        if name == old and Path(folder).resolve() in Path(path).resolve().parents:
            return new
    return name


def load_runs(paths: list[Path], *, renames: list[str] = ()) -> dict[str, dict[tuple[int, tuple], dict]]:
    """``{strategy: {(seed, order): run}}`` from ``continual_compare.py`` JSON files: one
    per seed, or several per seed holding different strategies (run side by side).
    ``renames`` (``FOLDER:OLD=NEW``) relabels strategy OLD as NEW in the files under FOLDER:
    the runs of a preset before a change, beside the preset after it.

    Raises:
        SystemExit: Two files with the same strategy on the same seed, or files of
            different comparisons.
    """
    runs: dict[str, dict[tuple[int, tuple], dict]] = {}
    seen: dict[tuple[str, int], Path] = {}
    first_args = None
    for path in paths:
        data = json.loads(Path(path).read_text())
        args = data.get("args", {})
        seed = int(args.get("seed", 0))
        for entry in data["results"]:
            entry["strategy"] = _renamed(entry["strategy"], path, list(renames))
            key = (entry["strategy"], seed)
            if key in seen:
                raise SystemExit(f"{path} and {seen[key]} both hold {entry['strategy']} on seed {seed}: one file per "
                                 "strategy and split")
            seen[key] = path
        if first_args is None:
            first_args = args
        diff = [k for k in MUST_MATCH if args.get(k) != first_args.get(k)]
        if diff:
            raise SystemExit(f"{path} differs from {paths[0]} in {diff}: pool runs of one comparison only")
        for entry in data["results"]:
            for run in entry["runs"]:
                runs.setdefault(entry["strategy"], {})[(seed, tuple(run["order"]))] = run
    return runs


def pooled_table(runs: dict[str, dict[tuple[int, tuple], dict]], *, reference: str) -> str:
    """The markdown tables: each strategy over all runs, and ``reference`` minus each, paired."""
    if reference not in runs:
        raise SystemExit(f"no {reference!r} runs in the files (they hold {sorted(runs)}); choose --reference")
    keys = sorted(runs[reference])
    splits = sorted({seed for seed, _ in keys})
    lines = [f"{len(keys)} distinct (split, class order) runs over {len(splits)} splits (seeds {splits})\n",
             "| strategy | runs | avg acc over steps | final acc | forgetting |", "|---|---|---|---|---|"]
    for name, got in runs.items():
        cols = [np.array([r[k] for r in got.values()], float)
                for k in ("average_accuracy", "final_accuracy", "forgetting")]
        lines.append(f"| {name} | {len(got)} | " + " | ".join(f"{c.mean():.3f} ± {c.std():.3f}" for c in cols) + " |")
    lines += [f"\npaired, {reference} minus each strategy over the runs both have:\n",
              "| strategy | runs | Δ avg acc over steps | Δ final acc | Δ forgetting | runs won (avg acc) "
              "| Δ avg acc by split |", "|---|---|---|---|---|---|---|"]
    for name, got in runs.items():
        if name == reference:
            continue
        both = [k for k in keys if k in got]
        if not both:
            continue
        d = np.array([runs[reference][k]["average_accuracy"] - got[k]["average_accuracy"] for k in both])
        df = np.array([runs[reference][k]["final_accuracy"] - got[k]["final_accuracy"] for k in both])
        dg = np.array([runs[reference][k]["forgetting"] - got[k]["forgetting"] for k in both])
        by_split = [np.mean([d[i] for i, k in enumerate(both) if k[0] == s]) for s in splits
                    if any(k[0] == s for k in both)]
        lines.append(f"| {name} | {len(both)} | {d.mean():+.3f} ± {d.std():.3f} | {df.mean():+.3f} ± {df.std():.3f} | "
                     f"{dg.mean():+.3f} ± {dg.std():.3f} | {int((d > 0).sum())} / {len(both)} | "
                     + ", ".join(f"{v:+.3f}" for v in by_split) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", type=Path, nargs="+", help="continual_compare.py JSON files, one per --seed")
    ap.add_argument("--reference", default="cfer", help="the strategy the paired differences start from")
    ap.add_argument("--rename", action="append", default=[], metavar="FOLDER:OLD=NEW",
                    help="call strategy OLD of the files under FOLDER NEW (e.g. an earlier preset's runs)")
    args = ap.parse_args(argv)
    runs = load_runs(args.files, renames=args.rename)
    note = machines_note(args.files)
    if note:
        print(note + "\n")
    print(pooled_table(runs, reference=args.reference))
    return 0


if __name__ == "__main__":
    sys.exit(main())
