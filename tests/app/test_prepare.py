"""Data preparation for `cfer run`: formats, merged RAF-DB, hold-out and early errors."""

from pathlib import Path

import pytest
from PIL import Image

from cfer import taxonomy
from cfer.app.config_io import config_from_dict
from cfer.app.prepare import load_dataset, prepare_data
from cfer.data.synthetic import render_faces


def _write_rafdb(root: Path, table, classes, *, start: int) -> Path:
    """A RAF-DB folder (its real layout) holding synthetic faces of ``classes``."""
    ids = {name: i for i, name in table.items()}
    faces = render_faces(classes=list(classes), n_subjects=2, per_class=1, image_size=40, seed=start)
    lines = []
    for k in range(len(faces)):
        part = "train" if k % 2 == 0 else "test"
        stem = f"{part}_{start + k:05d}"
        path = root / "Image" / "aligned" / f"{stem}_aligned.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(faces.images[k]).save(path)
        lines.append(f"{stem}.jpg {ids[faces.classes[faces.labels[k]]]}\n")
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(lines))
    return root


def test_rafdb_runs_read_the_basic_and_the_compound_folders_as_one_dataset(tmp_path):
    basic = _write_rafdb(tmp_path / "basic", taxonomy.RAFDB_BASIC_LABELS, ["happy", "sad"], start=0)
    comp = _write_rafdb(tmp_path / "compound", taxonomy.RAFDB_COMPOUND_LABELS, ["happily_surprised", "sadly_angry"],
                        start=100)
    cfg = config_from_dict({"data": {"path": str(comp), "format": "rafdb", "rafdb_basic": str(basic),
                                     "image_size": 32}})
    ds = load_dataset(cfg)
    assert len(ds) == 8 and ds.image_size == (32, 32)
    assert sorted(ds.counts()) == ["happily_surprised", "happy", "sad", "sadly_angry"]
    assert all(v == 2 for v in ds.counts().values())
    assert sorted(set(ds.splits.tolist())) == ["test", "train"]


def test_merged_rafdb_keeps_both_reads_skip_counts(tmp_path):
    basic = _write_rafdb(tmp_path / "basic", taxonomy.RAFDB_BASIC_LABELS, ["happy", "sad"], start=0)
    comp = _write_rafdb(tmp_path / "compound", taxonomy.RAFDB_COMPOUND_LABELS, ["happily_surprised", "sadly_angry"],
                        start=100)
    for root in (basic, comp):  # each label list names its first image twice, with the same label
        labels = root / "EmoLabel" / "list_patition_label.txt"
        labels.write_text(labels.read_text() + labels.read_text().splitlines(keepends=True)[0])
    cfg = config_from_dict({"data": {"path": str(comp), "format": "rafdb", "rafdb_basic": str(basic),
                                     "image_size": 32}})
    ds = load_dataset(cfg)
    assert len(ds) == 8 and ds.skipped == {"duplicate entry": 2}


