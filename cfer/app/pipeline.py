"""The main job: teacher → compound steps → few-shot episodes → Grad-CAM → report.

:func:`run_pipeline` writes everything into one run folder::

    RUN/
      config.yaml              the effective configuration (what --resume reads)
      teacher.pt               the basic teacher (early stopping on validation subjects)
      method.json              the cfer strategy's resolved options (a resume after an upgrade keeps them)
      checkpoints/order0.pt    after every experience: model, optimiser, buffer, RNG, metrics
      students/order0.pt       the final student of each class order
      results/order0.json      accuracy matrix and metrics of each class order
      confusion.json           confusion matrices of the student and the teacher on the test faces
      fewshot.json             N-way K-shot episodes, teacher vs student, 95% CI
      explain/                 Grad-CAM figures and region attention (teacher, student)
      data.json                which faces went to which split (a resume on changed data is refused)
      timing.json              seconds per stage, summed over invocations, written after each stage
      .cfer.lock               locked while a process works in the folder (one run at a time)
      metrics.json  tables/*.csv  figures/*.png  report.html
                               (metrics.json's "scores": per-class precision, recall, F1 and
                               macro-F1 of the student and the teacher, from confusion.json)

Under ``torchrun`` (``cfer run --nproc N``) every process runs the data, teacher and
continual stages together (DDP; :mod:`cfer.distributed`); rank 0 alone claims, locks and
writes the folder and runs the cheap stages after them and the report.

Each stage's output marks it as done, and every file is written atomically, so a run
killed at any point goes on with ``run_pipeline(..., resume=True)`` (``cfer run --resume
RUN``) from its last finished experience and reaches the same metrics as a run that was
never interrupted (the global random generators are seeded per stage and restored from
the checkpoints).

The job is the list of stages in :mod:`cfer.app.stages`; this module runs them in order,
times each one and writes the report.

Example:
    >>> from cfer.app.config import RunConfig
    >>> metrics = run_pipeline(RunConfig(), out_dir="runs/demo")        # doctest: +SKIP
    >>> metrics["continual"]["summary"]["average_accuracy"]["mean"]      # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

import cfer
from cfer.app.config import RunConfig
from cfer.app.config_io import config_from_dict, dump_config, load_config
from cfer.app.fingerprint import check_same_data, fingerprint
from cfer.app.launch import local_threads
from cfer.app.prepare import check_inputs
from cfer.app.runfolder import RunExistsError, claim_run_folder
from cfer.app.stages import DISTRIBUTED_STAGES, STAGES, RunState, Stage
from cfer.atomic import write_json, write_text
from cfer.continual.scores import class_scores
from cfer.distributed import barrier, is_main

__all__ = ["run_pipeline", "load_run_config", "RunExistsError"]

logger = logging.getLogger(__name__)


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The configuration a run folder was started with (its ``config.yaml``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a cfer run folder (no config.yaml); give the folder a run wrote")
    return config_from_dict(load_config(path))


def run_pipeline(config: RunConfig, *, out_dir: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) the whole job and write the run folder.

    Args:
        config: The run's configuration (with ``resume``, it must be the one the folder holds:
            read it with :func:`load_run_config`).
        out_dir: The run folder.
        resume: Go on from what the folder holds; without it the folder must be new or empty.
        progress: Show progress bars.

    Returns:
        The metrics (also written to ``metrics.json``).

    Raises:
        RunExistsError: If ``out_dir`` holds a run and ``resume`` is false.
        RunFolderError: If ``out_dir`` is a file or a non-empty folder that is not a run
            (:mod:`cfer.app.runfolder`); :class:`~cfer.app.runfolder.RunLockedError` if
            another process is running in it.
        DataChangedError: With ``resume``, if the data differs from the data the run
            started with (:mod:`cfer.app.fingerprint`).
        ValueError: If the data does not suit the config (see :func:`cfer.app.prepare.prepare_data`).
    """
    from cfer.app.report import write_report

    run = Path(out_dir)
    # Under torchrun rank 0 claims, locks and writes the folder; every rank reads the data
    # and trains the teacher and the continual stream together; rank 0 alone runs the rest.
    main = is_main()
    with (claim_run_folder(run, resume=resume) if main else _follower(run)) as folder:
        if resume:
            saved = load_run_config(run)
            if saved != config:
                raise ValueError(f"the config differs from the one {run} was started with; resume with "
                                 f"load_run_config({str(run)!r})")
        timing = _Timing(run, resume=resume, write=main)
        state = RunState(config=config, folder=run, progress=progress and main)
        torch.set_num_threads(local_threads(config.threads))
        data_stage, *stages = STAGES
        try:
            check_inputs(config)
            timing.time(data_stage.name, partial(_run_stage, data_stage, state), write=False)
            splits = state.data
            now = fingerprint({"train": splits.train, "val": splits.val, "test": splits.test})
            if resume:
                _check_data(run, now)
        except BaseException:
            if not resume and main:  # nothing of this run is worth keeping: the same command can run again
                folder.abandon()
            raise
        if main:
            if not resume:  # config.yaml first: a folder that has it is a run, which --resume can go on with
                write_text(run / "config.yaml", dump_config(config))
            if not (run / "data.json").is_file():
                write_json(run / "data.json", now)
        timing.write()
        for stage in stages:
            if stage.name in DISTRIBUTED_STAGES:
                barrier()  # every rank sees the same finished stages (rank 0 writes them)
            elif not main:
                break  # the stages after the continual stream are cheap: rank 0 runs them alone
            timing.time(stage.name, partial(_run_stage, stage, state))
        if not main:
            return {}
        metrics = _metrics(state)
        timing.time("report", partial(write_report, run, metrics=metrics, config=config, timing=timing.values))
    return metrics


