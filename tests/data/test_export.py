import csv

import numpy as np
import pytest

from cfer.data import export_image_folder, read_csv_manifest, read_image_folder


def _faces(n=4, channels=3):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 20, 20, channels)).astype(np.uint8)


def test_one_naming_scheme_and_a_manifest_both_readers_read_back(tmp_path):
    images = _faces()
    n = export_image_folder(tmp_path, images=images, labels=["happy", "happy", "awed", "happy"],
                            subjects=["s01", "s01", "s02", "s02"], extra_columns={"score": [1, 2, 3, 4]})
    assert n == 4
    assert sorted(p.name for p in (tmp_path / "happy").iterdir()) == ["s01_000.png", "s01_001.png", "s02_000.png"]
    rows = list(csv.DictReader((tmp_path / "manifest.csv").open()))
    assert [r["path"] for r in rows] == ["happy/s01_000.png", "happy/s01_001.png", "awed/s02_000.png",
                                         "happy/s02_000.png"]
    assert rows[2] == {"path": "awed/s02_000.png", "label": "awed", "subject": "s02", "score": "3"}
    by_folder = read_image_folder(tmp_path, image_size=20, subject_pattern=r"^(s\d+)_")
    by_manifest = read_csv_manifest(tmp_path / "manifest.csv", image_size=20)
    assert len(by_folder) == len(by_manifest) == 4 and sorted(set(by_folder.subjects)) == ["s01", "s02"]
    assert np.array_equal(by_manifest.images[0], images[0])  # PNG is lossless


def test_bad_exports_are_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="4 images but"):
        export_image_folder(tmp_path / "a", images=_faces(), labels=["happy"], subjects=["s1"] * 4)
    with pytest.raises(ValueError, match="image_format must be one of"):
        export_image_folder(tmp_path / "b", images=_faces(1), labels=["happy"], subjects=["s1"], image_format="gif")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty; pass an empty or new folder, or overwrite=True"):
        export_image_folder(tmp_path / "c", images=_faces(1), labels=["happy"], subjects=["s1"])
    assert export_image_folder(tmp_path / "c", images=_faces(1, 1), labels=["sad"], subjects=["s1"],
                               image_format="jpg", overwrite=True) == 1
    assert (tmp_path / "c" / "sad" / "s1_000.jpg").is_file() and (tmp_path / "c" / "x.txt").read_text() == "mine"
