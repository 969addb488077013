import numpy as np
import pytest
import torch

from cfer.continual.stream import synthetic_stream


@pytest.fixture(scope="session")
def teacher_and_stream():
    """A trained tiny basic teacher and a stream of 6 compound classes, 2 per step, on 32 px
    faces: shared by the resume and logger tests (one teacher trained, not one per module)."""
    import warnings

    from cfer import taxonomy
    from cfer.continual.stream import make_stream
    from cfer.continual.teacher import TeacherConfig, train_teacher
    from cfer.data.synthetic import make_synthetic_splits

    warnings.filterwarnings("ignore")
    compound = taxonomy.COMPOUND[:6]
    sp = make_synthetic_splits(classes=[*taxonomy.BASIC, *compound], subjects=(4, 2, 2), per_class=3,
                               image_size=32, seed=0)
    teacher = train_teacher(train=sp["train"], val=sp["val"], config=TeacherConfig(arch="cfer_tiny", max_epochs=2))
    stream = make_stream(train=sp["train"], test=sp["test"], val=sp["val"], basic=teacher.classes,
                         compound=compound, per_step=2, seed=0)
    return sp, teacher, stream


@pytest.fixture(scope="session")
def tiny_stream():
    """Basic + two compound steps on 24x24 faces: small enough for seconds-long runs."""
    return synthetic_stream(subjects=(6, 2, 3), per_class=3, image_size=24, per_step=2,
                            compound=["happily_surprised", "sadly_angry", "awed", "hatred"], seed=0)


def tensor_dataset(x, y):
    """An Avalanche classification dataset over tensors."""
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

    return _make_taskaware_tensor_classification_dataset(torch.as_tensor(x), torch.as_tensor(y).long())


@pytest.fixture
def make_tensor_dataset():
    return tensor_dataset


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def killed_after_step_1(monkeypatch):
    """``kill(run, checkpoint)``: calls ``run(checkpoint)`` (a ``run_order``) and stops it right
    after the checkpoint of step 1 is written, as a kill would."""
    from cfer.continual import resume as resumable

    class Killed(Exception):
        pass

    def kill(run, checkpoint):
        save = resumable._save

        def save_then_die(path, **kwargs):
            save(path, **kwargs)
            if kwargs["step"] == 1:
                raise Killed

        monkeypatch.setattr(resumable, "_save", save_then_die)
        try:
            with pytest.raises(Killed):
                run(checkpoint)
        finally:
            monkeypatch.setattr(resumable, "_save", save)

    return kill
