"""Subject-disjoint, stratified splits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cfer.data import FaceDataset, apply_split, subject_split


def _random_items(rng: np.random.Generator, *, n_subjects: int, n_classes: int, max_per_subject: int = 12):
    subjects, labels = [], []
    for s in range(n_subjects):
        k = int(rng.integers(1, max_per_subject + 1))
        subjects += [f"s{s}"] * k
        labels += rng.integers(0, n_classes, k).tolist()
    order = rng.permutation(len(subjects))
    return np.asarray(subjects)[order], np.asarray(labels)[order]


def _owners(subjects, names) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for s, n in zip(subjects, names):
        out.setdefault(str(s), set()).add(str(n))
    return out


def test_subjects_never_shared_over_many_random_inputs():
    rng = np.random.default_rng(123)
    for trial in range(60):
        n_splits = int(rng.integers(2, 5))
        n_subjects = int(rng.integers(n_splits, 40))
        subjects, labels = _random_items(rng, n_subjects=n_subjects, n_classes=int(rng.integers(1, 8)))
        fractions = rng.dirichlet(np.ones(n_splits)) * 0.8 + 0.2 / n_splits
        fractions = fractions / fractions.sum()
        names = [f"part{i}" for i in range(n_splits)]
        out = subject_split(subjects=subjects, labels=labels, fractions=fractions, names=names, seed=trial)
        assert out.shape == (len(subjects),)
        assert all(len(v) == 1 for v in _owners(subjects, out).values()), trial
        assert set(out) == set(names), "every split gets at least one subject"


def test_deterministic_for_a_seed_and_seed_matters():
    rng = np.random.default_rng(0)
    subjects, labels = _random_items(rng, n_subjects=30, n_classes=5, max_per_subject=3)
    a = subject_split(subjects=subjects, labels=labels, seed=7)
    b = subject_split(subjects=subjects, labels=labels, seed=7)
    np.testing.assert_array_equal(a, b)
    others = [subject_split(subjects=subjects, labels=labels, seed=s) for s in range(8, 14)]
    assert any((o != a).any() for o in others)


def test_global_rng_untouched():
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    subject_split(subjects=list("aabbccdd"), labels=[0, 1] * 4, fractions=(0.5, 0.5), names=("a", "b"))
    np.testing.assert_array_equal(before, np.random.get_state()[1])


def test_stratification_tracks_fractions_per_class():
    # 60 subjects, each with 2 images of each of 6 classes: perfect stratification is possible.
    subjects = np.repeat([f"p{i}" for i in range(60)], 12)
    labels = np.tile(np.repeat(np.arange(6), 2), 60)
    out = subject_split(subjects=subjects, labels=labels, fractions=(0.7, 0.15, 0.15), seed=3)
    for name, frac in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
        share = (out == name).mean()
        assert share == pytest.approx(frac, abs=0.02)
        for c in range(6):
            assert ((out == name) & (labels == c)).sum() / (labels == c).sum() == pytest.approx(frac, abs=0.03)


def test_stratification_spreads_rare_class_subjects():
    # Class 1 comes from 10 subjects only, class 0 from 90: each split should still see class 1.
    subjects = np.repeat([f"p{i}" for i in range(100)], 4)
    labels = np.where(np.repeat(np.arange(100), 4) < 10, 1, 0)
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(subjects))
    out = subject_split(subjects=subjects[perm], labels=labels[perm], fractions=(0.6, 0.2, 0.2), seed=0)
    rare = out[labels[perm] == 1]
    counts = {n: int((rare == n).sum()) for n in ("train", "val", "test")}
    assert counts["train"] == 24 and counts["val"] == 8 and counts["test"] == 8, counts
    assert (out == "train").mean() == pytest.approx(0.6, abs=0.02)


def test_unequal_subject_sizes_roughly_meet_fractions():
    rng = np.random.default_rng(9)
    subjects, labels = _random_items(rng, n_subjects=200, n_classes=7, max_per_subject=20)
    out = subject_split(subjects=subjects, labels=labels, fractions=(0.7, 0.15, 0.15), seed=0)
    for name, frac in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
        assert (out == name).mean() == pytest.approx(frac, abs=0.03)


def test_string_labels_and_exactly_as_many_subjects_as_splits():
    out = subject_split(subjects=["a", "a", "a", "a", "b", "c"], labels=["happy"] * 6, seed=0)
    assert set(out) == {"train", "val", "test"}
    assert len(set(out[:4])) == 1


def test_too_few_subjects_names_the_counts():
    with pytest.raises(ValueError, match=r"2 subject\(s\) cannot fill 3 disjoint splits .*need at least 3 subjects"):
        subject_split(subjects=["a", "a", "b"], labels=[0, 1, 0])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"fractions": (0.7, 0.3, 0.0)}, "fractions must all be positive"),
        ({"fractions": (0.5, 0.2, 0.2)}, r"fractions must sum to 1.*sum 0\.9"),
        ({"fractions": (0.5, 0.5)}, "2 fractions but 3 names"),
        ({"names": ("a", "a", "b")}, "split names must be distinct"),
        ({"labels": [0, 1]}, "4 subjects but 2 labels"),
    ],
)
def test_inputs_are_checked(kwargs, match):
    args = {"subjects": ["a", "b", "c", "d"], "labels": [0, 1, 0, 1]} | kwargs
    with pytest.raises(ValueError, match=match):
        subject_split(**args)


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="no items to split"):
        subject_split(subjects=[], labels=[])


# ----------------------------------------------------------------------------------------
# apply_split
# ----------------------------------------------------------------------------------------
def _dataset(*, n_subjects=20, per=6, subjects=True, splits=None):
    n = n_subjects * per
    return FaceDataset(
        images=np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(4, 1).repeat(4, 2),
        labels=np.tile(np.arange(3), n // 3 + 1)[:n],
        classes=["happy", "sad", "awed"],
        subjects=np.repeat([f"s{i}" for i in range(n_subjects)], per) if subjects else None,
        splits=splits,
    )


def test_apply_split_returns_disjoint_parts_covering_the_dataset():
    ds = _dataset()
    parts = apply_split(ds, fractions=(0.6, 0.2, 0.2), seed=1)
    assert list(parts) == ["train", "val", "test"]
    assert sum(len(p) for p in parts.values()) == len(ds)
    seen = [set(p.subjects) for p in parts.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    for name, part in parts.items():
        assert set(part.splits) == {name}
        assert part.classes == ds.classes
    # items travel with their images: image value == original index (mod 256)
    all_ids = sorted(int(v) for p in parts.values() for v in p.images[:, 0, 0, 0])
    assert all_ids == list(range(len(ds)))
    assert len(parts["train"]) == pytest.approx(0.6 * len(ds), abs=6)


def test_apply_split_custom_names():
    parts = apply_split(_dataset(), fractions=(0.8, 0.2), names=("fit", "holdout"))
    assert list(parts) == ["fit", "holdout"]


def test_apply_split_without_subjects_names_the_fix():
    with pytest.raises(ValueError, match=r"no subject ids.*subject_pattern=.*'subject' column"):
        apply_split(_dataset(subjects=False))


def test_apply_split_respects_existing_splits():
    n = 120
    existing = np.where(np.arange(n) < 90, "train", "test")
    ds = _dataset(splits=existing)
    parts = apply_split(ds)
    assert list(parts) == ["train", "test"] and len(parts["train"]) == 90
    with pytest.raises(ValueError, match=r"already has splits \['test', 'train'\]; pass respect_existing=False"):
        apply_split(ds, fractions=(0.5, 0.5), names=("a", "b"))
    resplit = apply_split(ds, respect_existing=False, seed=0)
    assert list(resplit) == ["train", "val", "test"]


def test_apply_split_warns_when_existing_splits_share_subjects():
    n = 120
    ds = _dataset(splits=np.tile(["train", "test"], n // 2))  # every subject in both
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_split(ds)
    assert any("share 20 subject(s)" in str(w.message) for w in caught)
