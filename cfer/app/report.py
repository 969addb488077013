"""The run report: ``metrics.json``, CSV tables, PNG figures and one ``report.html``.

:func:`write_report` turns the metrics of :func:`cfer.app.pipeline.run_pipeline` into files a
person reads (the HTML page links the figures by relative path, so the folder can be
moved or zipped as a whole) and a program reads (JSON and CSV). :func:`summary_table`
is the short text table the ``cfer run`` command prints at the end. Every file is
written atomically.

Example:
    >>> path = write_report("runs/demo", metrics=metrics, config=config)   # doctest: +SKIP
    >>> print(summary_table(metrics))                                        # doctest: +SKIP
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
from pathlib import Path

from cfer import taxonomy
from cfer.app import figures as figs
from cfer.app.config import RunConfig
from cfer.app.config_io import dump_config
from cfer.atomic import save_figure, write_json, write_text

__all__ = ["write_report", "summary_table", "FIGURES"]

FIGURES = {
    "accuracy_matrix": figs.accuracy_matrix,
    "accuracy_vs_step": figs.accuracy_vs_step,
    "fewshot": figs.fewshot_bars,
    "regions_basic_vs_compound": figs.region_comparison,
}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _mean_std(summary: dict, key: str) -> str:
    s = summary.get(key)
    if s is None:
        return "–"
    return f"{100 * s['mean']:.1f}%" + (f" ± {100 * s['std']:.1f}" if s["n"] > 1 else "")


def _headline(metrics: dict) -> list[tuple[str, str]]:
    s = metrics["continual"]["summary"]
    rows = [("teacher, basic test accuracy", _pct(metrics["teacher"].get("test_accuracy"))),
            ("average accuracy over steps (published metric)", _mean_std(s, "average_accuracy")),
            ("final accuracy, all seen classes", _mean_std(s, "final_accuracy")),
            ("final accuracy, basic classes", _mean_std(s, "final_basic_accuracy")),
            ("final accuracy, compound classes", _mean_std(s, "final_compound_accuracy")),
            ("newest-class accuracy (mean over steps)", _mean_std(s, "mean_newest_accuracy")),
            ("forgetting", _mean_std(s, "forgetting"))]
    for r in metrics["fewshot"]:
        c = r["config"]
        rows.append((f"few-shot {c['ways']}-way {c['shots']}-shot, {r['encoder']}",
                     f"{100 * r['accuracy']:.1f}% ± {100 * r['ci95']:.1f} (95% CI)"))
    for name, e in metrics["explain"].items():
        loc = e.get("localisation", {}).get("mean")
        if loc is not None:
            rows.append((f"Grad-CAM localisation, {name} (1 = uniform)", f"{loc:.2f}"))
    return rows


def summary_table(metrics: dict) -> str:
    """The headline numbers as an aligned two-column text table."""
    rows = _headline(metrics)
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 22)
    return "\n".join([line, *(f"{k:<{w}}  {v}" for k, v in rows), line])


def _csv(rows: list[list], header: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _tables(run: Path, metrics: dict) -> list[Path]:
    out = []
    steps = []
    for k, r in enumerate(metrics["continual"]["orders"]):
        matrix = [[i, *row, *([""] * (len(r["matrix"]) - len(row)))] for i, row in enumerate(r["matrix"])]
        header = ["after_step", *["basic" if j == 0 else "+".join(c) for j, c in enumerate(r["step_classes"])]]
        out.append(write_text(run / "tables" / f"accuracy_matrix_order{k}.csv", _csv(matrix, header)))
        for i in range(len(r["matrix"])):
            steps.append([k, i, " ".join(r["step_classes"][i]), r["seen_accuracy"][i], r["basic_kept"][i],
                          "" if r["compound_accuracy"][i] is None else r["compound_accuracy"][i],
                          r["newest_accuracy"][i], round(r["step_time_s"][i], 3)])
    out.append(write_text(run / "tables" / "steps.csv", _csv(steps, [
        "order", "step", "new_classes", "seen_accuracy", "basic_accuracy", "compound_accuracy", "newest_accuracy",
        "train_seconds"])))
    fs = [[r["encoder"], r["config"]["ways"], r["config"]["shots"], r["config"]["queries"], r["episodes"],
           r["config"]["classifier"], r["accuracy"], r["ci95"]] for r in metrics["fewshot"]]
    out.append(write_text(run / "tables" / "fewshot.csv", _csv(fs, [
        "encoder", "ways", "shots", "queries", "episodes", "classifier", "accuracy", "ci95"])))
    regions = []
    for model, e in metrics["explain"].items():
        for c, att in e["region_attention"].items():
            kind = "basic" if c in taxonomy.BASIC else "compound" if c in taxonomy.COMPOUND else "other"
            regions.append([model, c, kind, *[att[r] for r in taxonomy.REGIONS]])
    out.append(write_text(run / "tables" / "regions.csv", _csv(regions, ["model", "class", "kind",
                                                                           *taxonomy.REGIONS])))
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.6em 0 1.2em}
td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0 2em} figure img{max-width:100%;border:1px solid #eee} figcaption{color:#555;font-size:.92em}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em} .note{background:#fff8e1;padding:.6em 1em;
border-left:4px solid #f0c040}
"""


