"""The cfer strategy over one class order, with a checkpoint after every experience.

The student starts as a copy of the trained basic teacher (the first, basic experience
is not trained again: it fills the predictive-sorting memory), then learns the compound
experiences with distillation from the frozen teacher. A student of its own architecture
(``student=``: a single network under an ensemble teacher, a smaller one under a large
teacher) first learns the basic experience for ``basic_epochs`` epochs, with the same
distillation from the teacher, then the compound experiences. After each experience the model,
the optimiser, the replay buffer (as item indices), Avalanche's clock, the three global
random generators and the accuracy matrix so far are written atomically to one
checkpoint. :func:`run_order` started again with the same stream and checkpoint goes on
from the last finished experience and reaches the same result as a run that was never
interrupted. The checkpoint also records the method's settings (the ``CferConfig``,
epochs, learning rate, batch size, memory budget, basic epochs, frozen stages): a resume
with other settings is refused with the differences named, instead of finishing the order
with another method than the one it started with.

:func:`rng_state` / :func:`set_rng_state` capture and restore the global random
generators a training loop touches (Python's ``random``, NumPy's legacy global, torch's
CPU generator and, once CUDA is in use, each GPU's), as plain tensors a checkpoint can hold.

Example:
    >>> results, student = run_order(stream=stream, teacher=teacher, memory_size=300, epochs=4,
    ...                              checkpoint="run/checkpoints/order0.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

from cfer.continual.cfer_config import ADDED_OPTIONS
from cfer.continual.factory import CferConfig
from cfer.continual.growing import head_width
from cfer.continual.metrics import ContinualResults
from cfer.continual.runner import run_stream
from cfer.distributed import barrier, is_main, resolve_device
from cfer.models.freeze import frozen_copy
from cfer.models.io import load_checkpoint, save_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from avalanche.training.templates import SupervisedTemplate

__all__ = ["run_order", "seed_everything", "rng_state", "set_rng_state"]

logger = logging.getLogger(__name__)

_CLOCK = ("train_iterations", "train_exp_counter", "train_exp_epochs", "train_exp_iterations",
          "train_epoch_iterations", "total_iterations")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (Avalanche shuffles with torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global Python, NumPy and torch random states (the CPU's, and each GPU's once CUDA is
    in use), as tensors and numbers."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state().clone(),
        # each GPU's generator (dropout and modality dropout draw there), when CUDA is in use
        "cuda": [t.clone() for t in torch.cuda.get_rng_state_all()] if torch.cuda.is_initialized() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")  # absent from checkpoints written before it was saved
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _student(teacher: nn.Module, *, freeze: int = 0) -> nn.Module:
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    if freeze:
        from cfer.models.freeze import freeze_stages

        freeze_stages(student, stages=freeze)
    student.train()
    return student


def _check_student(student: nn.Module, teacher: nn.Module, *, n_basic: int, basic_epochs: int) -> None:
    if student is teacher:
        raise ValueError("student is the teacher itself; pass student=None to start from a copy of the teacher, "
                         "or a model of its own")
    width = getattr(student, "num_classes", None)
    if width != n_basic:
        raise ValueError(f"the student has {width} outputs but the teacher has {n_basic} basic classes; build it "
                         f"with cfer.continual.growing.build_model(arch, num_classes={n_basic})")
    if basic_epochs < 1 and not getattr(student, "trained_basic", False):
        raise ValueError("a student of its own does not know the basic classes yet: give basic_epochs >= 1 "
                         "(it learns them from the labels and the teacher's distillation)")


def _plugin(strategy, kind: type, *, optional: bool = False):  # noqa: ANN001, ANN202
    """The strategy's plugin of type ``kind``; ``None`` for an ``optional`` one it lacks."""
    for p in strategy.plugins:
        if isinstance(p, kind):
            return p
    if optional:
        return None
    raise RuntimeError(f"the cfer strategy has no {kind.__name__}")  # pragma: no cover - make_strategy adds it


def _replay_policy(strategy):  # noqa: ANN001, ANN202
    from avalanche.training.plugins import ReplayPlugin

    return _plugin(strategy, ReplayPlugin).storage_policy


def _distillation(strategy):  # noqa: ANN001, ANN202
    from cfer.continual.plugins.distillation import BasicDistillationPlugin

    return _plugin(strategy, BasicDistillationPlugin)


