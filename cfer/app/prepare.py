"""The data of one run: faces loaded (or rendered), split by person, classes assigned.

:func:`prepare_data` turns a :class:`~cfer.app.config.RunConfig` into train / validation /
test faces from disjoint subjects, the basic classes (the teacher's), the compound
classes of the stream and the compound classes held out for few-shot episodes (no
encoder ever trains on those). Every problem the data has for the run (a class that is
missing, too few compound classes for the episodes, too few test faces per class) is
reported here, before any training, with the option that fixes it.

:func:`check_inputs` checks what the config names outside itself (the data path, the
face cascade, the architecture, the weights file) before any work starts.

Example:
    >>> from cfer.app.config_io import config_from_dict
    >>> cfg = config_from_dict({"data": {"synthetic_subjects": [3, 2, 4], "synthetic_per_class": 4}})
    >>> data = prepare_data(cfg)
    >>> len(data.basic), len(data.compound), len(data.holdout)
    (6, 10, 5)
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cfer import taxonomy
from cfer.app.config import RunConfig
from cfer.app.config_checks import MEMBER_PREFIX
from cfer.app.config_student import SYNTHETIC_POOL
from cfer.cliplayout import ClipLayout
from cfer.data.base import FaceDataset

__all__ = ["RunData", "check_inputs", "prepare_data", "load_dataset", "split_run_data"]

logger = logging.getLogger(__name__)


@dataclass
class RunData:
    """Faces and class roles of a run.

    Attributes:
        train, val, test: Subject-disjoint splits (all classes).
        basic: The teacher's classes, in output order.
        compound: The stream's compound classes (the default order is drawn later).
        holdout: Compound classes used only for few-shot episodes.
        source: A one-line description of where the faces come from.
        unused: Faces per class of the classes the data has but no stage uses (e.g.
            ``neutral`` with the default basic classes), reported rather than dropped silently.
        skipped: Items the reader left out, per reason (bad items with ``skip_invalid``,
            files of unsupported formats, repeated entries): ``FaceDataset.skipped``.
    """

    train: FaceDataset
    val: FaceDataset
    test: FaceDataset
    basic: tuple[str, ...]
    compound: tuple[str, ...]
    holdout: tuple[str, ...]
    source: str
    unused: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def fewshot_classes(self) -> tuple[str, ...]:
        """Classes of the episodes: the hold-out, or the stream's compound classes without one."""
        return self.holdout or self.compound


def _check_member(member: str, arch: str) -> None:
    """``member:NAME``'s name or index against the ensemble arch's members."""
    from cfer.models.ensemble_arch import parse_ensemble_arch

    parsed = parse_ensemble_arch(arch)
    names, sizes = list(parsed["members"]), parsed["img_sizes"]
    shown = [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]  # as the report names them
    if member == "best" and any(sizes):  # chosen on the validation faces once the teacher is trained
        raise ValueError(f"model.student_arch member:best picks among all members of {arch!r}, and some resize "
                         "their input (@size), so cannot stand alone as the student; name a member without @size")
    index = (0 if member == "best" else int(member) if member.isdigit() else shown.index(member) if member in shown
             else names.index(member) if member in names else None)
    if index is None or index >= len(names):
        raise ValueError(f"model.student_arch member:{member} is not a member of {arch!r}; its members are "
                         f"{', '.join(f'{i}: {n}' for i, n in enumerate(shown))} (write member:NAME, member:INDEX or "
                         "member:best)")
    if sizes[index] is not None:
        raise ValueError(f"model.student_arch member:{member}: that member resizes its input (@{sizes[index]}), so "
                         "it cannot stand alone as the student; pick a member without @size")
    if parsed.get("proj_dim"):
        raise ValueError(f"model.student_arch member:{member}: the members of {arch!r} project their features "
                         "(proj_dim), so none can stand alone as the student; drop proj_dim from model.arch")


