"""Basic versus compound: mean maps per class and how a compound's map resembles its
constituents' maps.

For each compound class, its mean CAM is compared with the mean CAM of every basic
class by Pearson correlation and by the overlap (intersection over union) of the maps'
top 20% pixels. The question is whether a compound face draws on the regions of its
two constituents (a happily surprised face on happy's mouth and surprised's brows) more
than on the regions of the other basics: :func:`constituent_gap` reports the mean
similarity to the two constituents minus the mean similarity to the other four.

Example:
    >>> import numpy as np
    >>> a = np.zeros((4, 4)); a[:2] = 1
    >>> round(top_overlap(a, a), 2), round(correlation(a, a), 2)
    (1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfer import taxonomy

__all__ = ["mean_maps", "correlation", "top_overlap", "SimilarityTable", "similarity_table", "constituent_gap"]


def mean_maps(cams: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """Mean map of each class present (``labels`` index ``class_names``)."""
    cams, labels = np.asarray(cams), np.asarray(labels)
    return {class_names[c]: cams[labels == c].mean(0) for c in np.unique(labels)}


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (NaN when either is constant, e.g. an empty map)."""
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def top_overlap(a: np.ndarray, b: np.ndarray, *, fraction: float = 0.2) -> float:
    """Intersection over union of the top ``fraction`` pixels of two maps (NaN if one is empty)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    a, b = np.ravel(a), np.ravel(b)
    if not a.any() or not b.any():
        return float("nan")
    k = max(1, int(round(fraction * a.size)))
    ta, tb = set(np.argsort(-a, kind="stable")[:k]), set(np.argsort(-b, kind="stable")[:k])
    return len(ta & tb) / len(ta | tb)


@dataclass
class SimilarityTable:
    """Compound x basic similarity matrices."""

    compounds: list[str]
    basics: list[str]
    correlation: np.ndarray
    overlap: np.ndarray

    def to_dict(self) -> dict:
        return {"compounds": self.compounds, "basics": self.basics,
                "correlation": self.correlation.round(4).tolist(), "overlap": self.overlap.round(4).tolist()}


def similarity_table(means: dict[str, np.ndarray], *, fraction: float = 0.2) -> SimilarityTable:
    """Similarity of each compound class's mean map to each basic class's mean map."""
    compounds = [c for c in taxonomy.COMPOUND if c in means]
    basics = [b for b in taxonomy.BASIC if b in means]
    if not compounds or not basics:
        raise ValueError("need mean maps of at least one compound and one basic class")
    corr = np.array([[correlation(means[c], means[b]) for b in basics] for c in compounds])
    over = np.array([[top_overlap(means[c], means[b], fraction=fraction) for b in basics] for c in compounds])
    return SimilarityTable(compounds=compounds, basics=basics, correlation=corr, overlap=over)


def constituent_gap(table: SimilarityTable, *, measure: str = "correlation") -> dict[str, float]:
    """Per compound: mean similarity to its constituents minus mean similarity to other basics.

    Also returns ``"mean"``, the average over compounds. Positive: compound maps look
    more like their constituents' maps. Empty (all-zero) mean maps are left out.
    """
    mat = getattr(table, measure)
    out = {}
    for i, c in enumerate(table.compounds):
        cons = [table.basics.index(b) for b in taxonomy.CONSTITUENTS[c] if b in table.basics]
        rest = [j for j in range(len(table.basics)) if j not in cons]
        if cons and rest and np.isfinite(mat[i, cons]).any() and np.isfinite(mat[i, rest]).any():
            out[c] = float(np.nanmean(mat[i, cons]) - np.nanmean(mat[i, rest]))
    out["mean"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out