def _sigmoid_criterion(strategy):  # noqa: ANN001, ANN202
    """The strategy's per-class sigmoid criterion plugin, or None."""
    from cfer.continual.plugins.sigmoid import SigmoidCriterionPlugin

    return _plugin(strategy, SigmoidCriterionPlugin, optional=True)


def _nearest_mean(strategy):  # noqa: ANN001, ANN202
    """The strategy's nearest-class-mean plugin, or None."""
    from cfer.continual.plugins.ncm import NearestMeanPlugin

    return _plugin(strategy, NearestMeanPlugin, optional=True)


def _augmenters(strategy) -> dict:  # noqa: ANN001
    """The strategy's augmentation plugins, whose generators a checkpoint keeps, by their key
    in the checkpoint: ``mirror`` (``CferConfig(mirror_training=True)``) and ``shift``
    (``CferConfig(shift_training=N)``); those it lacks are left out."""
    from cfer.continual.plugins.mirror_augment import MirrorAugmentPlugin
    from cfer.continual.plugins.shift_augment import ShiftAugmentPlugin

    kinds = {"mirror": MirrorAugmentPlugin, "shift": ShiftAugmentPlugin}
    return {key: p for key, kind in kinds.items() if (p := _plugin(strategy, kind, optional=True)) is not None}


def _named_parameters(strategy) -> dict[str, nn.Parameter]:  # noqa: ANN001
    """What the optimiser trains, by name: the model's parameters and the distillation plugin's."""
    own = {f"distillation.{n}": p for n, p in _distillation(strategy).named_parameters().items()}
    return {**dict(strategy.model.named_parameters()), **own}


def _make_strategy(student: nn.Module, optimizer: torch.optim.Optimizer, teacher: nn.Module, memory_size: int,
                   total_classes: int, *, epochs: int, batch_size: int, cfer: CferConfig,
                   loggers: Sequence[object] = (), basic_epochs: int = 0,
                   device: torch.device = torch.device("cpu")) -> "SupervisedTemplate":
    from cfer.continual.factory import make_strategy
    from cfer.continual.metrics import make_evaluator
    from cfer.continual.plugins.ddp import DistributedPlugin, per_process_batch
    from cfer.continual.plugins.epochs import BasicEpochsPlugin

    return make_strategy("cfer", model=student, optimizer=optimizer, train_epochs=epochs,
                         train_mb_size=per_process_batch(batch_size), eval_mb_size=256, memory_size=memory_size,
                         total_classes=total_classes, teacher=teacher, cfer=cfer,
                         evaluator=make_evaluator(loggers=loggers), device=device,
                         plugins=[BasicEpochsPlugin(basic_epochs=basic_epochs, later_epochs=epochs),
                                  DistributedPlugin()])


