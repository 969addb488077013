import numpy as np
import pytest
import torch

from cfer.continual.stream import synthetic_stream


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
