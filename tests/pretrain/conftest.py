"""Tiny unlabelled faces for the pretraining tests: a few dozen 32-pixel synthetic faces."""

import pytest
import torch

from cfer.data.synthetic import render_faces


@pytest.fixture(scope="session")
def faces32():
    """36 grey 32x32 faces (6 subjects x 6 basic classes) as a float tensor (N, 1, 32, 32)."""
    ds = render_faces(classes="basic", n_subjects=6, per_class=1, image_size=32, channels=1, seed=3)
    return ds.tensors()[0]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
