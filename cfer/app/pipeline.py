"""The main job: teacher → compound steps → few-shot episodes → Grad-CAM → report.

:func:`run_pipeline` writes everything into one run folder::

    RUN/
      config.yaml              the effective configuration (what --resume reads)
      teacher.pt               the basic teacher (early stopping on validation subjects)
      checkpoints/order0.pt    after every experience: model, optimiser, buffer, RNG, metrics
      students/order0.pt       the final student of each class order
      results/order0.json      accuracy matrix and metrics of each class order
      confusion.json           confusion matrices of the student and the teacher on the test faces
      fewshot.json             N-way K-shot episodes, teacher vs student, 95% CI
      explain/                 Grad-CAM figures and region attention (teacher, student)
      metrics.json  tables/*.csv  figures/*.png  report.html

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
from pathlib import Path

import numpy as np
import torch

import cfer
from cfer.app.config import RunConfig
from cfer.app.config_io import config_from_dict, dump_config, load_config
from cfer.app.prepare import check_inputs
from cfer.app.stages import STAGES, RunState
from cfer.atomic import write_json, write_text

__all__ = ["run_pipeline", "load_run_config", "RunExistsError"]

logger = logging.getLogger(__name__)


class RunExistsError(ValueError):
    """The output folder already holds a run."""


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
        ValueError: If the data does not suit the config (see :func:`cfer.app.prepare.prepare_data`).
    """
    from cfer.app.report import write_report

    run = Path(out_dir)
    if resume:
        saved = load_run_config(run)
        if saved != config:
            raise ValueError(f"the config differs from the one {run} was started with; resume with "
                             f"load_run_config({str(run)!r})")
    elif (run / "config.yaml").exists():
        raise RunExistsError(f"{run} already holds a run; resume it with `cfer run --resume {run}` or choose "
                             "another --out")
    check_inputs(config)
    write_text(run / "config.yaml", dump_config(config))
    torch.set_num_threads(config.threads)
    state = RunState(config=config, folder=run, progress=progress)
    timing: dict[str, float] = {}
    for stage in STAGES:
        t0 = time.perf_counter()
        state.outputs[stage.name] = stage(state)
        timing[f"{stage.name}_s"] = time.perf_counter() - t0
    metrics = _metrics(state)
    # Seconds spent on each stage, summed over this call and the calls before a kill.
    before = json.loads((run / "timing.json").read_text()) if resume and (run / "timing.json").is_file() else {}
    timing = {k: before.get(k, 0.0) + v for k, v in timing.items()}
    timing["invocations"] = int(before.get("invocations", 0)) + 1
    t0 = time.perf_counter()
    write_report(run, metrics=metrics, config=config, timing=timing)
    timing["report_s"] = before.get("report_s", 0.0) + time.perf_counter() - t0
    write_json(run / "timing.json", timing)
    return metrics


_TEACHER_KEYS = ("val_accuracy", "test_accuracy", "best_epoch", "epochs_run")
_SUMMARY_KEYS = ("average_accuracy", "final_accuracy", "final_basic_accuracy", "final_compound_accuracy",
                 "mean_newest_accuracy", "forgetting")


def _metrics(state: RunState) -> dict:
    data, out = state.data, state.outputs
    records = out["continual"]["records"]
    teacher_info = out["teacher"][1]
    return {
        "cfer_version": cfer.__version__,
        "data": {"source": data.source, "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
                 "basic": list(data.basic), "compound": list(data.compound), "holdout": list(data.holdout),
                 "fewshot_classes": list(data.fewshot_classes)},
        "teacher": {k: teacher_info.get(k) for k in _TEACHER_KEYS},
        "continual": {"orders": records, "summary": _summary(records)},
        "confusion": out["confusion"],
        "fewshot": out["fewshot"],
        "explain": out["explain"],
    }


def _summary(records: list[dict]) -> dict:
    out = {}
    for key in _SUMMARY_KEYS:
        vals = np.array([r[key] for r in records if r.get(key) is not None], float)
        if len(vals):
            out[key] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(len(vals))}
    return out
