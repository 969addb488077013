"""The run report: ``metrics.json``, CSV tables, PNG figures and one ``report.html``.

Figures are at most :data:`cfer.app.figures.COLUMN_INCHES` wide at dpi 110; class names are in display form
(:func:`cfer.taxonomy.display_name`) on the page and in figures, canonical in CSV and JSON. :func:`write_report`
writes, atomically, what a person reads (the page links figures by relative path: the folder can move) and what a
program reads (JSON, CSV); :func:`summary_table` is what ``cfer run`` prints. Clips get a strip of frames and maps.
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
from cfer.app.figures import model_label
from cfer.app.report_words import recipe_words, strategy_words, student_start
from cfer.atomic import save_figure, write_json, write_text

__all__ = ["write_report", "summary_table", "FIGURES"]

FIGURES = {
    "accuracy_matrix": figs.accuracy_matrix,
    "accuracy_vs_step": figs.accuracy_vs_step,
    "fewshot": figs.fewshot_bars,
    "regions_basic_vs_compound": figs.region_comparison,
    "confusion_student": lambda m: figs.confusion_heatmap(m["confusion"]["student"], title="final student"),
    "confusion_teacher": lambda m: figs.confusion_heatmap(m["confusion"]["teacher"], title="basic teacher"),
}
"""Each figure of ``figures/``: its name and how it is drawn from the metrics."""


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _mean_std(summary: dict, key: str) -> tuple[str, str]:
    s = summary.get(key)
    if s is None:
        return "–", ""
    if s["n"] == 1:
        return f"{100 * s['mean']:.1f}%", "one class order"
    return f"{100 * s['mean']:.1f}% ± {100 * s['std']:.1f}", f"± std over {s['n']} class orders"


def _headline(metrics: dict) -> list[tuple[str, str, str]]:
    """(measure, value, what its ± is) rows of the summary."""
    s = metrics["continual"]["summary"]
    t = metrics["teacher"]
    rows = [("teacher, basic test accuracy", _pct(t.get("test_accuracy")), "one teacher"),
            *[(f"teacher member {name} (its own head), basic test accuracy", _pct(acc), "one teacher")
              for name, acc in (t.get("members") or {}).items()],
            ("average accuracy over steps (published metric)", *_mean_std(s, "average_accuracy")),
            ("final accuracy, all seen classes", *_mean_std(s, "final_accuracy")),
            ("final accuracy, basic classes", *_mean_std(s, "final_basic_accuracy")),
            ("final accuracy, compound classes", *_mean_std(s, "final_compound_accuracy")),
            ("newest-class accuracy (mean over steps)", *_mean_std(s, "mean_newest_accuracy")),
            ("forgetting", *_mean_std(s, "forgetting")),
            *_f1_rows(metrics.get("scores") or {})]
    for r in metrics["fewshot"]:
        c = r["config"]
        rows.append((f"few-shot {c['ways']}-way {c['shots']}-shot, {r['encoder']}",
                     f"{100 * r['accuracy']:.1f}% ± {100 * r['ci95']:.1f}", f"± 95% CI over {r['episodes']} episodes"))
    for name, e in metrics["explain"].items():
        loc = e.get("localisation", {}).get("mean")
        if loc is not None:
            rows.append((f"Grad-CAM localisation, {model_label(name)} (1 = uniform)", f"{loc:.2f}", "mean over faces"))
    return rows


def _f1(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _f1_rows(scores: dict) -> list[tuple[str, str, str]]:
    """Macro-F1 rows of the summary: the teacher's over the basic classes, the final student's."""
    rows = []
    if "teacher" in scores:
        open_set = scores["teacher"].get("macro_f1_open_set")
        rows.append(("teacher macro-F1, basic classes", _f1(scores["teacher"]["macro_f1"]),
                     "one teacher" + ("" if open_set is None else
                                      f"; {_f1(open_set)} with later classes' faces as its false positives")))
        rows += [(f"{model_label(k)} (its own head) macro-F1, basic classes", _f1(scores[k]["macro_f1"]),
                  "one teacher") for k in _member_keys(scores, "teacher")]
    if "student" in scores:
        st = scores["student"]
        rows += [(f"final macro-F1, {label}", _f1(st[key]), "first class order")
                 for key, label in (("macro_f1", "all learnt classes"), ("macro_f1_basic", "basic classes"),
                                    ("macro_f1_compound", "compound classes"))]
        rows += [(f"final macro-F1, {model_label(k)} (its own head), {label}", _f1(scores[k][key]),
                  "first class order") for k in _member_keys(scores, "student")
                 for key, label in (("macro_f1_basic", "basic classes"), ("macro_f1_compound", "compound classes"))]
    return rows


def summary_table(metrics: dict) -> str:
    """The headline numbers as an aligned text table: measure, value and what its ± is."""
    rows = _headline(metrics)
    w, v = max(len(k) for k, _, _ in rows), max(len(x) for _, x, _ in rows)
    lines = [f"{k:<{w}}  {x:<{v}}  {n}".rstrip() for k, x, n in rows]
    line = "-" * max(len(s) for s in lines)
    return "\n".join([line, *lines, line])


def _sizes(record: dict) -> str:
    sizes = [len(c) for c in record["step_classes"]]
    return f"{sizes[0]} basic, then {', '.join(map(str, sizes[1:]))}"


def _names(names: list[str]) -> str:
    return ", ".join(taxonomy.display_name(n) for n in names)


def _csv(rows: list[list], header: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
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
    out.append(write_text(run / "tables" / "regions.csv", _csv(regions, ["model", "class", "kind", *taxonomy.REGIONS])))
    shares = []
    for model, c in metrics["confusion"].items():
        rows = [[r, *m] for r, m in zip(c["classes"], c["matrix"])]
        out.append(write_text(run / "tables" / f"confusion_{model}.csv", _csv(rows, ["true_class", *c["outputs"]])))
        shares += [[model, k, *("" if v[f] is None else v[f] for f in _SHARE)]
                   for k, v in c["constituent_share"].items()]
    out.append(write_text(run / "tables" / "constituents.csv", _csv(shares, ["model", "compound", *_SHARE])))
    first = (metrics.get("data") or {}).get("basic") or taxonomy.BASIC  # the stream's roles, as in the macro-F1s
    scores = [[model, c, "basic" if c in first else "compound", *(v[f] for f in _SCORE)]
              for model, sc in (metrics.get("scores") or {}).items() for c, v in sc["per_class"].items()]
    out.append(write_text(run / "tables" / "class_scores.csv", _csv(scores, ["model", "class", "kind", *_SCORE])))
    return out


_SCORE = ("precision", "recall", "f1", "support")


_SHARE = ("n", "accuracy", "errors", "to_constituents", "to_other", "chance")


def _confusion_section(metrics: dict) -> list[str]:
    c = metrics["confusion"]
    student, teacher = c["student"]["constituent_share"], c["teacher"]["constituent_share"]
    rows = "".join(
        f"<tr><td>{html.escape(taxonomy.display_name(k))}</td><td>{html.escape(_names(taxonomy.CONSTITUENTS[k]))}</td>"
        f"<td class=num>{_pct(v['accuracy'])}</td><td class=num>{_pct(v['to_constituents'])}</td>"
        f"<td class=num>{_pct(v['chance'])}</td><td class=num>{_pct(teacher.get(k, {}).get('to_constituents'))}</td>"
        f"<td class=num>{_pct(teacher.get(k, {}).get('chance'))}</td></tr>" for k, v in student.items())
    return [
        "<h2>Confusions: where compound faces go</h2>",
        "<p>Rows are the true classes of the test faces, columns the predicted class; each row sums to 1. "
        "The teacher has only the basic outputs, so every compound face it sees lands on a basic class.</p>",
        _figure("figures/confusion_student.png", "Row-normalised confusion matrix of the final student (first class "
                "order) over every class it learnt; outlined cells: a compound class's constituent basics."),
        _figure("figures/confusion_teacher.png", "Where the basic teacher puts the test faces of every stream class "
                "(basic and compound) among its basic outputs."),
        "<p>For each compound class: the share of its misclassified test faces that the model puts on one of its "
        "two constituent basic classes, next to the share uniform guessing among the wrong outputs would give.</p>",
        "<table><tr><th>compound class</th><th>constituents</th><th>student accuracy</th>"
        "<th>student errors on constituents</th><th>chance</th><th>teacher: faces on constituents</th>"
        f"<th>chance</th></tr>{rows}</table>",
    ]


def _member_keys(section: dict, role: str) -> list[str]:
    """The keys of an ensemble's members (``"teacher-resemotenet_slim"``) in a metrics section."""
    return [k for k in section if k.startswith(f"{role}-")]


