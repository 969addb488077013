"""Loggers: names checked with the fix, and what a killed-then-resumed run writes."""

import csv
import importlib.util

import numpy as np
import pytest

from cfer import taxonomy
from cfer.continual import loggers as lg
from cfer.continual import resume as resumable
from cfer.continual.plugins.monitor import TERM_NAMES

COMPOUND = taxonomy.COMPOUND[:6]


def test_a_wrong_logger_name_says_the_closest_one():
    with pytest.raises(ValueError, match=r"unknown logger 'tensorbord' \(did you mean 'tensorboard'\?\)"):
        lg.check_logger("tensorbord")
    assert lg.check_logger(" CSV ") == "csv"
    assert lg.make_loggers("none", folder="unused") == []


def test_a_missing_package_is_named_with_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ValueError, match=r"wandb-offline logger needs the 'wandb' package; install it with "
                                         r"`pip install wandb`"):
        lg.check_logger("wandb-offline", installed=True)
    assert lg.check_logger("wandb-offline") == "wandb-offline"  # the name alone is fine


@pytest.fixture(scope="module")
def setup(teacher_and_stream):
    sp, teacher, stream = teacher_and_stream
    return teacher, stream


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run(stream, teacher, folder, ckpt):
    loggers = [*lg.make_loggers("csv", folder=folder / "csv"), *lg.make_loggers("tensorboard", folder=folder / "tb")]
    try:
        return resumable.run_order(stream=stream, teacher=teacher.model, epochs=2, memory_size=40, checkpoint=ckpt,
                                   seed=3, loggers=loggers)
    finally:
        lg.close_loggers(loggers)


def test_a_resumed_run_keeps_logging_every_step(setup, tmp_path, killed_after_step_1):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    teacher, stream = setup
    killed_after_step_1(lambda c: _run(stream, teacher, tmp_path / "logs", c), tmp_path / "ckpt.pt")
    results, _ = _run(stream, teacher, tmp_path / "logs", tmp_path / "ckpt.pt")
    assert len(results.matrix) == stream.n_steps == 4

    rows = _rows(tmp_path / "logs" / "csv" / "metrics.csv")
    names = {r["name"] for r in rows}
    assert set(TERM_NAMES) <= names
    assert {"Loss_MB/train_phase/train_stream", "Top1_Acc_Epoch/train_phase/train_stream"} <= names
    # Per step, the accuracy on the seen test stream is the run's pooled seen-class accuracy.
    stream_acc = [float(r["value"]) for r in rows if r["name"] == "Top1_Acc_Stream/eval_phase/test_stream"]
    assert stream_acc == pytest.approx(results.seen_accuracy)
    memory = [float(r["value"]) for r in rows if r["name"] == "Memory/items"]
    seen = np.cumsum([len(c) for c in stream.step_classes])
    # the cfer preset's PSMR "limit": a first-step class gets half a later class's share of M = 40
    first = seen[0]
    shares = [0.5 * first + n - first for n in seen]
    assert memory == [first * (20 // s) + (n - first) * (40 // s) for n, s in zip(seen, shares)] == [36, 40, 32, 36]
    assert all(float(r["value"]) > 0 for r in rows if r["name"] == "Distillation/kd")
    # Avalanche's CSVLogger kept the first part's rows: every compound experience, 2 epochs each.
    train = _rows(tmp_path / "logs" / "csv" / "training_results.csv")
    assert [(int(r["training_exp"]), int(r["epoch"])) for r in train] == [(e, k) for e in (1, 2, 3) for k in (0, 1)]
    evals = _rows(tmp_path / "logs" / "csv" / "eval_results.csv")
    last = {(int(r["eval_exp"]), int(r["training_exp"])): float(r["eval_accuracy"]) for r in evals}
    assert [last[(j, 3)] for j in range(4)] == pytest.approx(results.matrix[-1], abs=1e-4)

    acc = EventAccumulator(str(tmp_path / "logs" / "tb"))
    acc.Reload()
    assert set(TERM_NAMES) <= set(acc.Tags()["scalars"])
    tb_acc = [e.value for e in acc.Scalars("Top1_Acc_Stream/eval_phase/test_stream")]
    assert tb_acc == pytest.approx(results.seen_accuracy, abs=1e-6)
