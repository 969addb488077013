"""The run report's figures, drawn from ``metrics.json`` alone.

Each function takes the metrics dict :func:`cfer.app.pipeline.run_pipeline` returns and gives
back a matplotlib figure (Agg backend, nothing shown).

Example:
    >>> fig = accuracy_vs_step(metrics)                    # doctest: +SKIP
    >>> fig.savefig("accuracy_vs_step.png")               # doctest: +SKIP
"""

from __future__ import annotations

import warnings

import numpy as np

from cfer import taxonomy

__all__ = ["accuracy_matrix", "accuracy_vs_step", "fewshot_bars", "region_comparison", "mean_matrix",
           "confusion_heatmap", "COLUMN_INCHES"]

COLUMN_INCHES = 10.0
"""The report's column (max-width 1,100 px) at dpi 110: no figure is drawn wider, so none is shrunk."""


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_matrix(records: list[dict]) -> np.ndarray:
    """Mean over class orders of ``R[i][j]`` (NaN above the diagonal)."""
    n = len(records[0]["matrix"])
    out = np.full((len(records), n, n), np.nan)
    for k, r in enumerate(records):
        for i, row in enumerate(r["matrix"]):
            out[k, i, : len(row)] = row
    if len(records) == 1:
        return out[0]
    with warnings.catch_warnings():  # cells above the diagonal are NaN in every order
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(out, 0)


def model_label(key: str) -> str:
    """How the report names a model key: ``"teacher-manet_slim"`` -> ``"teacher member manet_slim"``."""
    role, sep, member = key.partition("-")
    return f"{role} member {member}" if sep and role in ("teacher", "student") else key


def _short(names: list[str], limit: int = 3) -> str:
    """The classes of an experience by name, or counted: "6 basic", "5 compound", "4 classes"."""
    parts = [taxonomy.display_name(n) for n in names]
    if len(parts) <= limit:
        return ", ".join(parts)
    kind = next((k for k, group in (("basic", taxonomy.BASIC), ("compound", taxonomy.COMPOUND))
                 if all(n in group for n in names)), "classes")
    return f"{len(parts)} {kind}"


def accuracy_matrix(metrics: dict):  # noqa: ANN201
    """Heatmap of accuracy on test experience j (columns) after training step i (rows)."""
    plt = _plt()
    records = metrics["continual"]["orders"]
    m = mean_matrix(records)
    n = len(m)
    fig, ax = plt.subplots(figsize=(min(COLUMN_INCHES, 1.0 + 0.75 * n + 2.2), 0.6 * n + 2.4))
    im = ax.imshow(np.ma.masked_invalid(m), vmin=0, vmax=1, cmap="viridis")
    for i in range(n):
        for j in range(i + 1):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] < 0.6 else "black")
    if len(records) == 1:
        labels = [_short(c) for c in records[0]["step_classes"]]
        title = "accuracy per experience (one class order)"
    else:
        sizes = [len(c) for c in records[0]["step_classes"]]
        labels = ["basic", *[f"experience {j} ({sizes[j]} classes)" for j in range(1, n)]]
        title = (f"accuracy per experience, mean over {len(records)} class orders\n"
                 "(experience k holds different classes in each order)")
    ax.set_xticks(range(n), labels, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"after {'basic' if i == 0 else f'step {i}'}" for i in range(n)], fontsize=8)
    ax.set_xlabel("test experience (its classes)" if len(records) == 1 else
                  f"test experience k, mean over {len(records)} orders; classes differ per order")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.04, label="accuracy")
    fig.tight_layout()
    return fig