def _f1_cell(v: float | None) -> str:
    return f"<td class=num>{_f1(v)}</td>"


def _scores_section(metrics: dict) -> list[str]:
    scores = metrics.get("scores") or {}
    if not scores:
        return []
    student = scores["student"]["per_class"]
    others = [k for k in ("teacher", *_member_keys(scores, "teacher"), *_member_keys(scores, "student"))
              if k in scores]  # F1 columns after the student's own: the fused teacher, then each member
    rows = "".join(
        f"<tr><td>{html.escape(taxonomy.display_name(c))}</td><td class=num>{v['support']}</td>"
        + "".join(_f1_cell(x) for x in (v["precision"], v["recall"], v["f1"],
                                        *(scores[k]["per_class"].get(c, {}).get("f1") for k in others)))
        + "</tr>" for c, v in student.items())
    macros = (scores["student"]["macro_f1"], *(scores[k]["macro_f1"] for k in others))
    rows += ("<tr><td><b>macro-F1</b></td>" + "<td></td>" * 3
             + "".join(f"<td class=num><b>{_f1(m)}</b></td>" for m in macros) + "</tr>")
    heads = "".join(f"<th>{html.escape(model_label(k))} F1</th>" for k in others)
    return [
        "<h2>Per-class precision, recall and F1</h2>",
        "<p>From the confusion counts on the test faces: the final student (first class order) over every class it "
        "learnt, the teacher over its basic outputs (an ensemble's members each on its own head), each on the test "
        "faces of its own classes: the later classes' faces, which the teacher has no output for, are not counted "
        "in its precision (metrics.json's macro_f1_open_set counts them). A class never predicted has precision 0; "
        "macro-F1 is the unweighted mean over the classes with test faces; basic = the first step's classes.</p>",
        "<table><tr><th>class</th><th>test faces</th><th>student precision</th><th>student recall</th>"
        f"<th>student F1</th>{heads}</tr>{rows}</table>",
    ]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.6em 0 1.2em}
