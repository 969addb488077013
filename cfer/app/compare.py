"""Comparing finished runs: ``compare.html``, ``compare.csv`` and two figures from run folders.

:func:`read_runs` checks and reads two or more run folders (``config.yaml``, ``metrics.json``,
``timing.json``); :func:`config_rows` puts their flattened configs side by side;
:func:`measures` lines up their headline numbers (continual summary with its std over class
orders, teacher accuracy, few-shot accuracy with its 95% CI per encoder, ways and shots);
:func:`write_comparison` writes the page, the table and the figures, atomically. Runs with
different step counts or few-shot settings still compare: a number a run lacks is an empty
CSV cell and a "–" on the page.

Example:
    >>> paths = write_comparison(["runs/a", "runs/b"], out_dir="runs/a-vs-b")   # doctest: +SKIP
    >>> paths["html"].name                                                       # doctest: +SKIP
    'compare.html'
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cfer.app import compare_figures as figs
from cfer.app.config_io import config_from_dict, config_to_dict, load_config
from cfer.atomic import save_figure, write_text
from cfer.machine import mixed_machines, with_threads

__all__ = ["MISSING", "SUMMARY", "RunRecord", "Measure", "read_run", "read_runs", "config_rows", "measures",
           "write_comparison"]

MISSING = "–"
"""What the page shows for a number or key a run does not have."""

SUMMARY = (("average_accuracy", "average accuracy over steps (published metric)"),
           ("final_accuracy", "final accuracy, all seen classes"),
           ("final_basic_accuracy", "final accuracy, basic classes"),
           ("final_compound_accuracy", "final accuracy, compound classes"),
           ("forgetting", "forgetting"))
"""The continual summary keys compared, with their labels (mean ± std over class orders)."""


@dataclass(frozen=True)
class RunRecord:
    """One run folder as the comparison reads it.

    Attributes:
        name: The run's column header (its folder name, made unique).
        path: The folder.
        config: Flattened config, ``{"continual.epochs": 4, ...}``.
        metrics: ``metrics.json``.
        timing: ``timing.json`` (empty if missing).
    """

    name: str
    path: Path
    config: dict[str, Any]
    metrics: dict
    timing: dict


@dataclass(frozen=True)
class Measure:
    """One headline number across runs: ``values[i]`` and ``spreads[i]`` belong to run ``i``
    (``None`` where the run lacks it); ``spread`` names what the spread is."""

    key: str
    label: str
    values: tuple[float | None, ...]
    spread: str | None = None
    spreads: tuple[float | None, ...] = ()


def _flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def read_run(path: str | os.PathLike, *, name: str | None = None) -> RunRecord:
    """Read one finished run folder.

    Args:
        path: A folder written by ``cfer run --out``.
        name: Its column header (default: the folder name).

    Returns:
        The run's flattened config (defaults filled in), metrics and timing.

    Raises:
        ValueError: If the folder is missing, or has no ``config.yaml`` or no ``metrics.json``
            (the message says how to make or finish the run).
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p} does not exist; give a run folder, made with `cfer run --out {p}`")
    if not p.is_dir():
        raise ValueError(f"{p} is a file, not a run folder; give a folder made with `cfer run --out DIR`")
    if not (p / "config.yaml").is_file():
        raise ValueError(f"{p} is not a cfer run folder: it has no config.yaml; make one with `cfer run --out {p}`")
    if not (p / "metrics.json").is_file():
        raise ValueError(f"{p} is not a finished cfer run: it has config.yaml but no metrics.json; finish it with "
                         f"`cfer run --resume {p}`")
    raw = load_config(p / "config.yaml")
    try:  # defaults filled in, so runs from configs that name different keys line up
        config = config_to_dict(config_from_dict(raw))
    except ValueError:  # a config this cfer no longer accepts: compare it as written
        config = raw
    try:
        metrics = json.loads((p / "metrics.json").read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p / 'metrics.json'} is not valid JSON ({exc}); write it again with "
                         f"`cfer run --resume {p}`") from None
    timing_path = p / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    return RunRecord(name=name or p.name, path=p, config=_flatten(config), metrics=metrics, timing=timing)


