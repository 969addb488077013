"""make_framed_splits: what a face detector finds in photo-like frames, split by person."""

import numpy as np
import pytest

from cfer.data.faces import NoFaceFoundError
from cfer.data.synthetic.framed_splits import make_framed_splits


class _EveryOther:
    """A cropper that finds the centre of every other frame and nothing in the rest."""

    def __init__(self):
        self.calls = 0

    def crop(self, frame):
        self.calls += 1
        if self.calls % 2 == 0:
            raise NoFaceFoundError("none here")
        h, w = frame.shape[:2]
        return frame[h // 4: 3 * h // 4, w // 4: 3 * w // 4]


def test_the_detector_crops_are_split_by_person_at_the_asked_size():
    sp = make_framed_splits(classes="basic", subjects=(2, 1, 1), per_class=1, image_size=24, channels=1, seed=3)
    people = {name: set(part.subjects) for name, part in sp.items()}
    assert not (people["train"] & people["val"]) and not (people["train"] & people["test"])
    assert not (people["val"] & people["test"])
    assert sp["train"].images.shape[1:] == (24, 24, 1) and sp["train"].images.dtype == np.uint8
    assert len(sp["train"]) <= 12 and len(sp["train"]) >= 10  # 2 people x 6 classes, a miss or two allowed
    assert set(sp["train"].classes) >= {"happy", "sad"}


def test_frames_without_a_face_are_left_out_and_a_split_without_any_is_refused():
    cropper = _EveryOther()
    sp = make_framed_splits(classes="basic", subjects=(2, 1, 1), per_class=1, image_size=16, cropper=cropper)
    assert [len(sp[k]) for k in ("train", "val", "test")] == [6, 3, 3]  # half of 12, 6 and 6 frames
    assert sp["train"].images.shape[1:] == (16, 16, 3)

    class Never:
        def crop(self, frame):
            raise NoFaceFoundError("no face")

    with pytest.raises(ValueError, match="found no face in the train frames"):
        make_framed_splits(classes="basic", subjects=(1, 1, 1), cropper=Never())


@pytest.mark.parametrize("kwargs, message", [
    ({"subjects": (1, 0, 1)}, "three positive ints"),
    ({"channels": 2}, "1 \\(grey\\) or 3"),
    ({"image_size": 8}, ">= 16"),
])
def test_bad_arguments_are_refused_naming_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_framed_splits(classes="basic", **kwargs)