def accuracy_vs_step(metrics: dict):  # noqa: ANN201
    """Seen-class, basic, compound and newest-class accuracy after each step (mean ± std over orders)."""
    plt = _plt()
    records = metrics["continual"]["orders"]
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    series = [("seen_accuracy", "all classes seen so far", 2.6), ("basic_kept", "basic classes", 1.6),
              ("compound_accuracy", "compound classes seen so far", 1.6), ("newest_accuracy", "newest classes", 1.2)]
    for key, label, lw in series:
        curves = np.array([[np.nan if v is None else v for v in r[key]] for r in records], float)
        with warnings.catch_warnings():  # compound accuracy is undefined (NaN) at the basic step
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
        x = np.arange(len(mean))
        ax.plot(x, mean, marker="o", ms=3.5, lw=lw, label=label)
        if len(records) > 1:
            ax.fill_between(x, mean - std, mean + std, alpha=0.15)
    t = metrics.get("teacher", {}).get("test_accuracy")
    if t is not None:
        ax.axhline(t, ls="--", color="grey", lw=1, label=f"teacher on basic test faces ({t:.2f})")
    ax.set_xlabel("step (0 = the basic classes)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(range(len(records[0]["seen_accuracy"])))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    n = len(records)
    ax.set_title(f"accuracy after each step ({'one class order' if n == 1 else f'mean ± std over {n} orders'})",
                 fontsize=10)
    fig.tight_layout()
    return fig


def fewshot_bars(metrics: dict):  # noqa: ANN201
    """Episode accuracy per encoder and shot count with 95% confidence intervals."""
    plt = _plt()
    rows = metrics["fewshot"]
    encoders = list(dict.fromkeys(r["encoder"] for r in rows))
    shots = sorted({r["config"]["shots"] for r in rows})
    ways = rows[0]["config"]["ways"]
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    width = 0.8 / len(encoders)
    for e, name in enumerate(encoders):
        acc = [next(r["accuracy"] for r in rows if r["encoder"] == name and r["config"]["shots"] == k) for k in shots]
        ci = [next(r["ci95"] for r in rows if r["encoder"] == name and r["config"]["shots"] == k) for k in shots]
        x = np.arange(len(shots)) + (e - (len(encoders) - 1) / 2) * width
        bars = ax.bar(x, acc, width, yerr=ci, capsize=4, label=name)
        for b, a in zip(bars, acc):
            ax.text(b.get_x() + b.get_width() / 2, a + 0.03, f"{100 * a:.1f}%", ha="center", fontsize=8)
    ax.axhline(1 / ways, ls="--", color="grey", lw=1, label=f"chance ({100 / ways:.0f}%)")
    ax.set_xticks(range(len(shots)), [f"{ways}-way {k}-shot" for k in shots])
    ax.set_ylabel("query accuracy (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    n = rows[0]["episodes"]
    pool = "held-out compound classes" if metrics["data"]["holdout"] else "the stream's compound classes"
    ax.set_title(f"few-shot episodes on {pool} ({n} each)", fontsize=9)
    fig.tight_layout()
    return fig


def region_comparison(metrics: dict):  # noqa: ANN201
    """Mean Grad-CAM energy per facial region, basic vs compound classes, per model.

    The classes are grouped by their role in the run, as the report's tables group them:
    "basic" is the teacher's first step (``metrics["data"]["basic"]``), "compound" every class
    learnt or held out after it, so a run on basic expressions split into a first step and
    later steps compares the two groups too.
    """
    plt = _plt()
    explain, data = metrics["explain"], metrics.get("data", {})
    if "basic" in data and "compound" in data:
        roles = (("basic", set(data["basic"])), ("compound", {*data["compound"], *data.get("holdout", ())}))
    else:  # a metrics.json without the run's roles: the taxonomy's groups
        roles = (("basic", set(taxonomy.BASIC)), ("compound", set(taxonomy.COMPOUND)))
    series = []
    for model, summary in explain.items():
        att = summary["region_attention"]
        for kind, names in roles:
            vals = [list(att[c].values()) for c in att if c in names]
            if vals:
                series.append((f"{model_label(model)}, {kind}", np.mean(vals, 0)))
    fig, ax = plt.subplots(figsize=(8.0, 4.0 + 0.2 * ((len(series) + 1) // 2)))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(taxonomy.REGIONS))
    for s, (label, vals) in enumerate(series):
        ax.bar(x + (s - (len(series) - 1) / 2) * width, vals, width, label=label)
    ax.set_xticks(x, taxonomy.REGIONS, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("share of CAM energy")
    ax.set_title("where the models look: basic vs compound expressions", fontsize=10)
    # below the axes: with an ensemble's members there are many series, and inside they hide bars
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_heatmap(confusion: dict, *, title: str):  # noqa: ANN201
    """Row-normalised confusion matrix (rows: true class, columns: predicted output) from the
    JSON form of :class:`cfer.continual.confusion.Confusion`; constituent cells outlined."""
    plt = _plt()
    rows, outputs = confusion["classes"], confusion["outputs"]
    m = np.asarray(confusion["matrix"], float)
    cell = min(0.5, (COLUMN_INCHES - 3.2) / max(1, len(outputs)))
    fig, ax = plt.subplots(figsize=(min(COLUMN_INCHES, cell * len(outputs) + 3.2), cell * len(rows) + 2.4))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="Blues", aspect="auto")
    for i, r in enumerate(rows):
        for j, o in enumerate(outputs):
            if m[i, j] >= 0.005:
                ax.text(j, i, f"{m[i, j]:.2f}"[1:] if m[i, j] < 1 else "1", ha="center", va="center",
                        fontsize=6.5, color="white" if m[i, j] > 0.55 else "black")
            if o in taxonomy.CONSTITUENTS.get(r, ()):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="#d62728", lw=1.4))
    ax.set_xticks(range(len(outputs)), [taxonomy.display_name(o) for o in outputs], rotation=50, ha="right",
                  fontsize=7.5)
    ax.set_yticks(range(len(rows)), [taxonomy.display_name(r) for r in rows], fontsize=7.5)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (test faces)")
    ax.set_title(f"{title} (rows sum to 1; red: a compound's constituents)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.035, label="share of the row")
    fig.tight_layout()
    return fig