def _names(paths: list[Path]) -> list[str]:
    base = [p.name or str(p) for p in paths]
    # The same folder name under different parents: add the parent.
    names = ["/".join(p.resolve().parts[-2:]) if base.count(n) > 1 else n for p, n in zip(paths, base)]
    return [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]


def read_runs(paths: Sequence[str | os.PathLike]) -> list[RunRecord]:
    """Read two or more distinct run folders (see :func:`read_run`).

    Raises:
        ValueError: Fewer than two folders, one folder given twice, or a folder that is not a
            finished run.
    """
    ps = [Path(p) for p in paths]
    if len(ps) < 2:
        raise ValueError(f"comparing needs at least two run folders, got {len(ps)}; give two or more, "
                         "e.g. `cfer compare runs/a runs/b`")
    seen: dict[Path, Path] = {}
    for p in ps:
        key = p.resolve()
        if key in seen:
            raise ValueError(f"the run folder {p} is given twice (as {seen[key]} and {p}); give each run once")
        seen[key] = p
    return [read_run(p, name=n) for p, n in zip(ps, _names(ps))]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def config_rows(runs: Sequence[RunRecord]) -> list[tuple[str, list[str | None], bool]]:
    """The flattened config keys of all runs: ``(key, values as text or None, differs)``."""
    keys = list(dict.fromkeys(k for r in runs for k in r.config))
    rows = []
    for k in keys:
        values = [_text(r.config[k]) if k in r.config else None for r in runs]
        rows.append((k, values, len(set(values)) > 1))
    return rows


def measures(runs: Sequence[RunRecord]) -> list[Measure]:
    """The headline numbers of every run, lined up (see :data:`SUMMARY`)."""
    out = [Measure("n_orders", "class orders", tuple(len(r.metrics["continual"]["orders"]) for r in runs)),
           Measure("n_steps", "steps (basic step included)",
                   tuple(max(len(o["seen_accuracy"]) for o in r.metrics["continual"]["orders"]) for r in runs)),
           Measure("teacher.test_accuracy", "teacher, basic test accuracy",
                   tuple(r.metrics.get("teacher", {}).get("test_accuracy") for r in runs))]
    for key, label in SUMMARY:
        cells = [r.metrics["continual"]["summary"].get(key) for r in runs]
        out.append(Measure(key, label, tuple(None if c is None else c["mean"] for c in cells),
                           spread="std over class orders", spreads=tuple(None if c is None else c["std"]
                                                                         for c in cells)))
    pairs = [(r.name, r.metrics) for r in runs]
    for enc, ways, shots in figs.fewshot_keys(pairs):
        found = [figs.fewshot_result(r.metrics, (enc, ways, shots)) for r in runs]
        out.append(Measure(f"fewshot.{enc}.{ways}way.{shots}shot", f"few-shot {ways}-way {shots}-shot, {enc}",
                           tuple(None if f is None else f["accuracy"] for f in found), spread="95% CI",
                           spreads=tuple(None if f is None else f["ci95"] for f in found)))
    return out


def _csv(runs: Sequence[RunRecord], rows: list, table: list[Measure]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "key", "label", "differs", *(r.name for r in runs)])
    blank = lambda v: "" if v is None else v  # noqa: E731
    for m in table:
        w.writerow(["metric", m.key, m.label, "", *map(blank, m.values)])
        if m.spread is not None:
            suffix = "ci95" if "CI" in m.spread else "std"
            w.writerow(["metric", f"{m.key}.{suffix}", f"{m.label}: {m.spread}", "", *map(blank, m.spreads)])
    for key, values, differs in rows:
        w.writerow(["config", key, key, "yes" if differs else "no", *map(blank, values)])
    return buf.getvalue()


