"""The basic -> compound stream as an Avalanche benchmark.

The first experience holds the basic classes (neutral optional); every later experience
adds about ``per_step`` compound classes (``per_step=1`` is the published protocol:
one new class per step). The compound classes are spread evenly: ``n / per_step``
steps, rounded (at least one), whose sizes differ by at most one, larger steps first
(10 classes at 3 per step: 4, 3, 3, not 3, 3, 3, 1), so no step is a lone class that
scores 1.0 because it has no rival. Class ids are remapped in order of arrival, so output unit ``j`` of a growing
head is ``stream.class_names[j]``. Train, validation and test sets are
subject-disjoint (they come from different people) and the validation stream follows
the same class order; nothing is ever tuned on the test stream.

Example:
    >>> from cfer.continual.stream import synthetic_stream
    >>> stream = synthetic_stream(subjects=(3, 1, 1), per_class=1, compound=["awed", "hatred"])
    >>> [len(c) for c in stream.step_classes], stream.class_names[-2:]
    ([6, 1, 1], ('awed', 'hatred'))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from cfer import taxonomy
from cfer.data.base import FaceDataset

__all__ = ["CompoundStream", "compound_orders", "make_stream", "step_sizes", "synthetic_stream"]

logger = logging.getLogger(__name__)


@dataclass
class CompoundStream:
    """A basic -> compound benchmark and what describes it.

    Attributes:
        benchmark: The Avalanche benchmark: ``train_stream``, ``test_stream`` and, when
            built with validation faces, ``valid_stream`` (same class order, other people).
        class_names: Class name of each output unit (arrival order).
        step_classes: Unit ids of the classes each experience introduces.
        compound_order: The order of the compound classes.
    """

    benchmark: object
    class_names: tuple[str, ...]
    step_classes: list[tuple[int, ...]]
    compound_order: tuple[str, ...]
    meta: dict = field(default_factory=dict)

    @property
    def train_stream(self):  # noqa: ANN201
        return self.benchmark.train_stream

    @property
    def test_stream(self):  # noqa: ANN201
        return self.benchmark.test_stream

    @property
    def val_stream(self):  # noqa: ANN201
        """The validation experiences (Avalanche's ``valid_stream``), or None without validation faces."""
        return getattr(self.benchmark, "valid_stream", None)

    @property
    def n_steps(self) -> int:
        """Number of experiences, the basic one included."""
        return len(self.step_classes)

    @property
    def n_basic(self) -> int:
        """Number of classes in the first (basic) experience."""
        return len(self.step_classes[0])


def compound_orders(*, classes: Sequence[str] | None = None, n_orders: int = 3, seed: int = 0) -> list[tuple[str, ...]]:
    """``n_orders`` seeded random orders of the compound classes.

    Args:
        classes: Compound class names (default: all 15).
        n_orders: How many orders.
        seed: Seed of a private generator (the global RNG is untouched).

    Example:
        >>> a = compound_orders(n_orders=2, seed=1)
        >>> len(a), sorted(a[0]) == sorted(a[1]), a == compound_orders(n_orders=2, seed=1)
        (2, True, True)
    """
    names = taxonomy.COMPOUND if classes is None else taxonomy.normalize_many(list(classes))
    if n_orders < 1:
        raise ValueError(f"n_orders must be >= 1, got {n_orders}")
    rng = np.random.default_rng(seed)
    return [tuple(names[i] for i in rng.permutation(len(names))) for _ in range(n_orders)]


def step_sizes(n: int, per_step: int) -> list[int]:
    """The sizes of the compound steps: ``n`` classes spread evenly over ``n / per_step``
    steps, rounded half up (at least one step).

    Sizes differ by at most one, larger steps first; ``per_step=1`` is one class a step.

    Example:
        >>> step_sizes(10, 3), step_sizes(10, 4), step_sizes(5, 1)
        ([4, 3, 3], [4, 3, 3], [1, 1, 1, 1, 1])
    """
    steps = max(1, (2 * n + per_step) // (2 * per_step))
    base, extra = divmod(n, steps)
    return [base + (i < extra) for i in range(steps)]


def _global_ids(ds: FaceDataset) -> np.ndarray:
    lut = np.array([taxonomy.class_index(c) for c in ds.classes])
    return lut[ds.labels]


def _with_global_targets(ds: FaceDataset, keep: Sequence[str]) -> FaceDataset:
    """Items of classes in ``keep``, relabelled with global ids (taxonomy.ALL_CLASSES)."""
    missing = [c for c in keep if c not in ds.classes]
    if missing:
        raise ValueError(
            f"classes {missing} have no items in this dataset (it has {list(ds.classes)}); "
            "choose basic/compound classes that the data contains"
        )
    sub = ds.subset(np.flatnonzero(np.isin(np.asarray(ds.classes)[ds.labels], list(keep))))
    if not isinstance(sub, FaceDataset):  # clips (cfer.data.video.ClipDataset): same items, new labels
        return sub.relabelled(labels=_global_ids(sub), classes=taxonomy.ALL_CLASSES)
    return FaceDataset(images=sub.images, labels=_global_ids(sub), classes=taxonomy.ALL_CLASSES,
                       subjects=sub.subjects, splits=sub.splits, transform=sub.transform,
                       skipped=sub.skipped)


def make_stream(
    *,
    train: FaceDataset,
    test: FaceDataset,
    val: FaceDataset | None = None,
    basic: Sequence[str] | None = None,
    compound: Sequence[str] | None = None,
    per_step: int = 1,
    order: Sequence[str] | None = None,
    seed: int = 0,
) -> CompoundStream:
    """Build the basic -> compound benchmark from any cfer datasets.

    Faces (:class:`~cfer.data.FaceDataset`) or clips (:class:`cfer.data.video.ClipDataset`,
    decoded lazily as the strategies iterate) make the same stream.

    Args:
        train: Training items (any :class:`~cfer.data.FaceDataset`).
        test: Test items, from other subjects than ``train``.
        val: Optional validation items, from yet other subjects.
        basic: Classes of the first experience (default: the six basic classes).
        compound: Compound classes of the stream (default: all 15 present in ``train``).
        per_step: Compound classes added per experience (the target). The ``n`` compound
            classes go into ``n / per_step`` steps (rounded half up, at least one) whose
            sizes differ by at most one, larger steps first: 10 classes at ``per_step=3``
            give steps of 4, 3, 3 (not 3, 3, 3, 1), 10 at 4 give 4, 3, 3, and
            ``per_step=1`` is one class per step.
        order: Explicit compound order; default: a random order drawn from ``seed``.
        seed: Seed of the random order.

    Returns:
        A :class:`CompoundStream`.

    Raises:
        ValueError: If subjects overlap between the splits, a class is missing from the
            data, ``order`` is not a permutation of ``compound``, or ``per_step`` < 1.
    """
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark

    basic_names = taxonomy.BASIC if basic is None else taxonomy.normalize_many(list(basic))
    if compound is None:
        compound_names = tuple(c for c in taxonomy.COMPOUND if c in train.classes)
    else:
        compound_names = taxonomy.normalize_many(list(compound))
    overlap = set(basic_names) & set(compound_names)
    if overlap:
        raise ValueError(f"classes {sorted(overlap)} are both basic and compound; list each once")
    if not compound_names:
        raise ValueError("no compound classes: the data has none, or compound=[] was given")
    if not isinstance(per_step, int) or per_step < 1:
        raise ValueError(f"per_step must be a positive int (1 = the published protocol), got {per_step!r}")
    if order is None:
        order_names = compound_orders(classes=compound_names, n_orders=1, seed=seed)[0]
    else:
        order_names = taxonomy.normalize_many(list(order))
        if sorted(order_names) != sorted(compound_names):
            raise ValueError(
                f"order must be a permutation of the compound classes {list(compound_names)}, got {list(order_names)}"
            )
    _check_disjoint(train=train, test=test, val=val)

    arrival = (*basic_names, *order_names)
    fixed = [taxonomy.class_index(c) for c in arrival]
    per_exp = {0: len(basic_names)}
    for i, size in enumerate(step_sizes(len(order_names), per_step)):
        per_exp[i + 1] = size
    n_comp_steps = len(per_exp) - 1

    def bench(tr: FaceDataset, te: FaceDataset):  # noqa: ANN202
        return nc_benchmark(
            _with_global_targets(tr, arrival), _with_global_targets(te, arrival),
            n_experiences=1 + n_comp_steps, task_labels=False, shuffle=False,
            fixed_class_order=fixed, per_exp_classes=per_exp, class_ids_from_zero_from_first_exp=True,
        )

    # One benchmark with three real streams: train, test and (with val) valid, each split by
    # the same class order (nc_benchmark does the splitting and the class-id remapping).
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.scenarios.supervised import with_classes_timeline

    split = bench(train, test)
    streams = {"train": [e.dataset for e in split.train_stream], "test": [e.dataset for e in split.test_stream]}
    if val is not None:
        streams["valid"] = [e.dataset for e in bench(val, val).train_stream]
    benchmark = _with_class_order(with_classes_timeline(benchmark_from_datasets(**streams)),
                                  [per_exp[i] for i in range(1 + n_comp_steps)])
    steps, start = [], 0
    for i in range(1 + n_comp_steps):
        steps.append(tuple(range(start, start + per_exp[i])))
        start += per_exp[i]
    logger.info("stream: %d basic classes, then %d compound steps of %s classes", len(basic_names), n_comp_steps,
                [per_exp[i] for i in range(1, 1 + n_comp_steps)])
    return CompoundStream(benchmark=benchmark, class_names=arrival,
                          step_classes=steps, compound_order=order_names,
                          meta={"per_step": per_step, "seed": seed})


def _with_class_order(benchmark, per_exp: list[int]):  # noqa: ANN001, ANN202
    """Give a new-style benchmark the class-order attributes of Avalanche's class-incremental
    scenarios (``n_classes_per_exp``, ``classes_order``, ``experience.benchmark``), which
    Avalanche's own iCaRL reads. Class ids are already the arrival order."""
    benchmark.n_classes_per_exp = list(per_exp)
    benchmark.classes_order = list(range(sum(per_exp)))
    benchmark.n_classes = sum(per_exp)
    for stream in benchmark.streams.values():
        for experience in stream:
            experience.benchmark = benchmark
    return benchmark


def _check_disjoint(*, train: FaceDataset, test: FaceDataset, val: FaceDataset | None) -> None:
    parts = {"train": train, "test": test} | ({"val": val} if val is not None else {})
    if any(p.subjects is None for p in parts.values()):
        logger.warning("some splits carry no subject ids: subject-disjointness cannot be checked")
        return
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = set(parts[a].subjects) & set(parts[b].subjects)
            if shared:
                raise ValueError(
                    f"{len(shared)} subjects appear in both {a} and {b} (e.g. {sorted(shared)[:3]}); "
                    "split by subject with cfer.data.splits.subject_split"
                )


def synthetic_stream(
    *,
    subjects: tuple[int, int, int] = (24, 8, 8),
    per_class: int = 5,
    basic: Sequence[str] | None = None,
    compound: Sequence[str] | None = None,
    per_step: int = 1,
    order: Sequence[str] | None = None,
    image_size: int = 64,
    difficulty: float = 1.0,
    seed: int = 0,
    order_seed: int | None = None,
) -> CompoundStream:
    """The stream on cfer's synthetic faces (train/val/test from disjoint subjects).

    Args:
        subjects: Subjects in train, val and test.
        per_class: Faces per class per subject.
        basic: Basic classes (default: the six basic).
        compound: Compound classes (default: all 15).
        per_step: Compound classes per experience.
        order: Explicit compound order.
        image_size: Side of the faces.
        difficulty: Renderer difficulty.
        seed: Seed of the faces.
        order_seed: Seed of the random class order (default: ``seed``).
    """
    from cfer.data.synthetic import make_synthetic_splits

    basic_names = taxonomy.BASIC if basic is None else taxonomy.normalize_many(list(basic))
    compound_names = taxonomy.COMPOUND if compound is None else taxonomy.normalize_many(list(compound))
    splits = make_synthetic_splits(classes=[*basic_names, *compound_names], subjects=subjects,
                                   per_class=per_class, image_size=image_size, difficulty=difficulty, seed=seed)
    stream = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], basic=basic_names,
                         compound=compound_names, per_step=per_step, order=order,
                         seed=seed if order_seed is None else order_seed)
    stream.meta["data"] = {"subjects": list(subjects), "per_class": per_class, "image_size": image_size,
                           "difficulty": difficulty, "seed": seed}
    return stream