def check_inputs(config: RunConfig) -> None:
    """Check what the config names outside itself, before any work starts.

    The data path and the RAF-DB basic folder must exist, the face cascade must be one
    OpenCV ships, the architecture must be a cfer or timm model, and a weights file must
    exist, and the logger's package must be installed. (The config itself is plain data:
    it loads anywhere.)

    Raises:
        ValueError: Naming the key and the fix.
    """
    from cfer.continual.loggers import check_logger

    check_logger(config.continual.logger, installed=True)
    d, m = config.data, config.model
    if d.path is not None and not Path(d.path).exists():
        raise ValueError(f"data.path {d.path!r} does not exist; give the dataset folder or CSV file "
                         "(or drop --data to use the synthetic faces)")
    if d.rafdb_basic is not None and not Path(d.rafdb_basic).is_dir():
        raise ValueError(f"data.rafdb_basic {d.rafdb_basic!r} is not a folder; give the basic RAF-DB "
                         "folder that holds EmoLabel/ and Image/")
    if d.crop_faces or d.align_faces:
        from cfer.data.align import face_cropper
        from cfer.data.faces import FaceDetectorUnavailableError, shipped_cascades

        shipped = shipped_cascades()
        if d.crop_faces and shipped and d.crop_cascade not in shipped:
            raise ValueError(f"unknown data.crop_cascade {d.crop_cascade!r}; OpenCV ships "
                             f"{[c for c in shipped if 'face' in c]}")
        try:
            face_cropper(crop=d.crop_faces, align=d.align_faces, margin=d.crop_margin,
                         min_neighbors=d.crop_min_neighbors, cascade=d.crop_cascade).load()
        except FaceDetectorUnavailableError as exc:
            raise ValueError(f"data.crop_* / data.align_faces: {exc}") from None
    import timm

    import cfer.models
    from cfer.models.backbones import suggestions

    pool = config.student.pool
    if pool is not None and pool != SYNTHETIC_POOL and not Path(pool).is_dir():
        raise ValueError(f"student.pool {pool!r} is not a folder; give a folder of face images, "
                         f"{SYNTHETIC_POOL!r} (rendered faces of other people) or drop --distil-pool")
    for key, arch in (("model.arch", m.arch), ("model.student_arch", m.student_arch)):
        if arch is None:
            continue
        if key == "model.student_arch" and arch.startswith(MEMBER_PREFIX):
            _check_member(arch[len(MEMBER_PREFIX):].strip(), m.arch)
            continue
        if cfer.models.is_ensemble_arch(arch):
            from cfer.models.ensemble_arch import parse_ensemble_arch

            try:
                parse_ensemble_arch(arch)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        elif not timm.is_model(arch):
            raise ValueError(f"unknown {key} {arch!r}; close names: {suggestions(arch)}; "
                             f"cfer's models: {list(cfer.models.CFER_MODELS)}")
    if m.weights is not None:
        if not Path(m.weights).is_file() and not cfer.models.is_hub_weights(m.weights):
            raise ValueError(f"model.weights {m.weights!r} is not a file; give a local .pt/.pth/.safetensors "
                             "file, hub weights (hf-hub:ORG/NAME or a timm tag such as resnet50.a1_in1k), "
                             "or drop --weights")
        from cfer.models.backbones import create_backbone

        try:  # a file of another architecture (or no weights at all) fails here, not after the data is read
            create_backbone(m.arch, in_chans=1 if d.grey else 3, img_size=d.image_size, weights=m.weights)
        except ValueError as exc:
            raise ValueError(f"model.weights: {exc}") from None
    if m.freeze_stages:
        if cfer.models.is_ensemble_arch(m.arch):
            raise ValueError("model.freeze_stages does not apply to an ensemble; drop --freeze-stages")
        from cfer.models.backbones import create_backbone

        try:  # a count the architecture does not have fails here
            cfer.models.freeze_stages(create_backbone(m.arch, in_chans=1 if d.grey else 3, img_size=d.image_size),
                                      stages=m.freeze_stages)
        except ValueError as exc:
            raise ValueError(f"model.freeze_stages: {exc}") from None


