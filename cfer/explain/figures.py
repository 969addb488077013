"""Pictures of explanations: overlay grids, region-attention bars, similarity heatmaps.

Each drawing function returns a matplotlib figure; :func:`save_analysis` writes the
figures and ``explain.json`` of an :class:`~cfer.explain.analysis.Analysis`.

Example:
    >>> from cfer.explain.analysis import analyse
    >>> save_analysis(analyse(model, classes=classes, faces=faces), "explain/", title="teacher")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from cfer import taxonomy

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from cfer.explain.analysis import Analysis

__all__ = ["overlay", "overlay_grid", "region_bars", "similarity_heatmap", "save_analysis"]


def _plt():  # noqa: ANN202 - the matplotlib.pyplot module, imported on first use
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def overlay(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """A uint8 RGB picture of ``cam`` (jet colours) blended over ``image`` (HWC uint8 or float)."""
    from matplotlib import colormaps

    img = np.asarray(image, np.float32)
    if img.max() > 1.5:
        img = img / 255.0
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, -1)
    heat = colormaps["jet"](np.clip(cam, 0, 1))[..., :3]
    return (np.clip((1 - alpha) * img + alpha * heat, 0, 1) * 255).astype(np.uint8)


def overlay_grid(images: np.ndarray, cams: np.ndarray, titles: Sequence[str], *, columns: int = 8,
                 suptitle: str | None = None) -> "Figure":
    """Overlays in a grid, one titled panel per image (basic and compound side by side if
    the caller orders them so)."""
    plt = _plt()
    n = len(images)
    rows = int(np.ceil(n / columns))
    side = min(1.35, 10.0 / columns)  # at most 10 in wide: the report's 1,100 px column at dpi 110
    fig, axes = plt.subplots(rows, columns, figsize=(side * columns, (side + 0.45) * rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        ax.imshow(overlay(images[i], cams[i]))
        name = titles[i]
        colour = "#9c1f3a" if name in taxonomy.COMPOUND else "#1f4e9c" if name in taxonomy.BASIC else "#555555"
        ax.set_title(taxonomy.display_name(name).replace(" ", "\n") if name in taxonomy.ALL_CLASSES else name,
                     fontsize=7, color=colour)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(pad=0.3)
    return fig


def region_bars(attention: dict[str, np.ndarray], *, title: str = "Grad-CAM energy per facial region",
                width: float = 10.0) -> "Figure":
    """One horizontal stacked bar per class (classes on the y axis, so long names stay
    readable): its mean share of CAM energy in each region, the legend above the bars.

    Args:
        attention: Mean region attention per class, in :data:`cfer.taxonomy.REGIONS` order.
        title: The figure's title.
        width: Figure width in inches (10 in at dpi 110 is the report's 1,100 px column).
    """
    plt = _plt()
    classes = list(attention)
    regions = taxonomy.REGIONS
    fig, ax = plt.subplots(figsize=(width, 0.3 * len(classes) + 1.5))
    colours = plt.get_cmap("tab10")
    y = np.arange(len(classes))
    left = np.zeros(len(classes))
    for k, r in enumerate(regions):
        vals = np.array([attention[c][k] for c in classes], float)
        ax.barh(y, vals, left=left, height=0.75, label=r, color=colours(k))
        for i, v in enumerate(vals):
            if v >= 0.07:
                ax.text(left[i] + v / 2, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5, color="white")
        left += vals
    ax.set_yticks(y, [taxonomy.display_name(c) if c in taxonomy.ALL_CLASSES else c for c in classes], fontsize=8)
    for tick, c in zip(ax.get_yticklabels(), classes):
        tick.set_color("#9c1f3a" if c in taxonomy.COMPOUND else "#1f4e9c" if c in taxonomy.BASIC else "#555555")
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, float(left.max())))
    ax.set_xlabel("share of CAM energy (blue names: basic, red: compound)", fontsize=8)
    ax.set_title(title, fontsize=10, pad=24)
    ax.legend(ncol=len(regions), fontsize=7.5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def similarity_heatmap(matrix: np.ndarray, compounds: Sequence[str], basics: Sequence[str], *,
                       title: str = "compound x basic CAM similarity") -> "Figure":
    """Heatmap of a compound x basic similarity matrix; constituent cells are outlined."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(min(10.0, 1.0 * len(basics) + 2.8), 0.36 * len(compounds) + 1.6))
    im = ax.imshow(matrix, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(basics)))
    ax.set_xticklabels([taxonomy.display_name(b) for b in basics], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(compounds)))
    ax.set_yticklabels([taxonomy.display_name(c) for c in compounds], fontsize=8)
    for i, c in enumerate(compounds):
        for b in taxonomy.CONSTITUENTS.get(c, ()):
            if b in basics:
                j = list(basics).index(b)
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="white", lw=1.6))
        for j in range(len(basics)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if matrix[i, j] < matrix.mean() else "black")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title + " (outlined: constituents)", fontsize=9)
    fig.tight_layout()
    return fig


def save_analysis(result: "Analysis", out_dir: str | Path, *, title: str = "", max_grid: int = 22) -> Path:
    """Write ``overlays.png``, ``regions.png``, ``similarity.png`` (with both basic and
    compound classes) and ``explain.json`` of ``result`` into ``out_dir``.

    Args:
        result: What :func:`cfer.explain.analysis.analyse` returned.
        out_dir: The folder (created if missing).
        title: Prefix of figure titles.
        max_grid: Overlays in the grid (one per class, basic then compound).

    Returns:
        The folder.
    """
    from cfer.atomic import save_figure, write_json

    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = np.asarray(result.class_names)
    order = [c for c in taxonomy.ALL_CLASSES if c in result.per_class][:max_grid]  # classes with faces here
    pick = [int(np.flatnonzero(names == c)[0]) for c in order]
    method = result.summary.get("method", "")
    fig = overlay_grid(result.images[pick], result.cams[pick], order, columns=min(8, len(pick)),
                       suptitle=f"{title} Grad-CAM ({method})".strip())
    save_figure(fig, out / "overlays.png", dpi=110)
    save_figure(region_bars({c: result.per_class[c] for c in order},
                            title=f"{title} CAM energy per facial region".strip()), out / "regions.png", dpi=110)
    if result.table is not None:
        table = result.table
        save_figure(similarity_heatmap(table.correlation, table.compounds, table.basics,
                                       title=f"{title} mean-CAM correlation".strip()), out / "similarity.png", dpi=110)
    write_json(out / "explain.json", result.summary, indent=1)
    plt.close("all")
    return out
