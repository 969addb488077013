"""Synthetic faces as a :class:`~cfer.data.FaceDataset`: :func:`render_faces` draws every
class for every subject, :func:`make_synthetic_splits` three subject-disjoint splits.

Example:
    >>> from cfer.data.synthetic import make_synthetic_splits
    >>> sp = make_synthetic_splits(classes="basic", subjects=(2, 1, 1), per_class=1)
    >>> sorted(sp), len(sp["train"])
    (['test', 'train', 'val'], 12)
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from cfer import taxonomy
from cfer.data.base import FaceDataset
from cfer.data.synthetic.config import SynthConfig
from cfer.data.synthetic.renderer import FaceRenderer
from cfer.data.synthetic.sampling import (
    _DIFFICULTY_SCALE,
    _IDENTITY_KEYS,
    _sample_aus,
    _sample_identity,
    _sample_nuisance,
)

__all__ = ["SyntheticFaces", "render_faces", "make_synthetic_splits"]

logger = logging.getLogger(__name__)


class SyntheticFaces(FaceDataset):
    """A :class:`~cfer.data.FaceDataset` of rendered faces with AU and region ground truth.

    Attributes:
        aus: float32 ``(N, len(taxonomy.AUS))`` AU intensities actually rendered.
        region_map: uint8 ``(N, H, W)``; 0 for no region, ``k`` for
            ``taxonomy.REGIONS[k - 1]``. Occluded pixels belong to no region.
        config: The :class:`SynthConfig` the faces were drawn with.
    """

    def __init__(self, *, aus: np.ndarray, region_map: np.ndarray, config: SynthConfig, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        if len(aus) != len(self) or len(region_map) != len(self):
            raise ValueError("aus and region_map must have one entry per image")
        self.aus = np.asarray(aus, np.float32)
        self.region_map = np.asarray(region_map, np.uint8)
        self.config = config

    @property
    def au_names(self) -> tuple[int, ...]:
        """The AU number of each column of :attr:`aus`."""
        return taxonomy.AUS

    @property
    def masks(self) -> np.ndarray:
        """Boolean region masks ``(N, len(REGIONS), H, W)``, aligned with the images."""
        ks = np.arange(1, len(taxonomy.REGIONS) + 1, dtype=np.uint8)
        return self.region_map[:, None, :, :] == ks[None, :, None, None]

    def region_mask(self, name: str) -> np.ndarray:
        """Boolean mask ``(N, H, W)`` of one region, e.g. ``"mouth"``."""
        if name not in taxonomy.REGIONS:
            raise ValueError(f"unknown region {name!r}; regions: {list(taxonomy.REGIONS)}")
        return self.region_map == taxonomy.REGIONS.index(name) + 1

    def _take(self, idx: np.ndarray) -> "SyntheticFaces":
        base = super()._take(idx)
        return SyntheticFaces(
            aus=self.aus[idx], region_map=self.region_map[idx], config=self.config,
            images=base.images, labels=base.labels, classes=base.classes, subjects=base.subjects,
            splits=base.splits, paths=base.paths, transform=base.transform, skipped=base.skipped,
        )


def _resolve_classes(classes: Sequence[str] | str | None) -> tuple[str, ...]:
    if classes is None or classes == "all":
        return taxonomy.ALL_CLASSES
    if isinstance(classes, str):
        groups = {"basic": taxonomy.BASIC, "compound": taxonomy.COMPOUND,
                  "basic+neutral": (taxonomy.NEUTRAL, *taxonomy.BASIC)}
        if classes in groups:
            return groups[classes]
        return (taxonomy.normalize(classes),)
    out = taxonomy.normalize_many(list(classes))
    if not out:
        raise ValueError("classes is empty; give class names, 'basic', 'compound' or 'all'")
    return out


def render_faces(
    *,
    classes: Sequence[str] | str | None = None,
    n_subjects: int = 20,
    per_class: int = 5,
    image_size: int = 64,
    channels: int = 3,
    difficulty: float = 1.0,
    occlusion: float = 0.0,
    seed: int = 0,
    first_subject: int = 0,
    split: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> SyntheticFaces:
    """Render every class for every subject.

    Subject ``k``'s identity depends only on ``(seed, k)``, so subject ranges drawn in
    separate calls (see :func:`make_synthetic_splits`) are different people and the same
    call always returns the same faces.

    Args:
        classes: Class names, or ``"basic"``, ``"compound"``, ``"basic+neutral"``,
            ``"all"`` (default: all 22).
        n_subjects: Number of identities.
        per_class: Faces of each class per subject.
        image_size: Side of the square images.
        channels: 3 (RGB) or 1 (grey).
        difficulty: Nuisance and AU-spread scale (see :class:`SynthConfig`).
        occlusion: Probability of an occluding patch per face.
        seed: Seed for identities, expressions and nuisances.
        first_subject: Id of the first subject (subject ids are ``first_subject + k``).
        split: Optional split name stored on every item.
        batch_size: Faces rendered per vectorised batch (memory vs. speed).
        progress: Show a tqdm progress bar.

    Returns:
        A :class:`SyntheticFaces` with ``N = n_subjects * len(classes) * per_class`` items,
        labels indexing ``classes`` and subject ids ``"s0000"``...

    Example:
        >>> faces = render_faces(classes="basic", n_subjects=2, per_class=1, seed=3)
        >>> faces.classes[:2], len(faces)
        (('happy', 'sad'), 12)
    """
    cls = _resolve_classes(classes)
    cfg = SynthConfig(image_size=image_size, channels=channels, difficulty=difficulty, occlusion=occlusion)
    for name, v in (("n_subjects", n_subjects), ("per_class", per_class), ("batch_size", batch_size)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if first_subject < 0:
        raise ValueError(f"first_subject must be >= 0, got {first_subject}")
    renderer = FaceRenderer(config=cfg)
    d = float(difficulty) * _DIFFICULTY_SCALE

    # 1. Parameters, subject by subject (each from its own seeded stream).
    idents, aus, nuis, labels, subjects = [], [], [], [], []
    for k in range(first_subject, first_subject + n_subjects):
        rng_id = np.random.default_rng([seed, 0, k])
        ident = _sample_identity(rng_id, d)
        rng = np.random.default_rng([seed, 1, k])
        n_k = len(cls) * per_class
        lab = np.repeat(np.arange(len(cls)), per_class)
        au_k = np.concatenate([_sample_aus(rng, c, per_class, d, ident["gain"]) for c in cls])
        nuis.append(_sample_nuisance(rng, n_k, cfg))
        idents.append({key: np.full(n_k, ident[key], np.float32) for key in _IDENTITY_KEYS})
        aus.append(au_k)
        labels.append(lab)
        subjects.extend([f"s{k:04d}"] * n_k)
    identity = {key: np.concatenate([i[key] for i in idents]) for key in _IDENTITY_KEYS}
    nuisance = {key: np.concatenate([n[key] for n in nuis]) for key in nuis[0]}
    au_all = np.concatenate(aus)
    label_all = np.concatenate(labels)
    n = len(label_all)

    # 2. Render in batches.
    S, C = cfg.image_size, cfg.channels
    images = np.empty((n, S, S, C), np.uint8)
    region_map = np.empty((n, S, S), np.uint8)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="rendering faces", unit="batch")
    for b0 in starts:
        sl = slice(b0, min(n, b0 + batch_size))
        img, reg = renderer.render(
            identity={k: v[sl] for k, v in identity.items()},
            aus=au_all[sl],
            nuisance={k: v[sl] for k, v in nuisance.items()},
        )
        images[sl], region_map[sl] = img, reg
    logger.debug("rendered %d faces (%d subjects x %d classes x %d)", n, n_subjects, len(cls), per_class)
    return SyntheticFaces(
        images=images, labels=label_all, classes=cls, subjects=subjects,
        splits=None if split is None else [split] * n,
        aus=au_all, region_map=region_map, config=cfg,
    )


def make_synthetic_splits(
    *,
    classes: Sequence[str] | str | None = None,
    subjects: tuple[int, int, int] = (24, 8, 8),
    per_class: int = 5,
    image_size: int = 64,
    channels: int = 3,
    difficulty: float = 1.0,
    occlusion: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, SyntheticFaces]:
    """Train, validation and test sets with disjoint subjects.

    Args:
        classes: As in :func:`render_faces`.
        subjects: Number of subjects in train, val and test.
        per_class: Faces per class per subject.
        image_size: Side of the square images.
        channels: 3 (RGB) or 1 (grey).
        difficulty: Nuisance and AU-spread scale.
        occlusion: Probability of an occluding patch per face.
        seed: One seed for all three splits.
        progress: Show progress bars.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``; no subject appears in two of them.

    Example:
        >>> sp = make_synthetic_splits(classes="basic", subjects=(2, 1, 1), per_class=1)
        >>> sorted(sp), len(sp["train"])
        (['test', 'train', 'val'], 12)
    """
    if len(subjects) != 3 or any((not isinstance(s, (int, np.integer))) or s < 1 for s in subjects):
        raise ValueError(f"subjects must be three positive ints (train, val, test), got {subjects!r}")
    out: dict[str, SyntheticFaces] = {}
    first = 0
    for name, count in zip(("train", "val", "test"), subjects):
        out[name] = render_faces(
            classes=classes, n_subjects=int(count), per_class=per_class, image_size=image_size,
            channels=channels, difficulty=difficulty, occlusion=occlusion, seed=seed,
            first_subject=first, split=name, progress=progress,
        )
        first += int(count)
    return out