td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0 2em} figure img{max-width:100%;outline:1px solid #eee} figcaption{color:#555;font-size:.92em}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em} .note{background:#fff8e1;padding:.6em 1em;
border-left:4px solid #f0c040}
"""


def _figure(src: str, caption: str) -> str:
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _quota(record: dict) -> str:
    per, basic = record.get("memory_per_class"), record.get("memory_per_basic_class")
    if per is None:
        return ""
    return f" ({per} per class)" if basic in (None, per) else f" ({basic} per basic class, {per} per compound class)"


def _left_out(d: dict) -> str:
    """What the data had that the run did not use, and why: shown, never silent."""
    notes = []
    unused = d.get("unused") or {}
    if unused:
        notes.append("faces of classes no stage uses: " + ", ".join(f"{k} {v}" for k, v in unused.items())
                     + " (not among the basic, stream or few-shot classes; add them with --basic or --compound)")
    skipped = d.get("skipped") or {}
    if skipped:
        notes.append(f"{sum(skipped.values())} items the reader left out: "
                     + ", ".join(f"{v} {k}" for k, v in skipped.items()))
    return "".join(f"<br><b>Left out</b>: {html.escape(n)}." for n in notes)


def _empty_maps_note(metrics: dict) -> str:
    """Say how many maps are all zero (the class got no positive evidence at the target layer)."""
    shares = {k: v.get("empty_maps") for k, v in metrics["explain"].items() if v.get("empty_maps")}
    if not shares:
        return ""
    return ("<p class=note>All-zero maps (the explained class gets no positive evidence at the target layer; they "
            "count as no attention): " + ", ".join(f"{html.escape(k)} {_pct(v)}" for k, v in shares.items())
            + " of the faces.</p>")


def _first_member(metrics: dict) -> str | None:
    """The member the first order's student copied (``member:NAME`` runs)."""
    orders = metrics.get("continual", {}).get("orders") or [{}]
    return orders[0].get("student_member")


def _html(run: Path, metrics: dict, config: RunConfig, timing: dict, files: list[Path]) -> str:
    d, t = metrics["data"], metrics["teacher"]
    orders = metrics["continual"]["orders"]
    head = "".join(f"<tr><td>{html.escape(k)}</td><td class=num>{html.escape(v)}</td><td>{html.escape(n)}</td></tr>"
                   for k, v, n in _headline(metrics))
    order_rows = "".join(
        f"<tr><td>{k}</td><td>{html.escape(_names(r['order']))}</td><td>{html.escape(_sizes(r))}</td>"
        f"<td class=num>{r['memory_size']}{_quota(r)}</td>"
        f"<td class=num>{_pct(r['average_accuracy'])}</td><td class=num>{_pct(r['final_accuracy'])}</td></tr>"
        for k, r in enumerate(orders))
    fewshot_note = ("classes held out of the stream: no encoder trained on them" if d["holdout"] else
                    "the stream's compound classes: the student trained on them (faces of unseen people)")
    parts = [
        f"<h1>cfer run report</h1><p class=sub>{html.escape(str(run.resolve().name))} · cfer "
        f"{html.escape(metrics['cfer_version'])} · {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
        f"<p><b>Data</b>: {html.escape(d['source'])}; {d['n_train']} train / {d['n_val']} validation / "
        f"{d['n_test']} test faces from disjoint people.{_left_out(d)}<br><b>Basic</b> (teacher): "
        f"{html.escape(_names(d['basic']))}.<br><b>Compound stream</b>: {len(d['compound'])} classes, about "
        f"{config.continual.per_step} per step, spread evenly (steps of "
        f"{', '.join(str(len(c)) for c in orders[0]['step_classes'][1:])} classes after the basic step), "
        f"{len(orders)} class order(s).<br><b>Few-shot</b>: "
        f"{html.escape(_names(d['fewshot_classes']))} ({fewshot_note}).</p>",
        f"<h2>Summary</h2><table><tr><th>measure</th><th>value</th><th>± is</th></tr>{head}</table>",
        "<h2>Continual learning</h2>",
        f"<p>The teacher trained on the basic classes with the {recipe_words(t.get('recipe'))} for "
        f"{t.get('epochs_run')} epochs (best validation accuracy "
        f"{_pct(t.get('val_accuracy'))} at epoch {t.get('best_epoch')}); "
        f"{student_start(config, member=_first_member(metrics))} "
        f"the compound classes with {strategy_words(metrics['continual'].get('strategy'))}.</p>",
        _figure("figures/accuracy_vs_step.png", "Test accuracy after each step."),
        _figure("figures/accuracy_matrix.png", "Accuracy on each test experience (columns) after each training step "
                "(rows); the diagonal is the newest classes, the first column the basic classes."
                + ("" if len(orders) == 1 else f" Cells are means over {len(orders)} class orders; experience k holds "
                   "different compound classes in each order (see the table below).")),
        f"<table><tr><th>order</th><th>compound classes in order of arrival</th><th>classes per step</th>"
        f"<th>memory M (items per class)</th><th>avg over steps</th><th>final</th></tr>{order_rows}</table>",
        *_confusion_section(metrics), *_scores_section(metrics),
        "<h2>Few-shot episodes</h2>",
        f"<p class=note>Each episode draws {config.fewshot.ways} classes, support and query faces of test subjects; "
        "queries come from every class in the episode, so always answering one class scores chance, not 100%.</p>",
        _figure("figures/fewshot.png", "Mean query accuracy over episodes with its 95% confidence interval."),
        "<h2>Grad-CAM: where the models look</h2>",
        _empty_maps_note(metrics),
        _figure("figures/regions_basic_vs_compound.png", "Share of Grad-CAM energy per facial region, averaged over "
                "basic and over compound classes."),
    ]
    for name in metrics["explain"]:
        label = model_label(name)  # an ensemble's fused maps first, then a row per member on its own head
        clip = (run / "explain" / name / "curves.png").is_file()  # clips: a strip of frames, and region curves
        parts.append(_figure(f"explain/{name}/overlays.png", f"Grad-CAM of the {label} (one test "
                             f"{'clip per class, frame by frame' if clip else 'face per class'})."))
        parts.append(_figure(f"explain/{name}/regions.png", f"Region attention of the {label} per class."))
        for png, text in (("similarity.png", f"How alike the {label}'s mean Grad-CAM maps of each compound and each "
                           "basic class are (correlation); outlined: the constituents."),
                          ("curves.png", f"Which regions light up when: the {label}'s region shares, frame by frame.")):
            if (run / "explain" / name / png).is_file():
                parts.append(_figure(f"explain/{name}/{png}", text))
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

