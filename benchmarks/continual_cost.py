"""Accuracy against step cost: what each strategy buys with its training time.

Reads ``continual_compare.py`` JSON files of one setting. Every file must hold random replay
(``replay``), the unit of cost: a strategy's cost is its mean step time over the class orders
divided by replay's **in the same file** (one process, one machine, one load), then averaged
over the files that hold it. Its accuracy is the mean ± std over class orders of the average
accuracy over steps (runs of one order in several files: the later file's, as ``--merge``
does). ``--paired-to S`` adds each strategy's difference from ``S``, paired by class order.

Prints a markdown table and, with ``--plot``, draws each strategy as a point with its std
over orders, against its cost on a log axis, with a line at ``--cost-line`` times replay's.

Usage:
    D=docs/results/continual_published/same_day_2026-12-06
    python benchmarks/continual_cost.py $D/cfer_mixed_replay.json $D/cfer_e1_e2_replay.json \\
        $D/icarl_icarl_flip_replay.json --paired-to icarl --cost-line 1.3 --plot docs/img/continual_cost_1perstep.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cfer.machine import mixed_machines, record_of

SETTING = ("per_step", "arch", "epochs", "basic_epochs", "subjects", "per_class", "memory_fraction", "seed",
           "evaluate_on", "init_per_order", "data")
"""The arguments every file must share (``continual_compare.py``'s): one comparison."""
DEFAULTS = {"init_per_order": False}
"""Arguments older files do not record, as they ran."""


def load(paths: list[Path]) -> tuple[dict[str, dict[tuple, dict]], dict[str, list[float]], dict]:
    """Runs by strategy and class order, each strategy's cost ratios (one per file), and the
    machine records by file.

    Raises:
        SystemExit: A file without ``replay``, or files of different settings.
    """
    runs: dict[str, dict[tuple, dict]] = {}
    ratios: dict[str, list[float]] = {}
    machines, settings = {}, {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        args = data.get("args", {})
        settings[str(path)] = tuple(json.dumps(args.get(k, DEFAULTS.get(k)), sort_keys=True) for k in SETTING)
        machines[str(path)] = record_of(data)
        times = {r["strategy"]: float(np.mean([run["mean_step_time_s"] for run in r["runs"]]))
                 for r in data["results"] if r["runs"]}
        if "replay" not in times:
            raise SystemExit(f"{path}: no replay runs, so no unit of cost measured in that run; add replay to "
                             "its --strategies")
        for result in data["results"]:
            name = result["strategy"]
            for run in result["runs"]:
                runs.setdefault(name, {})[tuple(run["order"])] = run
            if result["runs"]:
                ratios.setdefault(name, []).append(times[name] / times["replay"])
    if len(set(settings.values())) > 1:
        first = next(iter(settings.values()))
        differ = [SETTING[i] for i in range(len(SETTING)) if len({v[i] for v in settings.values()}) > 1]
        odd = [p for p, v in settings.items() if v != first]
        raise SystemExit(f"the files hold different settings ({', '.join(differ)} differ in {', '.join(odd)}); "
                         "compare one setting per call")
    return runs, ratios, machines


def table(runs: dict[str, dict[tuple, dict]], ratios: dict[str, list[float]], *,
          paired_to: str | None = None) -> list[dict]:
    """One row per strategy, cheapest first: orders, accuracy mean and std, cost, and the
    paired difference from ``paired_to`` (``None`` where it has no common order).

    Raises:
        SystemExit: ``paired_to`` is not among the strategies.
    """
    if paired_to is not None and paired_to not in runs:
        raise SystemExit(f"--paired-to {paired_to}: not in the files (they hold {sorted(runs)})")
    rows = []
    for name, by_order in runs.items():
        acc = np.array([r["average_accuracy"] for r in by_order.values()])
        row = {"strategy": name, "orders": len(acc), "mean": float(acc.mean()), "std": float(acc.std()),
               "cost": float(np.mean(ratios[name])), "files": len(ratios[name]), "delta": None}
        if paired_to is not None and name != paired_to:
            common = [k for k in by_order if k in runs[paired_to]]
            if common:
                d = np.array([by_order[k]["average_accuracy"] - runs[paired_to][k]["average_accuracy"]
                              for k in common])
                row["delta"] = (float(d.mean()), float(d.std()), len(common), int((d > 0).sum()))
        rows.append(row)
    return sorted(rows, key=lambda r: (r["cost"], r["strategy"]))


def markdown(rows: list[dict], *, paired_to: str | None = None) -> str:
    head = "| strategy | orders | avg acc over steps | step cost, × replay's | files |"
    rule = "|---|---|---|---|---|"
    if paired_to:
        head += f" − {paired_to}, paired (ahead) |"
        rule += "---|"
    lines = [head, rule]
    for r in rows:
        line = (f"| {r['strategy']} | {r['orders']} | {r['mean']:.3f} ± {r['std']:.3f} | {r['cost']:.2f}× "
                f"| {r['files']} |")
        if paired_to:
            d = r["delta"]
            line += " – |" if d is None else f" {d[0]:+.3f} ± {d[1]:.3f} ({d[3]} / {d[2]}) |"
        lines.append(line)
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, *, title: str, cost_line: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in rows:
        main = r["strategy"] == "cfer"
        ax.errorbar(r["cost"], r["mean"], yerr=r["std"], fmt="o", ms=7 if main else 5, capsize=3,
                    color="C3" if main else "C0" if r["strategy"].startswith("cfer") else "0.35")
        # a point with a higher neighbour at about the same cost takes its label below
        below = any(abs(np.log(o["cost"] / r["cost"])) < 0.12 and o["mean"] > r["mean"] for o in rows)
        ax.annotate(r["strategy"], (r["cost"], r["mean"]), textcoords="offset points", fontsize=8,
                    xytext=(6, -11 if below else 4))
    if cost_line:
        ax.axvline(cost_line, ls="--", color="0.5", lw=1)
        ax.annotate(f"{cost_line:g}× replay", (cost_line, ax.get_ylim()[0]), textcoords="offset points",
                    xytext=(3, 4), fontsize=8, color="0.4")
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ax.set_xticks([t for t in (1, 1.3, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20) if low <= t <= high])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("step cost, × random replay's in the same run (log scale)")
    ax.set_ylabel("average accuracy over steps (± std over orders)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", type=Path, nargs="+", help="continual_compare.py JSON files of one setting, each "
                                                         "with replay among its strategies")
    ap.add_argument("--paired-to", default=None, help="a strategy to pair each other with, by class order")
    ap.add_argument("--plot", type=Path, default=None, help="PNG of accuracy against cost")
    ap.add_argument("--cost-line", type=float, default=None, help="a vertical line at this cost (× replay's)")
    ap.add_argument("--title", default=None, help="the plot's title (default: the setting)")
    args = ap.parse_args(argv)
    runs, ratios, machines = load(args.files)
    note = mixed_machines(machines)
    if note:
        print(note + "\n")
    rows = table(runs, ratios, paired_to=args.paired_to)
    print(markdown(rows, paired_to=args.paired_to))
    if args.plot is not None:
        per_step = json.loads(args.files[0].read_text())["args"].get("per_step")
        classes = "one compound class" if per_step == 1 else f"{per_step} compound classes"
        title = args.title or f"{classes} a step: accuracy against step cost"
        plot(rows, args.plot, title=title, cost_line=args.cost_line)
        print(f"\nplot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
