"""What a clip model looks at, frame by frame: the clip counterpart of :mod:`cfer.explain.analysis`.

:func:`analyse_clips` explains a few clips (per-frame Grad-CAM, :func:`~cfer.explain.clips.explain_clips`),
turns the maps into region curves (each facial region's share of attention in every
frame) and summarises them per class; :func:`save_clip_analysis` draws the strip of
frames with their maps (``overlays.png``), the region curves of every class
(``regions.png``) and writes ``explain.json``. The summary has the keys the run report
reads for images (``method``, ``n_images``, ``empty_maps``, ``region_attention``) plus
``n_clips`` and ``region_curves``.

Example:
    >>> result = analyse_clips(model, classes=classes, clips=test.subset([0, 5]))   # doctest: +SKIP
    >>> save_clip_analysis(result, "runs/x/explain/teacher", title="teacher")       # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from cfer import taxonomy
from cfer.atomic import write_json
from cfer.explain.analysis import cam_targets
from cfer.explain.clips import explain_clips, region_curves
from cfer.explain.figures import _plt, overlay, region_bars
from cfer.explain.gradcam import empty_maps
from cfer.explain.regions import canonical_region_map

__all__ = ["ClipAnalysis", "analyse_clips", "save_clip_analysis"]


@dataclass
class ClipAnalysis:
    """What :func:`analyse_clips` computed.

    Attributes:
        summary: JSON-serialisable summary.
        frames: The frames the model saw, uint8 ``(N, T, S, S, C)``.
        maps: Their maps, float32 ``(N, T, S, S)`` in [0, 1].
        curves: Region shares, ``(N, T, len(taxonomy.REGIONS))``.
        class_names: The class of each clip.
    """

    summary: dict
    frames: np.ndarray
    maps: np.ndarray
    curves: np.ndarray
    class_names: list[str]


def analyse_clips(model: nn.Module, *, classes: Sequence[str], clips: Any, method: str = "gradcam") -> ClipAnalysis:
    """Per-frame Grad-CAM of ``clips`` and its region curves.

    Args:
        model: A clip classifier whose outputs are ``classes``.
        classes: The model's class names, in output order.
        clips: A :class:`cfer.data.video.ClipDataset` (a few clips: each is explained whole).
        method: A CAM method (:data:`cfer.explain.methods.METHODS`).

    Each clip is explained for its own class when the model has it, else for the model's
    prediction (compound clips shown to the basic teacher). Region maps come with synthetic
    clips; other clips use :func:`~cfer.explain.regions.canonical_region_map`.
    """
    if len(clips) == 0:
        raise ValueError("no clips to explain; give at least one")
    x, _ = clips.tensors()
    names = list(clips.class_names)
    maps = explain_clips(model, x, method=method, targets=cam_targets(model, x, names, classes))
    frames, regions = zip(*(clips.frames_at(i) for i in range(len(clips))))
    size = maps.shape[-1]
    regions = np.stack([r if r is not None else np.broadcast_to(canonical_region_map(size), maps.shape[1:])
                        for r in regions])
    curves = region_curves(maps, regions)
    present = [c for c in dict.fromkeys(names)]
    mask = {c: np.asarray(names) == c for c in present}
    per_class = {c: curves[mask[c]].mean((0, 1)) for c in present}
    summary = {
        "method": method,
        "n_clips": len(x),
        "n_images": int(maps.shape[0] * maps.shape[1]),
        "empty_maps": float(empty_maps(maps.reshape(-1, size, size)).mean()),
        "region_attention": {c: dict(zip(taxonomy.REGIONS, np.round(v, 4).tolist())) for c, v in per_class.items()},
        "region_curves": {c: np.round(curves[mask[c]].mean(0), 4).tolist() for c in present},
    }
    return ClipAnalysis(summary=summary, frames=np.stack(frames), maps=maps, curves=curves, class_names=names)


def save_clip_analysis(result: ClipAnalysis, out_dir: str | Path, *, title: str = "", max_clips: int = 12) -> Path:
    """Write ``overlays.png`` (a strip of frames with their maps: the first clip of each class,
    at most ``max_clips``), ``regions.png``
    (mean region shares per class), ``curves.png`` (region curves over the clip, per class)
    and ``explain.json`` into ``out_dir``; returns the folder."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = list(dict.fromkeys(result.class_names))  # one clip of each class, in order
    pick = [result.class_names.index(c) for c in first][:max_clips]
    n, T = len(pick), result.frames.shape[1]
    fig, axes = plt.subplots(n, T, figsize=(1.1 * T + 0.6, 1.25 * n + 0.5), squeeze=False)
    for row, i in enumerate(pick):
        for t in range(T):
            ax = axes[row, t]
            ax.imshow(overlay(result.frames[i, t], result.maps[i, t]))
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_ylabel(result.class_names[i].replace("_", " "), fontsize=7)
            if row == 0:
                ax.set_title(f"frame {t + 1}", fontsize=7)
    fig.suptitle(f"{title}: Grad-CAM frame by frame".strip(": "), fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "overlays.png", dpi=100)
    plt.close(fig)
    per_class = {c: np.array([v[r] for r in taxonomy.REGIONS]) for c, v in result.summary["region_attention"].items()}
    fig = region_bars(per_class, title=f"{title}: attention per region over the clip".strip(": "))
    fig.savefig(out / "regions.png", dpi=100)
    plt.close(fig)
    curves = result.summary["region_curves"]
    cols = min(4, len(curves))
    rows = int(np.ceil(len(curves) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.2 * rows + 0.4), squeeze=False)
    for ax, (c, v) in zip(axes.ravel(), curves.items()):
        v = np.asarray(v)
        for k, r in enumerate(taxonomy.REGIONS):
            ax.plot(np.arange(1, T + 1), v[:, k], label=r)
        ax.set_title(c.replace("_", " "), fontsize=8)
        ax.set_xlabel("frame", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(curves):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{title}: which regions light up when".strip(": "), fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
    write_json(out / "explain.json", result.summary)
    return out
