"""Confusion matrices and the constituent share of compound errors, on hand-made predictions."""

import numpy as np
import pytest
import torch

from cfer.continual.confusion import confusion, constituent_share
from cfer.data.base import FaceDataset


class Lookup(torch.nn.Module):
    """Predicts, for the face whose first pixel is k, the output ``answers[k]``."""

    def __init__(self, answers, n_outputs):
        super().__init__()
        self.answers, self.n = answers, n_outputs

    def forward(self, x):
        k = (x[:, 0, 0, 0] * 255).round().long()
        return torch.nn.functional.one_hot(torch.as_tensor(self.answers)[k], self.n).float()


def faces(labels, classes):
    images = np.zeros((len(labels), 4, 4, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels))
    return FaceDataset(images=images, labels=np.asarray(labels), classes=classes)


CLASSES = ("happy", "surprised", "sad", "happily_surprised")


def test_rows_are_true_classes_and_each_row_sums_to_one():
    data = faces([0, 0, 1, 3, 3, 3, 3], CLASSES)
    # happy: right, wrong (sad); surprised: right; happily surprised: 1 right, 2 to happy/surprised, 1 to sad
    model = Lookup([0, 2, 1, 3, 0, 1, 2], 4)
    c = confusion(model, data, classes=CLASSES)
    assert c.rows == ("happy", "surprised", "happily_surprised")  # sad has no face: no row
    assert c.counts.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 1, 1]]
    assert c.matrix.sum(1) == pytest.approx([1, 1, 1])
    share = constituent_share(c)["happily_surprised"]
    assert share["n"] == 4 and share["accuracy"] == 0.25 and share["errors"] == 3
    assert share["to_constituents"] == pytest.approx(2 / 3) and share["to_other"] == pytest.approx(1 / 3)
    assert share["chance"] == pytest.approx(2 / 3)  # 2 constituents among the 3 wrong outputs
    d = c.to_dict()
    assert d["classes"] == list(c.rows) and d["outputs"] == list(CLASSES) and len(d["matrix"]) == 3


def test_a_model_without_the_compound_output_sends_every_compound_face_somewhere_else():
    data = faces([3, 3, 3, 3, 2], CLASSES)
    teacher = Lookup([0, 0, 1, 2, 2], 3)  # outputs: happy, surprised, sad only
    c = confusion(teacher, data, classes=CLASSES[:3], rows=["sad", "happily surprised"])
    assert c.rows == ("sad", "happily_surprised") and c.counts.tolist() == [[0, 0, 1], [2, 1, 1]]
    share = constituent_share(c)["happily_surprised"]
    assert share["accuracy"] == 0 and share["errors"] == 4 and share["to_constituents"] == 0.75
    assert share["chance"] == pytest.approx(2 / 3)
    assert set(constituent_share(c)) == {"happily_surprised"}  # basic rows have no share


def test_a_row_without_faces_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="have no items in the data; leave them out of rows="):
        confusion(Lookup([0], 4), faces([0], CLASSES), classes=CLASSES, rows=["happy", "awed"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_model_on_the_gpu_gets_the_cpu_counts():
    from cfer.continual.confusion import predict

    images = np.random.default_rng(0).integers(0, 256, size=(20, 4, 4, 3), dtype=np.uint8)
    data = FaceDataset(images=images, labels=np.arange(20) % 4, classes=CLASSES)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 4))
    want, want_pred = confusion(model, data, classes=CLASSES), predict(model, data)
    model.to("cuda")
    got = confusion(model, data, classes=CLASSES, batch_size=6)
    assert got.counts.tolist() == want.counts.tolist() and got.rows == want.rows
    pred = predict(model, data, batch_size=6)
    assert isinstance(pred, np.ndarray) and pred.tolist() == want_pred.tolist()