_EXTRA_CSS = """
table.wide{width:100%;table-layout:fixed} td,th{overflow-wrap:anywhere;vertical-align:top}
tr.differs td{background:#fff3c4} tr.differs td:first-child{font-weight:600;border-left:4px solid #e0a800}
#only-differences:checked ~ table.config tr.same{display:none} .toggle{margin:.4em 0}
td.missing{color:#999;text-align:center}
"""


def _pct(v: float | None) -> str:
    return MISSING if v is None else f"{100 * v:.1f}%"


def _cell(m: Measure, i: int, orders: int) -> str:
    v = m.values[i]
    if v is None:
        return f"<td class=missing>{MISSING}</td>"
    if not isinstance(v, float) or m.key.startswith("n_"):
        return f"<td class=num>{html.escape(str(v))}</td>"
    if m.spread is None:
        return f"<td class=num>{_pct(v)}</td>"
    if "CI" in m.spread:
        return f"<td class=num>{_pct(v)} ± {100 * m.spreads[i]:.1f}</td>"
    if orders > 1:
        return f"<td class=num>{_pct(v)} ± {100 * m.spreads[i]:.1f}</td>"
    return f"<td class=num>{_pct(v)} (one order: no std)</td>"


def _label(m: Measure) -> str:
    if m.spread is None:
        return html.escape(m.label)
    what = "mean ± 95% CI over episodes" if "CI" in m.spread else "mean ± std over class orders"
    return f"{html.escape(m.label)}<br><small>{what}</small>"


def _machine(record: dict | None) -> str:
    """A run's machine in a few words (runs written before cfer recorded it have none)."""
    if not record:
        return MISSING
    n = record.get("threads")
    threads = "" if n is None else f", {n} thread" + ("" if n == 1 else "s")
    return f"{record.get('cpu', '?')}, {record.get('cpu_capability', '?')}, torch {record.get('torch', '?')}{threads}"


def _machine_record(run: RunRecord) -> dict | None:
    """The run's machine record; one written before cfer recorded torch's threads takes the
    config's ``threads`` (what the run asked for: under ``torchrun`` a process may have used
    fewer, see ``local_threads``)."""
    return with_threads(run.metrics.get("machine"), run.config.get("threads"))


