"""Which facial regions a CAM attends to, and how well it finds the AUs a face shows.

* :func:`region_attention`: the share of a map's energy (its sum) that falls in each of
  :data:`cfer.taxonomy.REGIONS`; the shares sum to at most 1 (the rest lies outside
  every region: background, hair, occluders).
* :func:`canonical_region_map`: a region template for real, aligned face crops, made by
  rendering many synthetic identities upright with no nuisance and taking, per pixel,
  the region most of them put there. It assumes a frontal face centred in the crop and
  filling about the same share of it as cfer's synthetic faces (eyes at ~40% of the
  height, mouth at ~72%), as aligned crops such as RAF-DB's ``aligned`` images roughly
  do. Its limits: head pose, crop margins and face shape move real regions by several
  pixels, so read small differences between neighbouring regions with care.
* :func:`localisation_score`: the share of CAM energy inside the regions of the AUs an
  image actually shows, divided by the share a uniform map would get (the regions'
  area fraction). 1 means no better than uniform; higher is better.

Example:
    >>> import numpy as np
    >>> cam = np.zeros((1, 4, 4)); cam[0, 0, 0] = 1.0
    >>> regions = np.zeros((1, 4, 4), np.uint8); regions[0, :2, :2] = 7   # 'chin'
    >>> region_attention(cam, regions)[0].round(2).tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from cfer import taxonomy

__all__ = ["region_attention", "canonical_region_map", "localisation_score", "shown_regions"]


def region_attention(cams: np.ndarray, region_map: np.ndarray) -> np.ndarray:
    """Share of each map's energy in each region.

    Args:
        cams: ``(B, H, W)`` non-negative maps.
        region_map: ``(B, H, W)`` or ``(H, W)`` uint8 labels (0 = none, ``k`` =
            ``REGIONS[k-1]``), e.g. ``SyntheticFaces.region_map`` or
            :func:`canonical_region_map`.

    Returns:
        ``(B, len(REGIONS))`` shares in [0, 1], each row summing to at most 1.
    """
    cams = np.asarray(cams, np.float64)
    if cams.ndim != 3:
        raise ValueError(f"cams must be (B, H, W), got shape {cams.shape}")
    if (cams < 0).any():
        raise ValueError("cams must be non-negative (CAM maps in [0, 1])")
    reg = np.broadcast_to(np.asarray(region_map), cams.shape)
    total = cams.sum((1, 2))
    out = np.zeros((len(cams), len(taxonomy.REGIONS)))
    for k in range(len(taxonomy.REGIONS)):
        out[:, k] = (cams * (reg == k + 1)).sum((1, 2))
    return out / np.maximum(total, 1e-12)[:, None]


@lru_cache(maxsize=8)
def _template(size: int) -> np.ndarray:
    from cfer.data.synthetic import render_faces

    faces = render_faces(classes=["neutral"], n_subjects=64, per_class=1, image_size=size, difficulty=0.0, seed=4242)
    counts = np.stack([(faces.region_map == k).sum(0) for k in range(len(taxonomy.REGIONS) + 1)])
    return counts.argmax(0).astype(np.uint8)


def canonical_region_map(size: int = 64) -> np.ndarray:
    """Region template ``(size, size)`` for aligned frontal face crops (see module notes)."""
    if not 16 <= size <= 512:
        raise ValueError(f"size must lie in [16, 512], got {size}")
    return _template(int(size)).copy()


def shown_regions(aus: np.ndarray, *, threshold: float = 0.2) -> list[tuple[str, ...]]:
    """The regions of the AUs each image shows (intensity above ``threshold``).

    Args:
        aus: ``(B, len(taxonomy.AUS))`` intensities, e.g. ``SyntheticFaces.aus``.
        threshold: Minimum intensity for an AU to count as shown.
    """
    out = []
    for row in np.asarray(aus):
        regs = {r for au, v in zip(taxonomy.AUS, row) if v > threshold for r in taxonomy.AU_REGIONS[au]}
        out.append(tuple(r for r in taxonomy.REGIONS if r in regs))
    return out


def localisation_score(cams: np.ndarray, region_map: np.ndarray, aus: np.ndarray, *,
                       threshold: float = 0.2) -> np.ndarray:
    """Energy share inside the shown AUs' regions over a uniform map's share, per image.

    Images that show no AU (neutral faces) and empty maps (Grad-CAM found no positive
    evidence for the target: the map is all zero) get NaN.
    """
    att = region_attention(cams, region_map)
    reg = np.broadcast_to(np.asarray(region_map), np.asarray(cams).shape)
    area = np.stack([(reg == k + 1).mean((1, 2)) for k in range(len(taxonomy.REGIONS))], 1)
    out = np.full(len(att), np.nan)
    empty = np.asarray(cams).reshape(len(att), -1).sum(1) == 0
    for i, names in enumerate(shown_regions(aus, threshold=threshold)):
        if not names or empty[i]:
            continue
        idx = [taxonomy.REGIONS.index(n) for n in names]
        uniform = area[i, idx].sum()
        if uniform > 0:
            out[i] = att[i, idx].sum() / uniform
    return out