def clip_layout(config: RunConfig) -> ClipLayout:
    """The :class:`~cfer.cliplayout.ClipLayout` of a run on clips: 8 frames at ``data.image_size``."""
    return ClipLayout(frames=8, image_size=config.data.image_size, channels=1 if config.data.grey else 3)


def load_dataset(config: RunConfig, *, progress: bool = False) -> FaceDataset:
    """Read the user's dataset as the config says (``data.path`` must be set), through
    :func:`cfer.data.readers.read_dataset`, or :func:`cfer.data.video.read_clip_manifest` for
    ``data.format: clips`` (clips decoded lazily)."""
    from cfer.data.readers import read_dataset

    d = config.data
    if d.path is None:
        raise ValueError("load_dataset needs data.path; synthetic faces are rendered by prepare_data")
    from cfer.data.align import face_cropper

    crop = face_cropper(crop=d.crop_faces, align=d.align_faces, margin=d.crop_margin,
                        min_neighbors=d.crop_min_neighbors, cascade=d.crop_cascade)
    common = dict(format=d.format, image_size=d.image_size, channels=1 if d.grey else 3, progress=progress,
                  skip_invalid=d.skip_invalid, crop_faces=crop, subject_pattern=d.subject_pattern)
    if d.format == "clips":
        from cfer.data.video import read_clip_manifest

        # A clip shorter than the layout's 8 frames repeats some (uniformly spaced) instead of failing.
        return read_clip_manifest(d.path, layout=clip_layout(config), crop_faces=crop, skip_invalid=d.skip_invalid,
                                  min_frames=2)
    if d.format == "rafdb":
        return _concat(read_dataset(d.rafdb_basic, subset="basic", **common),
                       read_dataset(d.path, subset="compound", **common))
    return read_dataset(d.path, **common)


def _concat(a: FaceDataset, b: FaceDataset) -> FaceDataset:
    """Two datasets as one (labels re-indexed into the union of their classes)."""
    classes = tuple(dict.fromkeys([*a.classes, *b.classes]))
    index = {c: i for i, c in enumerate(classes)}

    def col(name: str):  # noqa: ANN202
        x, y = getattr(a, name), getattr(b, name)
        return None if x is None or y is None else [*x, *y]

    return FaceDataset(images=np.concatenate([a.images, b.images]), classes=classes,
                       labels=np.concatenate([[index[a.classes[i]] for i in a.labels],
                                              [index[b.classes[i]] for i in b.labels]]).astype(np.int64),
                       subjects=col("subjects"), splits=col("splits"), paths=col("paths"),
                       skipped=dict(Counter(a.skipped) + Counter(b.skipped)))


def split_run_data(ds: FaceDataset, *, config: RunConfig) -> dict[str, FaceDataset]:
    """Train, validation and test faces from disjoint subjects, as a run makes them: the
    data's own split column when it has one (validation carved from train by subject when
    it has none), else subject shares ``config.data.split``.

    Raises:
        ValueError: If the data has neither subjects nor splits, or its splits lack train
            or test; the message names the command-line option that fixes it.
    """
    from cfer.data.splits import apply_split, subject_split

    if ds.splits is None:
        if ds.subjects is None:
            raise ValueError("the data has neither subject ids nor a split column, so person-disjoint splits "
                             "cannot be made; give --subject-pattern (imagefolder) or a 'subject' column (csv)")
        return apply_split(ds, fractions=config.data.split, seed=config.seed)
    parts = apply_split(ds, seed=config.seed)
    if "train" not in parts or "test" not in parts:
        raise ValueError(f"the data's own splits are {sorted(parts)}; cfer needs 'train' and 'test' "
                         "(and uses 'val' when present)")
    if "val" not in parts:
        train = parts["train"]
        if train.subjects is not None:
            names = subject_split(subjects=train.subjects, labels=train.labels, fractions=(0.8, 0.2),
                                  names=("train", "val"), seed=config.seed)
        else:
            logger.warning("no 'val' split and no subject ids: validation items are drawn at random from 'train' "
                           "(the same person may appear in both)")
            names = np.where(np.random.default_rng(config.seed).random(len(train)) < 0.2, "val", "train")
        parts = {"train": train.subset(np.flatnonzero(names == "train")),
                 "val": train.subset(np.flatnonzero(names == "val")), "test": parts["test"]}
    if hasattr(parts["train"], "with_train"):  # clips: random temporal crops for training
        parts["train"] = parts["train"].with_train(True)
    return {k: parts[k] for k in ("train", "val", "test")}


