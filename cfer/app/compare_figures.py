"""The figures of ``cfer compare``: every run's accuracy curve on one plot, few-shot bars per run.

Each function takes ``(name, metrics)`` pairs (``metrics`` as in a run folder's
``metrics.json``) and returns a matplotlib figure (Agg backend, nothing shown).

Example:
    >>> fig = accuracy_curves([("a", metrics_a), ("b", metrics_b)])   # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

__all__ = ["accuracy_curves", "fewshot_bars", "fewshot_keys", "fewshot_result"]


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _seen_curves(metrics: dict) -> np.ndarray:
    """Seen-class accuracy per order (rows) and step (columns), NaN-padded to the longest order."""
    records = metrics["continual"]["orders"]
    n = max(len(r["seen_accuracy"]) for r in records)
    out = np.full((len(records), n), np.nan)
    for k, r in enumerate(records):
        out[k, : len(r["seen_accuracy"])] = [np.nan if v is None else v for v in r["seen_accuracy"]]
    return out


def accuracy_curves(runs: Sequence[tuple[str, dict]]):  # noqa: ANN201
    """Accuracy on all classes seen so far after each step: one line per run (mean over its class
    orders), shaded ± one standard deviation over the orders; runs may have different step counts."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.6, 4.2))
    steps = 0
    for name, metrics in runs:
        curves = _seen_curves(metrics)
        with warnings.catch_warnings():  # a step only some orders reached
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
        x = np.arange(len(mean))
        n = len(curves)
        line, = ax.plot(x, mean, marker="o", ms=3.5, lw=2, label=f"{name} ({n} order{'s' * (n != 1)})")
        if n > 1:
            ax.fill_between(x, mean - std, mean + std, alpha=0.15, color=line.get_color())
        steps = max(steps, len(mean))
    ax.set_xlabel("step (0 = basic classes: the student starts as the teacher)")
    ax.set_ylabel("test accuracy, all classes seen so far")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(range(steps))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("accuracy after each step (mean over class orders, shaded ± std)", fontsize=10)
    fig.tight_layout()
    return fig


def fewshot_keys(runs: Sequence[tuple[str, dict]]) -> list[tuple[str, int, int]]:
    """Every ``(encoder, ways, shots)`` setting found in any run, in a stable order (encoders
    as they first appear, then ways and shots ascending)."""
    encoders = list(dict.fromkeys(r["encoder"] for _, m in runs for r in m.get("fewshot", [])))
    keys = {(r["encoder"], r["config"]["ways"], r["config"]["shots"]) for _, m in runs for r in m.get("fewshot", [])}
    return sorted(keys, key=lambda k: (encoders.index(k[0]), k[1], k[2]))


def fewshot_result(metrics: dict, key: tuple[str, int, int]) -> dict | None:
    """The few-shot record of one run for ``(encoder, ways, shots)``, or ``None`` if it has none."""
    return next((r for r in metrics.get("fewshot", [])
                 if (r["encoder"], r["config"]["ways"], r["config"]["shots"]) == tuple(key)), None)


def fewshot_bars(runs: Sequence[tuple[str, dict]]):  # noqa: ANN201
    """Episode accuracy per encoder/ways/shots (groups) and run (bars), with 95% CI error bars;
    a setting a run did not measure is marked "–" at the bar's place."""
    plt = _plt()
    keys = fewshot_keys(runs)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.2 + 0.5 * len(keys) * len(runs)), 4.2))
    width = 0.8 / len(runs)
    for i, (name, metrics) in enumerate(runs):
        x = np.arange(len(keys)) + (i - (len(runs) - 1) / 2) * width
        found = [fewshot_result(metrics, k) for k in keys]
        have = [j for j, r in enumerate(found) if r is not None]
        acc = [found[j]["accuracy"] for j in have]
        bars = ax.bar(x[have], acc, width, yerr=[found[j]["ci95"] for j in have], capsize=3, label=name)
        for b, a in zip(bars, acc):
            ax.text(b.get_x() + b.get_width() / 2, a + 0.04, f"{100 * a:.0f}%", ha="center", fontsize=7)
        for j in set(range(len(keys))) - set(have):
            ax.text(x[j], 0.02, "–", ha="center", fontsize=10, color="grey")
    ax.set_xticks(range(len(keys)), [f"{e}\n{w}-way {s}-shot" for e, w, s in keys], fontsize=8)
    ax.set_ylabel("query accuracy (error bars: 95% CI)")
    ax.set_ylim(0, 1.08)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("few-shot episodes: mean accuracy ± 95% CI per run", fontsize=10)
    fig.tight_layout()
    return fig