@pytest.mark.parametrize("data, message", [
    ({"format": "rafdb"}, "give the compound folder as --data and the basic one as --rafdb-basic"),
    ({"format": "fer2013"}, "FER2013 holds only basic expressions"),
    ({"format": "csv", "rafdb_basic": "."}, "applies to --format rafdb only"),
])
def test_formats_that_cannot_feed_a_run_are_refused_up_front(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({"data": {"path": str(tmp_path), **data}})


def test_the_holdout_is_seeded_and_never_in_the_stream():
    base = {"data": {"synthetic_subjects": [2, 1, 3], "synthetic_per_class": 5, "image_size": 32}}
    a = prepare_data(config_from_dict(base))
    b = prepare_data(config_from_dict(base))
    c = prepare_data(config_from_dict({**base, "seed": 1}))
    assert a.holdout == b.holdout and a.holdout != c.holdout
    assert len(a.holdout) == 5 and len(a.compound) == 10 and not set(a.holdout) & set(a.compound)
    assert a.fewshot_classes == a.holdout
    assert not set(a.train.subjects) & set(a.test.subjects)  # people never shared across splits
    none = prepare_data(config_from_dict({**base, "fewshot": {"holdout": 0}}))
    assert none.holdout == () and none.fewshot_classes == none.compound and len(none.compound) == 15


def test_missing_basic_classes_name_the_option(tmp_path):
    faces = render_faces(classes=["happy", "sad", "awed"], n_subjects=6, per_class=1, image_size=32)
    for k in range(len(faces)):
        name = faces.classes[faces.labels[k]]
        path = tmp_path / name / f"{faces.subjects[k]}_{k}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(faces.images[k]).save(path)
    cfg = config_from_dict({"data": {"path": str(tmp_path), "format": "imagefolder", "image_size": 32,
                                     "subject_pattern": r"^(s\d+)_"}, "fewshot": {"holdout": 0}})
    with pytest.raises(ValueError, match=r"basic classes \['fearful', 'angry', 'surprised', 'disgusted'\] lack .*"
                                         "choose the basic classes with --basic"):
        prepare_data(cfg)


def test_a_csv_manifest_with_subjects_feeds_a_run(tmp_path):
    from cfer.app import cli

    assert cli.main(["synth", "--out", str(tmp_path / "g.png"), "--subjects", "10", "--per-class", "2",
                     "--image-size", "32", "--export", str(tmp_path / "faces")]) == 0
    cfg = config_from_dict({"data": {"path": str(tmp_path / "faces" / "manifest.csv"), "format": "csv",
                                     "image_size": 32},
                            "fewshot": {"shots": [1], "queries": 3}})
    data = prepare_data(cfg)
    rows = (tmp_path / "faces" / "manifest.csv").read_text().strip().count("\n")  # header excluded
    assert len(data.train) + len(data.val) + len(data.test) == rows == 22 * 10 * 2
    assert len(data.basic) == 6 and len(data.compound) == 10 and len(data.holdout) == 5
    people = [set(d.subjects) for d in (data.train, data.val, data.test)]
    assert not (people[0] & people[1] or people[0] & people[2] or people[1] & people[2])
    assert sum(len(p) for p in people) == 10


def _folder(root: Path, classes, *, subjects: int = 9, per_class: int = 2, seed: int = 0) -> Path:
    from cfer.data.export import export_image_folder

    faces = render_faces(classes=list(classes), n_subjects=subjects, per_class=per_class, image_size=32, seed=seed,
                         first_subject=seed)
    export_image_folder(root, images=faces.images, labels=faces.class_names, subjects=faces.subjects,
                        overwrite=True)
    return root


_STREAM = ["happily_surprised", "sadly_angry", "appalled", "awed", "fearfully_surprised", "happily_disgusted"]


def _folder_config(root: Path, **fewshot):
    return config_from_dict({"data": {"path": str(root), "format": "imagefolder", "image_size": 32,
                                      "subject_pattern": r"^(s\d+)_"},
                             "fewshot": {"holdout": 0, "ways": 2, "shots": [1], "queries": 1, **fewshot}})


def test_a_compound_class_of_one_person_is_refused_before_training_naming_its_counts(tmp_path):
    root = _folder(tmp_path / "faces", [*taxonomy.BASIC, *_STREAM])
    _folder(root, ["hatred"], subjects=1, per_class=2, seed=50)  # 2 faces of one new person
    with pytest.raises(ValueError) as exc:
        prepare_data(_folder_config(root))
    msg = str(exc.value)
    assert "compound classes lack faces in a split the stream needs" in msg
    assert "hatred: train 2, val 0, test 0" in msg or "hatred: train 0, val 2, test 0" in msg or \
        "hatred: train 0, val 0, test 2" in msg
    assert f"--compound {','.join(c for c in taxonomy.COMPOUND if c in _STREAM)}" in msg


def test_classes_no_stage_uses_are_reported_not_dropped_silently(tmp_path, caplog):
    root = _folder(tmp_path / "faces", ["neutral", *taxonomy.BASIC, *_STREAM])
    with caplog.at_level("WARNING", logger="cfer.app.prepare"):
        data = prepare_data(_folder_config(root))
    assert data.unused == {"neutral": 9 * 2}
    assert "faces of classes no stage uses are left out: neutral (18)" in caplog.text
    assert "--basic" in caplog.text
    with_neutral = config_from_dict({**{"data": {"path": str(root), "format": "imagefolder", "image_size": 32,
                                                 "subject_pattern": r"^(s\d+)_"}},
                                     "classes": {"basic": ["neutral", *taxonomy.BASIC]},
                                     "fewshot": {"holdout": 0, "ways": 2, "shots": [1], "queries": 1}})
    assert prepare_data(with_neutral).unused == {}


def test_skipped_items_are_counted_in_the_run_data(tmp_path):
    root = _folder(tmp_path / "faces", [*taxonomy.BASIC, *_STREAM])
    (root / "happy" / "s0000_999.png").write_bytes(b"not a png")
    (root / "sad" / "s0001_998.png").write_bytes(b"")
    cfg = config_from_dict({"data": {"path": str(root), "format": "imagefolder", "image_size": 32,
                                     "subject_pattern": r"^(s\d+)_", "skip_invalid": True},
                            "fewshot": {"holdout": 0, "ways": 2, "shots": [1], "queries": 1}})
    with pytest.warns(UserWarning, match="skipped 2 of"):
        data = prepare_data(cfg)
    assert data.skipped == {"corrupt image": 2}


def test_basic_only_data_is_refused_with_a_split_that_then_prepares(tmp_path):
    """Data with basic expressions only (CK+, say) has nothing to learn after the teacher:
    the error names a first-step / later-step split, and that split is accepted."""
    import re

    root = _folder(tmp_path / "faces", taxonomy.BASIC, subjects=10, per_class=2)
    with pytest.raises(ValueError, match="the data has no compound class") as exc:
        prepare_data(_folder_config(root, ways=5))
    msg = str(exc.value)
    assert "--basic happy,sad,fearful --compound angry,surprised,disgusted --holdout 0 --ways 3" in msg
    basic, later, ways = re.search(r"--basic (\S+) --compound (\S+) --holdout 0 --ways (\d)", msg).groups()
    cfg = config_from_dict({"data": {"path": str(root), "format": "imagefolder", "image_size": 32,
                                     "subject_pattern": r"^(s\d+)_"},
                            "classes": {"basic": basic.split(","), "compound": later.split(",")},
                            "fewshot": {"holdout": 0, "ways": int(ways), "shots": [1], "queries": 1}})
    data = prepare_data(cfg)
    assert data.basic == ("happy", "sad", "fearful") and data.compound == ("angry", "surprised", "disgusted")
    assert data.holdout == ()