def _differences(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """``"name: saved -> now"`` for every setting that differs (nested dicts by dotted name)."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key, "(absent)"), now.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _check_settings(checkpoint: Path, state: dict, settings: dict) -> None:
    """Refuse to resume ``checkpoint`` with other method settings than it was trained with."""
    if "settings" not in state:  # written before checkpoints recorded them
        logger.warning("checkpoint %s does not record the settings it was trained with (an older cfer wrote it): "
                       "it resumes with today's, which cannot be checked against the run's", checkpoint)
        return
    saved = state["settings"]
    if isinstance(saved.get("cfer"), dict):  # options added since the checkpoint was written: their old behaviour
        saved = {**saved, "cfer": {**ADDED_OPTIONS, **saved["cfer"]}}
    diff = _differences(saved, settings)
    if diff:
        raise ValueError(f"checkpoint {checkpoint} was trained with other settings than this resume asks for "
                         f"(checkpoint -> now): {'; '.join(diff)}. Resume with the settings the order was started "
                         "with (e.g. CferConfig(...) with the checkpoint's values), or delete the checkpoint to "
                         "train this order again")


def _save(path: Path, *, step: int, strategy, optimizer: torch.optim.Optimizer,  # noqa: ANN001
          results: ContinualResults, meta: dict, settings: dict) -> None:
    names = {id(p): n for n, p in _named_parameters(strategy).items()}
    order = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    save_checkpoint(path, {
        "step": step,
        "model": strategy.model.state_dict(),
        "plugins": {"distillation": _distillation(strategy).state_dict(),
                    **({"nearest_mean": ncm.state_dict()} if (ncm := _nearest_mean(strategy)) is not None else {}),
                    **{key: p.state_dict() for key, p in _augmenters(strategy).items()}},
        "optimizer": optimizer.state_dict(),
        "optimizer_params": order,
        "buffer": _replay_policy(strategy).state_dict(),
        "clock": {k: int(getattr(strategy.clock, k)) for k in _CLOCK},
        "rng": rng_state(),
        "results": {"n_test": results.n_test, "matrix": results.matrix, "step_time_s": results.step_time_s},
        "meta": meta,
        "settings": settings,
    })


def run_order(*, stream, teacher: nn.Module, memory_size: int, checkpoint: str | Path,  # noqa: ANN001
              epochs: int = 4, lr: float = 2e-3, batch_size: int = 32, cfer: CferConfig = CferConfig(),
              seed: int = 0, progress: bool = False, desc: str = "compound steps",
              loggers: Sequence[object] = (), student: nn.Module | None = None,
              basic_epochs: int = 0, freeze_stages: int = 0,
              device: str | torch.device = "cpu", num_workers: int = 0) -> tuple[ContinualResults, nn.Module]:
    """Train the cfer student over ``stream``, checkpointing after every experience.

    Args:
        stream: A :class:`~cfer.continual.stream.CompoundStream` whose first experience holds
            the teacher's classes, in the teacher's output order.
        teacher: The trained basic teacher (a ``GrowingClassifier`` or ``GrowingEnsemble``);
            it is not modified.
        memory_size: Replay budget ``M`` in items.
        checkpoint: Checkpoint file; if it exists the run resumes from it.
        epochs: Epochs per compound experience.
        lr: Adam learning rate of the student.
        batch_size: Training mini-batch size.
        cfer: Distillation, PSMR and bias-correction options.
        seed: Seed of the global generators at the start (shuffling, augmentation).
        progress: Show a tqdm bar over experiences.
        desc: Label of the bar.
        loggers: Avalanche loggers (:func:`cfer.continual.loggers.make_loggers`); with any,
            the evaluator also measures losses, distillation terms and memory size for
            them. The caller closes them.
        student: A student of its own architecture with the teacher's basic outputs (a
            ``GrowingClassifier`` from :func:`cfer.continual.growing.build_model`, e.g. a
            single ``resemotenet_slim`` under an ensemble teacher, or a trained member of
            an ensemble teacher from :func:`cfer.continual.growing.member_classifier`); it
            is trained in place. None: a copy of the teacher.
        basic_epochs: Epochs on the basic experience (distillation from the teacher
            included). Must be > 0 with a fresh ``student``; 0 with the teacher's copy or a
            member's (``member_classifier`` marks it ``trained_basic``), which already know
            the basic classes.
        freeze_stages: Keep the student's stem and first ``freeze_stages`` blocks or stages
            frozen (``cfer.models.freeze_stages``), as the teacher was trained (re-applied on
            resume: ``requires_grad`` is not part of a checkpoint). Applies to the teacher's
            copy; a ``student`` of its own trains every layer.
        device: Where the student (and the teacher it distils from) train: a
            :func:`cfer.distributed.resolve_device` spelling or a device. The final student
            is returned on the CPU.
        num_workers: Worker processes of the training data loaders (0: none).

    Under ``torchrun`` (:mod:`cfer.distributed`) every process runs this with the same
    arguments: ``batch_size`` is the global mini-batch (each process takes its share, see
    :class:`~cfer.continual.plugins.ddp.DistributedPlugin`), the replay memory is selected
    from scores gathered from all processes (the same items on every one), evaluation is
    sharded and summed, and only rank 0 writes the checkpoint.

    Returns:
        The accuracy matrix and derived metrics, and the final student.

    Raises:
        ValueError: If the checkpoint belongs to another stream (other classes or steps) or
            was trained with other settings (``cfer``, ``epochs``, ``lr``, ``batch_size``,
            ``memory_size``, ``basic_epochs``, ``freeze_stages``), or for a ``student``
            without the teacher's outputs or without basic epochs.
    """
    checkpoint = Path(checkpoint)
    if teacher.num_classes != stream.n_basic:
        raise ValueError(f"the teacher has {teacher.num_classes} outputs but the stream's first experience has "
                         f"{stream.n_basic} classes; build the stream with the teacher's classes as basic")
    if basic_epochs < 0:
        raise ValueError(f"basic_epochs must be >= 0, got {basic_epochs}")
    meta = {"class_names": list(stream.class_names), "n_steps": stream.n_steps}
    settings = {"cfer": dataclasses.asdict(cfer), "epochs": epochs, "lr": lr, "batch_size": batch_size,
                "memory_size": memory_size, "basic_epochs": basic_epochs, "freeze_stages": freeze_stages}
    if student is None:
        student = _student(teacher, freeze=freeze_stages)
    else:
        _check_student(student, teacher, n_basic=stream.n_basic, basic_epochs=basic_epochs)
        student.train()
    if cfer.head == "cosine":  # before a checkpoint's state (with the head's scale) loads into it
        from cfer.continual.cosine_head import use_cosine_head

        use_cosine_head(student)
    test = stream.test_stream
    results = ContinualResults(n_test=[len(e.dataset) for e in test])
    state = load_checkpoint(checkpoint) if checkpoint.is_file() else None
    if state is not None:
        if state["meta"] != meta:
            raise ValueError(f"checkpoint {checkpoint} belongs to another stream ({state['meta']['class_names']}); "
                             "resume with the run's own config, or delete the checkpoint")
        _check_settings(checkpoint, state, settings)
        student.grow(head_width(state["model"]))
        student.load_state_dict(state["model"])
    else:
        seed_everything(seed)
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    student.to(device)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    strategy = _make_strategy(student, optimizer, teacher, memory_size, len(stream.class_names), epochs=epochs,
                              batch_size=batch_size, cfer=cfer, loggers=loggers, basic_epochs=basic_epochs,
                              device=device)
    if state is not None:
        distill = _distillation(strategy)
        distill.load_state_dict(state["plugins"]["distillation"])
        if distill.projection is not None:  # on the device before the optimiser's state is loaded onto it
            distill.projection.to(device)
        # The previous step's student is the checkpoint's (copied before any hook is on it).
        if distill.previous_weight > 0 or distill.previous_feature_weight > 0:
            distill.previous = distill._freeze(student)
        sigmoid = _sigmoid_criterion(strategy)
        if sigmoid is not None and sigmoid.distil_old:
            sigmoid.previous = frozen_copy(student)
        ncm = _nearest_mean(strategy)
        if ncm is not None and "nearest_mean" in state["plugins"]:  # predict as the run did after that step
            ncm.load_state_dict(state["plugins"]["nearest_mean"])
            ncm.attach(student)
        for key, plugin in _augmenters(strategy).items():  # the flips and shifts the run would have drawn next
            if key in state["plugins"]:
                plugin.load_state_dict(state["plugins"][key])
        params = _named_parameters(strategy)
        optimizer.param_groups.clear()
        optimizer.state.clear()
        for group in state["optimizer_params"]:
            optimizer.add_param_group({"params": [params[n] for n in group]})
        optimizer.load_state_dict(state["optimizer"])
        # Avalanche tracks the model's optimised parameters by name; without this it would
        # reset the optimiser's state on its first call, unlike the uninterrupted run.
        model_params = dict(student.named_parameters())
        strategy.optimized_param_id = {n: model_params[n] for group in state["optimizer_params"] for n in group
                                       if n in model_params}
        for k, v in state["clock"].items():
            setattr(strategy.clock, k, v)
        _replay_policy(strategy).load_state_dict(state["buffer"], datasets=[e.dataset for e in stream.train_stream])
        for row, secs in zip(state["results"]["matrix"], state["results"]["step_time_s"]):
            results.add_step(accuracies=row, seconds=secs)
        set_rng_state(state["rng"])
        logger.info("resuming %s from experience %d of %d", checkpoint, int(state["step"]) + 1, stream.n_steps)

    def save(i: int, res: ContinualResults) -> None:
        if is_main():
            _save(checkpoint, step=i, strategy=strategy, optimizer=optimizer, results=res, meta=meta,
                  settings=settings)
        barrier()

    run_stream(strategy, stream, progress=progress and is_main(), desc=desc, results=results, after_step=save,
               num_workers=num_workers)
    student = strategy.model
    student.cpu().eval()
    return results, student