def _figure(src: str, caption: str) -> str:
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _html(run: Path, metrics: dict, config: RunConfig, timing: dict, files: list[Path]) -> str:
    d, t = metrics["data"], metrics["teacher"]
    orders = metrics["continual"]["orders"]
    head = "".join(f"<tr><td>{html.escape(k)}</td><td class=num>{html.escape(v)}</td></tr>"
                   for k, v in _headline(metrics))
    order_rows = "".join(
        f"<tr><td>{k}</td><td>{html.escape(', '.join(r['order']))}</td><td class=num>{r['memory_size']}</td>"
        f"<td class=num>{_pct(r['average_accuracy'])}</td><td class=num>{_pct(r['final_accuracy'])}</td></tr>"
        for k, r in enumerate(orders))
    fewshot_note = ("classes held out of the stream: no encoder trained on them" if d["holdout"] else
                    "the stream's compound classes: the student trained on them (faces of unseen people)")
    parts = [
        f"<h1>cfer run report</h1><p class=sub>{html.escape(str(run.resolve().name))} · cfer "
        f"{html.escape(metrics['cfer_version'])} · {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
        f"<p><b>Data</b>: {html.escape(d['source'])}; {d['n_train']} train / {d['n_val']} validation / "
        f"{d['n_test']} test faces from disjoint people.<br><b>Basic</b> (teacher): "
        f"{html.escape(', '.join(d['basic']))}.<br><b>Compound stream</b>: {len(d['compound'])} classes, "
        f"{config.continual.per_step} per step, {len(orders)} class order(s).<br><b>Few-shot</b>: "
        f"{html.escape(', '.join(d['fewshot_classes']))} ({fewshot_note}).</p>",
        f"<h2>Summary</h2><table><tr><th>measure</th><th>value</th></tr>{head}</table>",
        "<h2>Continual learning</h2>",
        f"<p>The teacher trained on the basic classes for {t.get('epochs_run')} epochs (best validation accuracy "
        f"{_pct(t.get('val_accuracy'))} at epoch {t.get('best_epoch')}); the student starts as its copy and learns "
        f"the compound classes with distillation from the frozen teacher (γ₀={config.continual.gamma0}, "
        f"T={config.continual.temperature}, feature weight {config.continual.feature_weight}) and predictive-sorting "
        f"replay ({config.continual.psmr_mode} mode).</p>",
        _figure("figures/accuracy_vs_step.png", "Test accuracy after each step."),
        _figure("figures/accuracy_matrix.png", "Accuracy on each test experience (columns) after each training step "
                "(rows); the diagonal is the newest classes, the first column the basic classes."),
        f"<table><tr><th>order</th><th>compound classes in order of arrival</th><th>memory M</th>"
        f"<th>avg over steps</th><th>final</th></tr>{order_rows}</table>",
        "<h2>Few-shot episodes</h2>",
        f"<p class=note>Each episode draws {config.fewshot.ways} classes, support and query faces of test subjects; "
        "queries come from every class in the episode, so always answering one class scores chance, not 100%.</p>",
        _figure("figures/fewshot.png", "Mean query accuracy over episodes with its 95% confidence interval."),
        "<h2>Grad-CAM: where the models look</h2>",
        _figure("figures/regions_basic_vs_compound.png", "Share of Grad-CAM energy per facial region, averaged over "
                "basic and over compound classes."),
    ]
    for name in metrics["explain"]:
        parts.append(_figure(f"explain/{name}/overlays.png", f"Grad-CAM of the {name} (one test face per class)."))
        parts.append(_figure(f"explain/{name}/regions.png", f"Region attention of the {name} per class."))
    links = "".join(f'<li><a href="{html.escape(p.relative_to(run).as_posix())}">'
                    f"{html.escape(p.relative_to(run).as_posix())}</a></li>" for p in files)
    secs = ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in timing.items() if k.endswith("_s"))
    if timing.get("invocations", 1) > 1:
        secs += f" (summed over {timing['invocations']} invocations: the run was resumed)"
    parts += [f"<h2>Files</h2><ul>{links}</ul><p>Time: {html.escape(secs)}.</p>",
              f"<h2>Configuration</h2><pre>{html.escape(dump_config(config))}</pre>"]
    body = "\n".join(parts)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>cfer run report</title>"
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def write_report(run_dir: str | Path, *, metrics: dict, config: RunConfig, timing: dict | None = None) -> Path:
    """Write ``metrics.json``, ``tables/*.csv``, ``figures/*.png`` and ``report.html``.

    Args:
        run_dir: The run folder (figures of Grad-CAM are expected under ``explain/``).
        metrics: What :func:`cfer.app.pipeline.run_pipeline` computed.
        config: The run's configuration (shown in the report).
        timing: Seconds per stage (shown in the report).

    Returns:
        The path of ``report.html``.
    """
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    files = [write_json(run / "metrics.json", metrics)]
    files += _tables(run, metrics)
    for name, draw in FIGURES.items():
        fig = draw(metrics)
        files.append(save_figure(fig, run / "figures" / f"{name}.png", dpi=110))
        plt.close(fig)
    page = _html(run, metrics, config, timing or {}, files)
    return write_text(run / "report.html", page)