def _present(ds: FaceDataset) -> set[str]:
    return {ds.classes[i] for i in np.unique(ds.labels)}


def prepare_data(config: RunConfig, *, progress: bool = False) -> RunData:
    """Load or render the faces, split them by person and assign the class roles.

    Args:
        config: The run's configuration.
        progress: Show progress bars while reading images.

    Returns:
        A :class:`RunData`.

    Raises:
        ValueError: If the data lacks a class the run needs, has too few compound classes
            or too few test faces for the episodes; the message names the option to change.
    """
    basic = config.classes.basic
    fs = config.fewshot
    if config.data.path is None:
        from cfer.data.synthetic import make_synthetic_splits

        wanted = [*basic, *(config.classes.compound or taxonomy.COMPOUND)]
        d = config.data
        parts = make_synthetic_splits(classes=wanted, subjects=tuple(d.synthetic_subjects),
                                      per_class=d.synthetic_per_class, image_size=d.image_size,
                                      channels=1 if d.grey else 3, difficulty=d.synthetic_difficulty,
                                      seed=config.seed, progress=progress)
        source = (f"synthetic FACS faces, {d.image_size} px, subjects {list(d.synthetic_subjects)} "
                  f"(train/val/test), {d.synthetic_per_class} per class per subject")
        skipped: dict[str, int] = {}
    else:
        loaded = load_dataset(config, progress=progress)
        skipped = dict(loaded.skipped)
        parts = split_run_data(loaded, config=config)
        source = f"{config.data.format} data at {Path(config.data.path)}"
    train, val, test = parts["train"], parts["val"], parts["test"]
    have = _present(train)
    missing = [c for c in basic if c not in have or c not in _present(val) or c not in _present(test)]
    if missing:
        raise ValueError(f"basic classes {missing} lack train, validation or test faces (train has "
                         f"{sorted(have)}); choose the basic classes with --basic")
    if config.classes.compound is not None:
        absent = [c for c in config.classes.compound if c not in have]
        if absent:
            raise ValueError(f"compound classes {absent} have no training faces; drop them from --compound")
        compound = tuple(config.classes.compound)
    else:
        compound = tuple(c for c in taxonomy.COMPOUND if c in have and c not in basic)
    if not compound:
        raise ValueError(_no_later_classes(have))
    holdout: tuple[str, ...] = ()
    if fs.holdout:
        if config.continual.order is not None:
            pool = [c for c in compound if c not in config.continual.order]
            if len(pool) < fs.holdout:
                raise ValueError(f"continual.order names {len(config.continual.order)} classes, leaving "
                                 f"{len(pool)} of {len(compound)} for a few-shot hold-out of {fs.holdout}; "
                                 "drop classes from the order or set --holdout 0")
            rng_pool = pool
        else:
            rng_pool = list(compound)
        if len(compound) - fs.holdout < 1:
            ways = (f" (the episodes then draw from the stream's {len(compound)} compound classes: also pass "
                    f"--ways {len(compound)} or fewer)" if len(compound) < fs.ways else "")
            raise ValueError(f"a few-shot hold-out of {fs.holdout} leaves no compound class for the stream "
                             f"(the data has {len(compound)}); lower --holdout, or set it to 0{ways}")
        pick = np.random.default_rng(config.seed).choice(len(rng_pool), size=fs.holdout, replace=False)
        holdout = tuple(sorted((rng_pool[i] for i in pick), key=taxonomy.COMPOUND.index))
        compound = tuple(c for c in compound if c not in holdout)
    if config.continual.order is not None and sorted(config.continual.order) != sorted(compound):
        raise ValueError(f"continual.order {list(config.continual.order)} must list exactly the stream's compound "
                         f"classes {list(compound)}")
    _check_stream_classes(parts, compound)
    episodes = holdout or compound
    if len(episodes) < fs.ways:
        raise ValueError(f"{fs.ways}-way episodes need {fs.ways} classes but only {len(episodes)} are available "
                         f"({list(episodes)}); lower --ways")
    need = max(fs.shots) + fs.queries
    counts = test.counts()
    short = {c: counts.get(c, 0) for c in episodes if counts.get(c, 0) < need}
    if short:
        raise ValueError(f"few-shot episodes need {need} test faces per class ({max(fs.shots)} shots + "
                         f"{fs.queries} queries); these have fewer: {short}. Lower --shots or --queries, or give "
                         "more test subjects")
    unused = _unused(parts, used={*basic, *compound, *holdout})
    if unused:
        logger.warning("data: faces of classes no stage uses are left out: %s; add them with --basic or --compound "
                       "to use them", ", ".join(f"{k} ({v})" for k, v in unused.items()))
    if skipped:
        logger.info("data: the reader left out %d items (%s); they are counted in metrics.json",
                    sum(skipped.values()), ", ".join(f"{v} {k}" for k, v in skipped.items()))
    logger.info("data: %s; %d/%d/%d faces; stream %d compound, hold-out %s", source, len(train), len(val),
                len(test), len(compound), list(holdout))
    return RunData(train=train, val=val, test=test, basic=tuple(basic), compound=compound, holdout=holdout,
                   source=source, unused=unused, skipped=skipped)


