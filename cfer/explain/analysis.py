"""One call from a model and faces to maps, region attention and similarities.

:func:`analyse` computes Grad-CAM maps for every face (target: the face's own class when
the model has an output for it, otherwise the model's prediction), then the mean region
attention per class, the localisation score against the synthetic AU ground truth and
the compound x basic similarity of mean maps. It computes only; the figures are drawn by
:func:`cfer.explain.figures.save_analysis`.

Example:
    >>> from cfer.explain.analysis import analyse
    >>> result = analyse(model, classes=model_classes, faces=faces)      # doctest: +SKIP
    >>> result.summary["localisation"]["mean"]                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from cfer import taxonomy
from cfer.distributed import model_device
from cfer.explain.compare import SimilarityTable, constituent_gap, mean_maps, similarity_table
from cfer.explain.gradcam import empty_maps, explain
from cfer.explain.regions import canonical_region_map, localisation_score, region_attention

__all__ = ["Analysis", "analyse", "cam_targets"]

logger = logging.getLogger(__name__)


def cam_targets(model: nn.Module, x: torch.Tensor, face_classes: Sequence[str],
                model_classes: Sequence[str]) -> list[int]:
    """The unit to explain per face: its own class if the model has it, else the prediction
    (the model may be on any device: the faces go to its first parameter's)."""
    device = model_device(model)
    with torch.no_grad():
        was = model.training
        model.eval()
        pred = torch.cat([model(x[i:i + 256].to(device)).argmax(1) for i in range(0, len(x), 256)]).tolist()
        model.train(was)
    index = {c: i for i, c in enumerate(model_classes)}
    return [index.get(c, p) for c, p in zip(face_classes, pred)]


@dataclass
class Analysis:
    """What :func:`analyse` computed.

    Attributes:
        summary: JSON-serialisable summary (method, region attention per class,
            localisation, similarity and constituent gap where they apply).
        images: The explained faces, uint8 ``(N, H, W, C)``.
        cams: Their maps, float32 ``(N, H, W)`` in [0, 1].
        class_names: The class of each face.
        per_class: Mean region attention of each class present, in
            :data:`cfer.taxonomy.REGIONS` order.
        table: The compound x basic similarity of mean maps (None without both kinds).
    """

    summary: dict
    images: np.ndarray
    cams: np.ndarray
    class_names: list[str]
    per_class: dict[str, np.ndarray]
    table: SimilarityTable | None = None


def analyse(
    model: nn.Module,
    *,
    classes: Sequence[str],
    faces,  # noqa: ANN001 - a FaceDataset (SyntheticFaces for localisation)
    method: str = "gradcam",
) -> Analysis:
    """Maps, region attention per class, localisation and basic/compound similarity.

    Args:
        model: The classifier to explain.
        classes: Its output classes, in unit order.
        faces: Faces to explain; with ``region_map``/``aus`` (synthetic faces) the exact
            regions and AU ground truth are used, otherwise :func:`canonical_region_map`.
        method: CAM method (see :data:`cfer.explain.gradcam.METHODS`).

    Returns:
        An :class:`Analysis` (its ``summary`` is JSON-serialisable).
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
    empty = empty_maps(cams)
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
    table = None
    if any(c in means for c in taxonomy.COMPOUND) and any(b in means for b in taxonomy.BASIC):
        table = similarity_table(means)
        summary["similarity"] = table.to_dict()
        summary["constituent_gap"] = {"correlation": constituent_gap(table, measure="correlation"),
                                      "overlap": constituent_gap(table, measure="overlap")}
    return Analysis(summary=summary, images=faces.images, cams=cams, class_names=names, per_class=per_class,
                    table=table)
