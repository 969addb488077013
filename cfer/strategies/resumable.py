"""The cfer strategy over one class order, with a checkpoint after every experience.

The student starts as a copy of the trained basic teacher (the first, basic experience
is not trained again: it fills the predictive-sorting memory), then learns the compound
experiences with distillation from the frozen teacher. After each experience the model,
the optimiser, the replay buffer (as item indices), Avalanche's clock, the three global
random generators and the accuracy matrix so far are written atomically to one
checkpoint. :func:`run_order` started again with the same stream and checkpoint goes on
from the last finished experience and reaches the same result as a run that was never
interrupted.

Example:
    >>> results, student = run_order(stream=stream, teacher=teacher, settings=ContinualConfig(),
    ...                              memory_size=300, checkpoint="run/checkpoints/order0.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cfer.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from cfer.config import ContinualConfig
from cfer.metrics import ContinualResults
from cfer.strategies.runner import run_stream

__all__ = ["run_order", "seed_everything"]

logger = logging.getLogger(__name__)

_PROJECTION = "cfer_feature_projection"
_CLOCK = ("train_iterations", "train_exp_counter", "train_exp_epochs", "train_exp_iterations",
          "train_epoch_iterations", "total_iterations")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (Avalanche shuffles with torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _student(teacher: nn.Module) -> nn.Module:
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    student.train()
    return student


def _restore_shapes(student: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give a fresh student the head width and projection a checkpointed one had."""
    student.grow(int(state["head.classifier.weight"].shape[0]))
    w = state.get(f"{_PROJECTION}.weight")
    if w is not None and getattr(student, _PROJECTION, None) is None:
        student.add_module(_PROJECTION, nn.Linear(int(w.shape[1]), int(w.shape[0])))


def _replay_policy(strategy):  # noqa: ANN001, ANN202
    from avalanche.training.plugins import ReplayPlugin

    for p in strategy.plugins:
        if isinstance(p, ReplayPlugin):
            return p.storage_policy
    raise RuntimeError("the cfer strategy has no replay plugin")  # pragma: no cover - make_strategy adds it


def _make_strategy(student: nn.Module, optimizer: torch.optim.Optimizer, teacher: nn.Module,
                   settings: ContinualConfig, memory_size: int, total_classes: int):  # noqa: ANN202
    from cfer.strategies.factory import CferConfig, make_strategy
    from cfer.strategies.runner import basic_epochs_plugin

    cfer_opts = CferConfig(
        distillation={"gamma0": settings.gamma0, "temperature": settings.temperature,
                      "feature_weight": settings.feature_weight},
        psmr={"mode": settings.psmr_mode}, logit_adjustment=settings.logit_adjustment)
    return make_strategy("cfer", model=student, optimizer=optimizer, train_epochs=settings.epochs,
                         train_mb_size=settings.batch_size, eval_mb_size=256, memory_size=memory_size,
                         total_classes=total_classes, teacher=teacher, cfer=cfer_opts,
                         plugins=[basic_epochs_plugin(basic_epochs=0, later_epochs=settings.epochs)])


def _save(path: Path, *, step: int, strategy, optimizer: torch.optim.Optimizer,  # noqa: ANN001
          results: ContinualResults, meta: dict) -> None:
    names = {id(p): n for n, p in strategy.optimized_param_id.items()}
    order = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    save_checkpoint(path, {
        "step": step,
        "model": strategy.model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "optimizer_params": order,
        "buffer": _replay_policy(strategy).state_dict(),
        "clock": {k: int(getattr(strategy.clock, k)) for k in _CLOCK},
        "rng": rng_state(),
        "results": {"n_test": results.n_test, "matrix": results.matrix, "step_time_s": results.step_time_s},
        "meta": meta,
    })


def run_order(*, stream, teacher: nn.Module, settings: ContinualConfig, memory_size: int,  # noqa: ANN001
              checkpoint: str | Path, seed: int = 0, progress: bool = False,
              desc: str = "compound steps") -> tuple[ContinualResults, nn.Module]:
    """Train the cfer student over ``stream``, checkpointing after every experience.

    Args:
        stream: A :class:`~cfer.scenarios.CompoundStream` whose first experience holds the
            teacher's classes, in the teacher's output order.
        teacher: The trained basic teacher (a ``GrowingClassifier``); it is not modified.
        settings: Epochs, learning rate, budget mode and distillation weights.
        memory_size: Replay budget ``M`` in items.
        checkpoint: Checkpoint file; if it exists the run resumes from it.
        seed: Seed of the global generators at the start (shuffling, augmentation).
        progress: Show a tqdm bar over experiences.
        desc: Label of the bar.

    Returns:
        The accuracy matrix and derived metrics, and the final student.

    Raises:
        ValueError: If the checkpoint belongs to another stream (other classes or steps).
    """
    checkpoint = Path(checkpoint)
    if teacher.num_classes != stream.n_basic:
        raise ValueError(f"the teacher has {teacher.num_classes} outputs but the stream's first experience has "
                         f"{stream.n_basic} classes; build the stream with the teacher's classes as basic")
    meta = {"class_names": list(stream.class_names), "n_steps": stream.n_steps}
    student = _student(teacher)
    test = stream.test_stream
    results = ContinualResults(n_test=[len(e.dataset) for e in test])
    state = load_checkpoint(checkpoint) if checkpoint.is_file() else None
    if state is not None:
        if state["meta"] != meta:
            raise ValueError(f"checkpoint {checkpoint} belongs to another stream ({state['meta']['class_names']}); "
                             "resume with the run's own config, or delete the checkpoint")
        _restore_shapes(student, state["model"])
        student.load_state_dict(state["model"])
        params = dict(student.named_parameters())
        optimizer = torch.optim.Adam([{"params": [params[n] for n in group]} for group in state["optimizer_params"]],
                                     lr=settings.lr)
        optimizer.load_state_dict(state["optimizer"])
    else:
        seed_everything(seed)
        optimizer = torch.optim.Adam(student.parameters(), lr=settings.lr)
    strategy = _make_strategy(student, optimizer, teacher, settings, memory_size, len(stream.class_names))
    if state is not None:
        # Avalanche tracks the optimised parameters by name; without this it would reset the
        # optimiser's state on its first call, unlike the uninterrupted run.
        strategy.optimized_param_id = {n: params[n] for group in state["optimizer_params"] for n in group}
        for k, v in state["clock"].items():
            setattr(strategy.clock, k, v)
        _replay_policy(strategy).load_state_dict(state["buffer"], datasets=[e.dataset for e in stream.train_stream])
        for row, secs in zip(state["results"]["matrix"], state["results"]["step_time_s"]):
            results.add_step(accuracies=row, seconds=secs)
        set_rng_state(state["rng"])
        logger.info("resuming %s from experience %d of %d", checkpoint, int(state["step"]) + 1, stream.n_steps)

    def save(i: int, res: ContinualResults) -> None:
        _save(checkpoint, step=i, strategy=strategy, optimizer=optimizer, results=res, meta=meta)

    run_stream(strategy, stream, progress=progress, desc=desc, results=results, after_step=save)
    student = strategy.model
    student.eval()
    return results, student