def _no_later_classes(have: set[str]) -> str:
    """The error for data without a class to learn after the teacher's, with the split that makes one."""
    ordered = [c for c in taxonomy.ALL_CLASSES if c in have]
    msg = (f"the data has no compound class (it has {ordered}); a continual run needs at least one class after "
           "the basic ones")
    if len(ordered) < 4:
        return f"{msg}; add classes to the data"
    cut = len(ordered) - len(ordered) // 2
    first, later = ordered[:cut], ordered[cut:]
    return (f"{msg}. For basic expressions only (e.g. CK+), learn some of them first and the rest step by step: "
            f"--basic {','.join(first)} --compound {','.join(later)} --holdout 0 --ways {min(len(later), 5)} "
            "(few-shot episodes then draw from the later classes, which the student has trained on)")


def _unused(parts: dict[str, FaceDataset], *, used: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ds in parts.values():
        for name, n in ds.counts().items():
            if n and name not in used:
                counts[name] = counts.get(name, 0) + n
    return {c: counts[c] for c in taxonomy.ALL_CLASSES if c in counts}


def _check_stream_classes(parts: dict[str, FaceDataset], compound: tuple[str, ...]) -> None:
    """Every class of the stream needs faces in train, validation and test (the stream has
    one experience of each per step): say which do not, before the teacher trains."""
    counts = {name: ds.counts() for name, ds in parts.items()}
    short = {c: {name: counts[name].get(c, 0) for name in ("train", "val", "test")} for c in compound}
    short = {c: n for c, n in short.items() if min(n.values()) == 0}
    if short:
        keep = [c for c in compound if c not in short]
        detail = "; ".join(f"{c}: " + ", ".join(f"{k} {v}" for k, v in n.items()) for c, n in short.items())
        drop = (f"drop them with --compound {','.join(keep)}" if keep else
                "the stream would have no compound class left without them")
        raise ValueError(f"compound classes lack faces in a split the stream needs (train, val and test, from "
                         f"different people): {detail}. Give those classes faces of more people, {drop}, or change "
                         "data.split (--config) or the data's split column")
