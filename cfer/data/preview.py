"""Pictures of datasets: a labelled grid of faces per class and identity.

Example:
    >>> from cfer.data.synthetic import render_faces
    >>> from cfer.data.preview import draw_grid
    >>> faces = render_faces(classes="basic", n_subjects=2, per_class=1)
    >>> fig = draw_grid(faces, max_subjects=2)   # doctest: +SKIP
    >>> fig.savefig("grid.png")                   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cfer import taxonomy
from cfer.data.base import FaceDataset

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["draw_grid"]

_KIND_COLOURS = {"neutral": "#555555", "basic": "#1f4e9c", "compound": "#9c1f3a"}


def _kind(name: str) -> str:
    return "basic" if name in taxonomy.BASIC else "compound" if name in taxonomy.COMPOUND else "neutral"


def draw_grid(dataset: FaceDataset, *, max_subjects: int = 5, title: str | None = None) -> "Figure":
    """One column per class, one row per subject (or per example when there are no subjects).

    Column labels are coloured by kind: neutral grey, basic blue, compound red.

    Args:
        dataset: Any :class:`~cfer.data.FaceDataset`.
        max_subjects: Rows to draw.
        title: Optional figure title.

    Returns:
        A matplotlib figure (the caller saves or shows it).

    Raises:
        ValueError: If the dataset is empty or ``max_subjects`` < 1.
    """
    if len(dataset) == 0:
        raise ValueError("the dataset is empty; nothing to draw")
    if max_subjects < 1:
        raise ValueError(f"max_subjects must be >= 1, got {max_subjects}")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = dataset.subjects if dataset.subjects is not None else np.arange(len(dataset)).astype(str)
    rows = list(dict.fromkeys(groups.tolist()))[:max_subjects]
    n_cls = len(dataset.classes)
    fig, axes = plt.subplots(len(rows), n_cls, figsize=(0.95 * n_cls, 1.0 * len(rows) + 0.9), squeeze=False)
    for r, subject in enumerate(rows):
        for c, name in enumerate(dataset.classes):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            hit = np.flatnonzero((groups == subject) & (dataset.labels == c))
            if dataset.subjects is None:
                hit = np.flatnonzero(dataset.labels == c)[r : r + 1]
            if len(hit):
                img = dataset.images[hit[0]]
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            if r == 0:
                label = taxonomy.display_name(name).replace(" ", "\n")
                ax.set_title(label, fontsize=7.5, color=_KIND_COLOURS[_kind(name)])
            if c == 0:
                ax.set_ylabel(str(subject), fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3, w_pad=0.1, h_pad=0.1)
    return fig