def _figure(src: str, caption: str) -> str:
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _html(runs: Sequence[RunRecord], rows: list, table: list[Measure], out: Path) -> str:
    from cfer.app.report import _CSS

    heads = "".join(f"<th>{html.escape(r.name)}</th>" for r in runs)
    cols = f"<col style='width:{30 if len(runs) < 4 else 22}%'>"
    orders = [len(r.metrics["continual"]["orders"]) for r in runs]

    def link(r: RunRecord) -> str:
        rel = Path(os.path.relpath(r.path.resolve() / "report.html", out.resolve())).as_posix()
        return f'<a href="{html.escape(rel)}">report</a>' if (r.path / "report.html").is_file() else MISSING

    info = [("folder", [html.escape(str(r.path.resolve())) for r in runs]),
            ("cfer version", [html.escape(str(r.metrics.get("cfer_version", MISSING))) for r in runs]),
            ("data", [html.escape(str(r.metrics.get("data", {}).get("source", MISSING))) for r in runs]),
            ("time", [f"{sum(v for k, v in r.timing.items() if k.endswith('_s')):.0f} s" if r.timing else MISSING
                      for r in runs]),
            ("machine", [html.escape(_machine(_machine_record(r))) for r in runs]),
            ("run report", [link(r) for r in runs])]
    run_rows = "".join(f"<tr><td>{k}</td>{''.join(f'<td>{v}</td>' for v in vs)}</tr>" for k, vs in info)
    metric_rows = "".join(f"<tr><td>{_label(m)}</td>{''.join(_cell(m, i, orders[i]) for i in range(len(runs)))}</tr>"
                          for m in table)
    differing = [k for k, _, d in rows if d]
    machines = mixed_machines({r.name: _machine_record(r) for r in runs}, what="runs")

    def config_row(key: str, values: list[str | None], differs: bool) -> str:
        cells = "".join(f"<td class=missing>{MISSING}</td>" if v is None else f"<td>{html.escape(v)}</td>"
                        for v in values)
        return f"<tr class={'differs' if differs else 'same'}><td>{html.escape(key)}</td>{cells}</tr>"

    config_html = "".join(config_row(*row) for row in rows)
    diff_text = (f"{len(differing)} of {len(rows)} keys differ (highlighted): "
                 f"{html.escape(', '.join(differing))}." if differing else
                 f"All {len(rows)} keys are the same.")
    parts = [
        "<h1>cfer run comparison</h1>",
        f"<p class=sub>{len(runs)} runs · {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} · numbers as in each "
        "run's metrics.json; a dash (–) marks what a run did not measure.</p>",
        f"<h2>Runs</h2><table class=wide><colgroup>{cols}</colgroup><tr><th></th>{heads}</tr>{run_rows}</table>",
        f"<h2>Summary</h2><table class=wide><colgroup>{cols}</colgroup><tr><th>measure</th>{heads}</tr>"
        f"{metric_rows}</table>",
        "<p class=note>Continual numbers are the mean over each run's class orders ± their standard deviation "
        "(population std over orders); few-shot numbers are the mean over episodes ± the 95% confidence "
        "interval.</p>",
        *([f"<p class=note><b>{html.escape(machines)}</b></p>"] if machines else []),
        "<h2>Accuracy after each step</h2>",
        _figure("figures/accuracy_vs_step.png", "Accuracy on all classes seen so far after each step: mean over "
                "each run's class orders, shaded ± one standard deviation."),
        "<h2>Few-shot episodes</h2>",
        _figure("figures/fewshot.png", "Mean query accuracy per run, encoder and shot count, with 95% confidence "
                "intervals."),
        f"<h2>Configuration</h2><p>{diff_text}</p>",
        "<input type=checkbox id=only-differences class=toggle>"
        "<label for=only-differences> show only the keys that differ</label>",
        f"<table class='wide config'><colgroup>{cols}</colgroup><tr><th>key</th>{heads}</tr>{config_html}</table>",
        '<p>The same numbers as a table: <a href="compare.csv">compare.csv</a>.</p>',
    ]
    body = "\n".join(parts)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>cfer run comparison</title>"
            f"<style>{_CSS}{_EXTRA_CSS}</style></head><body>\n{body}\n</body></html>\n")


def write_comparison(runs: Sequence[str | os.PathLike], *, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Compare run folders: write ``compare.html``, ``compare.csv`` and ``figures/*.png`` in ``out_dir``.

    Args:
        runs: Two or more distinct folders written by ``cfer run``.
        out_dir: Folder for the comparison (created if needed).

    Returns:
        ``{"html": ..., "csv": ..., "accuracy_vs_step": ..., "fewshot": ...}`` paths.

    Raises:
        ValueError: If ``out_dir`` is a file, or the runs do not read (see :func:`read_runs`).

    >>> write_comparison(["runs/a", "runs/b"], out_dir="runs/a-vs-b")["csv"]   # doctest: +SKIP
    PosixPath('runs/a-vs-b/compare.csv')
    """
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; give a folder to hold compare.html, compare.csv and figures/ "
                         "(--out DIR)")
    records = read_runs(runs)
    rows, table = config_rows(records), measures(records)
    pairs = [(r.name, r.metrics) for r in records]
    paths = {}
    for name, draw in (("accuracy_vs_step", figs.accuracy_curves), ("fewshot", figs.fewshot_bars)):
        fig = draw(pairs)
        paths[name] = save_figure(fig, out / "figures" / f"{name}.png", dpi=110)
        plt.close(fig)
    paths["csv"] = write_text(out / "compare.csv", _csv(records, rows, table))
    paths["html"] = write_text(out / "compare.html", _html(records, rows, table, out))
    return paths
