"""One call from a model and faces to maps, region attention, similarities and figures.

:func:`analyse` computes Grad-CAM maps for every face (target: the face's own class when
the model has an output for it, otherwise the model's prediction), then the mean region
attention per class, the localisation score against the synthetic AU ground truth, the
compound x basic similarity of mean maps, and optionally writes the figures.

Example:
    >>> from cfer.explain.analysis import analyse
    >>> summary = analyse(model, classes=model_classes, faces=faces, out_dir="explain/")  # doctest: +SKIP
    >>> summary["localisation"]["mean"]                                                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from cfer import taxonomy
from cfer.atomic import save_figure, write_json
from cfer.explain.compare import constituent_gap, mean_maps, similarity_table
from cfer.explain.gradcam import explain
from cfer.explain.regions import canonical_region_map, localisation_score, region_attention

__all__ = ["analyse", "cam_targets"]

logger = logging.getLogger(__name__)


def cam_targets(model: nn.Module, x: torch.Tensor, face_classes: Sequence[str], model_classes: Sequence[str]) -> list[int]:
    """The unit to explain per face: its own class if the model has it, else the prediction."""
    with torch.no_grad():
        was = model.training
        model.eval()
        pred = torch.cat([model(x[i:i + 256]).argmax(1) for i in range(0, len(x), 256)]).tolist()
        model.train(was)
    index = {c: i for i, c in enumerate(model_classes)}
    return [index.get(c, p) for c, p in zip(face_classes, pred)]


def analyse(
    model: nn.Module,
    *,
    classes: Sequence[str],
    faces,  # noqa: ANN001 - a FaceDataset (SyntheticFaces for localisation)
    method: str = "gradcam",
    out_dir: str | Path | None = None,
    title: str = "",
    max_grid: int = 22,
) -> dict:
    """Maps, region attention per class, localisation and basic/compound similarity.

    Args:
        model: The classifier to explain.
        classes: Its output classes, in unit order.
        faces: Faces to explain; with ``region_map``/``aus`` (synthetic faces) the exact
            regions and AU ground truth are used, otherwise :func:`canonical_region_map`.
        method: CAM method (see :data:`cfer.explain.gradcam.METHODS`).
        out_dir: If given, write ``overlays.png``, ``regions.png``, ``similarity.png`` and
            ``explain.json`` there.
        title: Prefix of figure titles.
        max_grid: Overlays in the grid (one per class, basic then compound).

    Returns:
        A JSON-serialisable summary.
    """
    x, _ = faces.tensors()
    names = [faces.classes[i] for i in faces.labels]
    targets = cam_targets(model, x, names, list(classes))
    cams = explain(model, x, method=method, targets=targets)
    region_map = getattr(faces, "region_map", None)
    if region_map is None:
        region_map = canonical_region_map(x.shape[-1])
    att = region_attention(cams, region_map)
    per_class = {c: att[np.asarray(names) == c].mean(0) for c in faces.classes if (np.asarray(names) == c).any()}
    empty = cams.reshape(len(cams), -1).sum(1) == 0
    summary: dict = {
        "method": method,
        "n_images": len(x),
        "empty_maps": float(empty.mean()),
        "region_attention": {c: dict(zip(taxonomy.REGIONS, np.round(v, 4).tolist())) for c, v in per_class.items()},
    }
    aus = getattr(faces, "aus", None)
    if aus is not None:
        loc = localisation_score(cams, region_map, aus)
        kinds = {"basic": np.isin(names, taxonomy.BASIC), "compound": np.isin(names, taxonomy.COMPOUND)}
        def nanmean(v: np.ndarray) -> float:
            return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

        summary["localisation"] = {"mean": nanmean(loc),
                                   **{k: nanmean(loc[m]) for k, m in kinds.items() if m.any()}}
    means = mean_maps(cams, faces.labels, faces.classes)
    if any(c in means for c in taxonomy.COMPOUND) and any(b in means for b in taxonomy.BASIC):
        table = similarity_table(means)
        summary["similarity"] = table.to_dict()
        summary["constituent_gap"] = {"correlation": constituent_gap(table, measure="correlation"),
                                      "overlap": constituent_gap(table, measure="overlap")}
    if out_dir is not None:
        from cfer.explain.figures import overlay_grid, region_bars, similarity_heatmap

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        order = [c for c in taxonomy.ALL_CLASSES if c in per_class][:max_grid]  # classes with faces here
        pick = [int(np.flatnonzero(np.asarray(names) == c)[0]) for c in order]
        imgs = faces.images[pick]
        fig = overlay_grid(imgs, cams[pick], order, columns=min(11, len(pick)),
                           suptitle=f"{title} Grad-CAM ({method})".strip())
        save_figure(fig, out / "overlays.png", dpi=110)
        save_figure(region_bars({c: per_class[c] for c in order}, title=f"{title} CAM energy per facial region".strip()),
                    out / "regions.png", dpi=110)
        if "similarity" in summary:
            save_figure(similarity_heatmap(table.correlation, table.compounds, table.basics,
                                           title=f"{title} mean-CAM correlation".strip()), out / "similarity.png", dpi=110)
        write_json(out / "explain.json", summary, indent=1)
        import matplotlib.pyplot as plt

        plt.close("all")
    return summary