@contextmanager
def _follower(run: Path) -> Iterator[None]:
    """A rank other than 0: it neither claims nor locks the folder (rank 0 holds it)."""
    yield None


def _run_stage(stage: Stage, state: RunState) -> None:
    state.outputs[stage.name] = stage(state)


def _check_data(run: Path, now: dict) -> None:
    """Refuse a resume whose data differs from the data the run started with."""
    path = run / "data.json"
    if path.is_file():
        check_same_data(saved=json.loads(path.read_text()), now=now)
    else:
        logger.warning("%s has no data.json (a run of an older cfer): the data cannot be checked against the one it "
                       "started with; it is recorded now", run)


class _Timing:
    """Seconds per stage in ``timing.json``, summed over every invocation of the run and
    written after each stage, so the stages finished by a killed invocation count too."""

    def __init__(self, run: Path, *, resume: bool, write: bool = True) -> None:
        self.path, self.writes = run / "timing.json", write
        before = json.loads(self.path.read_text()) if resume and self.path.is_file() else {}
        self.values: dict[str, float] = {k: float(v) for k, v in before.items() if k != "invocations"}
        self.values["invocations"] = int(before.get("invocations", 0)) + 1

    def time(self, name: str, work: Callable[[], object], *, write: bool = True) -> None:
        t0 = time.perf_counter()
        work()
        key = f"{name}_s"
        self.values[key] = self.values.get(key, 0.0) + time.perf_counter() - t0
        if write:
            self.write()

    def write(self) -> None:
        if self.writes:
            write_json(self.path, self.values)


_TEACHER_KEYS = ("val_accuracy", "test_accuracy", "best_epoch", "epochs_run", "recipe", "members", "fusion_weights")
_ALWAYS = _TEACHER_KEYS[:5]  # "members" and "fusion_weights" only for an ensemble teacher
_SUMMARY_KEYS = ("average_accuracy", "final_accuracy", "final_basic_accuracy", "final_compound_accuracy",
                 "mean_newest_accuracy", "forgetting")


def _metrics(state: RunState) -> dict:
    from cfer.continual.presets import describe_preset
    from cfer.machine import describe

    data, out = state.data, state.outputs
    records = out["continual"]["records"]
    teacher_info = out["teacher"][1]
    return {
        "cfer_version": cfer.__version__,
        "machine": describe(),  # runs repeat to the digit on one machine only (cfer.machine)
        "data": {"source": data.source, "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
                 "basic": list(data.basic), "compound": list(data.compound), "holdout": list(data.holdout),
                 "fewshot_classes": list(data.fewshot_classes), "unused": dict(data.unused),
                 "skipped": dict(data.skipped)},
        "teacher": {k: teacher_info.get(k) for k in _TEACHER_KEYS if k in _ALWAYS or k in teacher_info},
        "continual": {"strategy": describe_preset(state.config.continual.strategy, out["continual"]["method"]),
                      "orders": records, "summary": _summary(records)},
        "confusion": out["confusion"],
        "scores": _scores(out["confusion"], basic=data.basic),
        "fewshot": out["fewshot"],
        "explain": out["explain"],
    }


def _scores(confusions: dict, *, basic: tuple[str, ...]) -> dict:
    """Per-class precision, recall, F1 and macro-F1 of each model, from the confusion stage's
    counts (no forward pass: a resumed run reads them from confusion.json and gets the same).
    "basic" and "compound" are the stream's roles: ``basic`` is its first step's classes
    (``--basic``), every other class came in a later step. Each model is scored on the faces
    of its own classes (``closed_set``); a model shown faces it has no output for (the basic
    teacher, the later classes' faces) also gets ``macro_f1_open_set``, with those faces
    counted as false positives of the outputs they land on."""
    out = {}
    for model, c in confusions.items():
        kw = dict(rows=c["classes"], outputs=c["outputs"], basic=basic)
        scores = class_scores(c["counts"], closed_set=True, **kw).to_dict()
        if scores["unscored"]:
            scores["macro_f1_open_set"] = class_scores(c["counts"], **kw).macro_f1()
        out[model] = scores
    return out


def _summary(records: list[dict]) -> dict:
    out = {}
    for key in _SUMMARY_KEYS:
        vals = np.array([r[key] for r in records if r.get(key) is not None], float)
        if len(vals):
            out[key] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(len(vals))}
    return out
