import random

import numpy as np
import pytest
import torch

from cfer.continual.resume import rng_state, set_rng_state
from cfer.models.io import UnsafeFileError, load_checkpoint, save_checkpoint


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_random_states_survive_a_checkpoint_file(tmp_path):
    state = rng_state()
    expected = _draws()
    save_checkpoint(tmp_path / "c.pt", {"rng": state, "step": 3})
    _draws()
    loaded = load_checkpoint(tmp_path / "c.pt")
    set_rng_state(loaded["rng"])
    assert _draws() == expected and loaded["step"] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpus_random_states_survive_a_checkpoint_file(tmp_path):
    torch.rand(1, device="cuda")  # CUDA in use
    state = rng_state()
    expected = torch.rand(4, device="cuda").cpu()
    save_checkpoint(tmp_path / "c.pt", {"rng": state})
    torch.rand(4, device="cuda")
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert torch.equal(torch.rand(4, device="cuda").cpu(), expected)


def test_an_older_checkpoint_without_gpu_states_still_restores(tmp_path):
    state = {k: v for k, v in rng_state().items() if k != "cuda"}
    expected = _draws()
    _draws()
    set_rng_state(state)
    assert _draws() == expected


class _Payload:
    """Unpickling this calls Path.touch: a stand-in for code an attacker would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def test_a_file_carrying_a_pickled_object_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "cfer-checkpoint/1", "step": 1, "x": _Payload(marker)}, path)
    with pytest.raises(UnsafeFileError, match="weights_only=True, so it is refused") as err:
        load_checkpoint(path)
    assert not marker.exists()
    assert "\x1b[" not in str(err.value)


def test_other_files_are_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a cfer checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(UnsafeFileError):
        load_checkpoint(tmp_path / "text.pt")
