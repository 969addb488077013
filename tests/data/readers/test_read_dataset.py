"""The READERS table: one dispatch for every format, options a format cannot take refused."""

import pytest

from cfer.data.readers import FORMATS, READERS, read_dataset, read_image_folder


def test_every_format_has_a_reader_and_the_table_is_the_list_of_formats():
    assert FORMATS == tuple(READERS) == ("imagefolder", "csv", "rafdb", "fer2013")
    assert all(callable(r.read) and r.notes for r in READERS.values())
    assert READERS["imagefolder"].read is read_image_folder


def test_read_dataset_dispatches_with_the_shared_options(tmp_path, image_writer):
    for name in ("s01_a.png", "s02_a.png"):
        image_writer(tmp_path / "happy" / name)
        image_writer(tmp_path / "awed" / name)
    ds = read_dataset(tmp_path, format="imagefolder", image_size=12, channels=1, subject_pattern=r"^(s\d+)_")
    assert ds.images.shape == (4, 12, 12, 1) and sorted(set(ds.subjects)) == ["s01", "s02"]


@pytest.mark.parametrize("kwargs, message", [
    ({"format": "imagefoldr"}, "did you mean 'imagefolder'"),
    ({"format": "csv", "subject_pattern": "^(s)"}, "applies to imagefolder data only"),
    ({"format": "fer2013", "crop_faces": True}, "already aligned faces; drop --crop-faces"),
    ({"format": "imagefolder", "subset": "compound"}, "imagefolder has no label subset"),
    ({"format": "rafdb", "subset": "both"}, "choose one of ['basic', 'compound']"),
])
def test_options_a_format_cannot_take_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as err:
        read_dataset(tmp_path, **kwargs)
    assert message in str(err.value)
