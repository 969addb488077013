"""FaceDataset's record of what a read left out (``skipped``) survives subsets and splits."""

from __future__ import annotations

import numpy as np
import pytest

from cfer.data import FaceDataset, SkippedItemsWarning, apply_split, read_image_folder
from cfer.data.synthetic import render_faces


def _faces(**kwargs) -> FaceDataset:
    n = 12
    return FaceDataset(images=np.zeros((n, 4, 4, 1), np.uint8), labels=np.arange(n) % 2, classes=["happy", "sad"],
                       subjects=[f"s{k // 2}" for k in range(n)], **kwargs)


def test_skipped_defaults_to_empty_and_is_a_copy():
    assert _faces().skipped == {}
    ds = _faces(skipped={"corrupt image": 2, "unknown label": 0})
    assert ds.skipped == {"corrupt image": 2}  # zero counts are left out
    ds.skipped["corrupt image"] = 99
    assert ds.skipped == {"corrupt image": 2}
    with pytest.raises(AttributeError):
        ds.skipped = {}  # read-only


@pytest.mark.parametrize("bad", [{"x": -1}, {"x": 1.5}, {3: 1}, [("x", 1)], {"x": True}])
def test_skipped_must_map_reasons_to_counts(bad):
    with pytest.raises(ValueError, match="skipped must"):
        _faces(skipped=bad)


def test_skipped_survives_subset_select_split_and_apply_split():
    ds = _faces(skipped={"no face found": 3})
    assert ds.subset([0, 1]).skipped == {"no face found": 3}
    parts = apply_split(ds, fractions=(0.5, 0.5), names=("train", "test"), seed=0)
    assert {k: v.skipped for k, v in parts.items()} == {"train": {"no face found": 3}, "test": {"no face found": 3}}
    again = apply_split(parts["train"].subset(range(len(parts["train"]))))  # its own split column, kept
    assert again["train"].skipped == {"no face found": 3}


def test_synthetic_faces_carry_skipped_through_their_subsets():
    faces = render_faces(classes=["happy"], n_subjects=2, per_class=1, image_size=16, seed=0)
    assert faces.skipped == {} and faces.subset([0]).skipped == {}


def test_a_reader_records_its_skips(tmp_path, image_writer):
    for name in ("s01_a.png", "s02_a.png"):
        image_writer(tmp_path / "happy" / name)
    (tmp_path / "happy" / "s03_a.png").write_text("not a PNG")
    (tmp_path / "happy" / "nobody.png").write_bytes((tmp_path / "happy" / "s01_a.png").read_bytes())
    with pytest.warns(SkippedItemsWarning, match="skipped 2 of 4 items"):
        ds = read_image_folder(tmp_path, image_size=8, skip_invalid=True, subject_pattern=r"^(s\d+)_")
    assert len(ds) == 2 and ds.skipped == {"corrupt image": 1, "no subject id": 1}
    assert ds.subset([1]).skipped == ds.skipped
