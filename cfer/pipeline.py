"""The main job: teacher → compound steps → few-shot episodes → Grad-CAM → report.

:func:`run_pipeline` writes everything into one run folder::

    RUN/
      config.yaml              the effective configuration (what --resume reads)
      teacher.pt               the basic teacher (early stopping on validation subjects)
      checkpoints/order0.pt    after every experience: model, optimiser, buffer, RNG, metrics
      students/order0.pt       the final student of each class order
      results/order0.json      accuracy matrix and metrics of each class order
      fewshot.json             N-way K-shot episodes, teacher vs student, 95% CI
      explain/                 Grad-CAM figures and region attention (teacher, student)
      metrics.json  tables/*.csv  figures/*.png  report.html

Each stage's output marks it as done, and every file is written atomically, so a run
killed at any point goes on with ``run_pipeline(..., resume=True)`` (``cfer run --resume
RUN``) from its last finished experience and reaches the same metrics as a run that was
never interrupted (the global random generators are seeded per stage and restored from
the checkpoints).

Example:
    >>> from cfer.config import RunConfig
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
from cfer.atomic import write_json, write_text
from cfer.config import RunConfig, config_from_dict, dump_config, load_config
from cfer.prepare import RunData, prepare_data

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


def _teacher(config: RunConfig, data: RunData, path: Path, progress: bool) -> tuple[torch.nn.Module, dict]:
    from cfer.strategies.resumable import seed_everything
    from cfer.teacher import TeacherConfig, evaluate_classes, load_model, save_model, train_teacher

    if path.is_file():
        model, _ = load_model(path)
        logger.info("teacher loaded from %s", path)
        return model, model.cfer_meta
    seed_everything(config.seed)
    t = config.teacher
    tc = TeacherConfig(arch=config.model.arch, lr=t.lr, batch_size=t.batch_size, max_epochs=t.epochs,
                       patience=t.patience, seed=config.seed, progress=progress, weights=config.model.weights)
    result = train_teacher(train=data.train, val=data.val, config=tc, classes=data.basic)
    test_accuracy, _ = evaluate_classes(result.model, data.test, classes=result.classes)
    info = {"image_size": config.data.image_size, "best_epoch": result.best_epoch,
            "val_accuracy": result.best_val_accuracy, "test_accuracy": test_accuracy,
            "epochs_run": len(result.history), "history": result.history}
    save_model(result.model, path, arch=config.model.arch, classes=result.classes, extra=info)
    return result.model, info


def _orders(config: RunConfig, data: RunData) -> list[tuple[str, ...]]:
    from cfer.scenarios import compound_orders

    if config.continual.order is not None:
        return [tuple(config.continual.order)]
    return compound_orders(classes=data.compound, n_orders=config.continual.orders, seed=config.seed)


def _continual(config: RunConfig, data: RunData, teacher: torch.nn.Module, run: Path,
               progress: bool) -> tuple[list[dict], torch.nn.Module, tuple[str, ...]]:
    from cfer.scenarios import make_stream
    from cfer.strategies.resumable import run_order
    from cfer.teacher import load_model, save_model

    records, first_student, first_classes = [], None, ()
    orders = _orders(config, data)
    for k, order in enumerate(orders):
        done, student_path = run / "results" / f"order{k}.json", run / "students" / f"order{k}.pt"
        if done.is_file() and student_path.is_file():
            rec = json.loads(done.read_text())
            student, classes = load_model(student_path) if k == 0 else (None, tuple(rec["class_names"]))
        else:
            stream = make_stream(train=data.train, test=data.test, val=data.val, basic=data.basic,
                                 compound=data.compound, per_step=config.continual.per_step, order=order)
            n_train = sum(len(e.dataset) for e in stream.train_stream)
            c = config.continual
            memory = c.memory_size if c.memory_size is not None else int(np.floor(c.memory_fraction * n_train))
            results, student = run_order(stream=stream, teacher=teacher, settings=c, memory_size=memory,
                                         checkpoint=run / "checkpoints" / f"order{k}.pt", seed=config.seed + k,
                                         progress=progress, desc=f"order {k + 1}/{len(orders)}")
            classes = tuple(stream.class_names)
            save_model(student, student_path, arch=config.model.arch, classes=classes,
                       extra={"image_size": config.data.image_size, "order": list(order)})
            rec = {"order": list(order), "class_names": list(classes), "memory_size": memory,
                   "step_classes": [[classes[j] for j in s] for s in stream.step_classes], **results.to_dict()}
            write_json(done, rec)
            rec = json.loads(done.read_text())  # the same values a resumed run reads (NaN -> null)
        records.append(rec)
        if k == 0:
            first_student, first_classes = student, classes
    return records, first_student, first_classes


def _fewshot(config: RunConfig, data: RunData, encoders: dict, path: Path, progress: bool) -> list[dict]:
    from cfer.episodes import EpisodeConfig, evaluate_model

    if path.is_file():
        return json.loads(path.read_text())
    fs = config.fewshot
    pool = data.test.subset(np.flatnonzero(np.isin(np.asarray(data.test.classes)[data.test.labels],
                                                   data.fewshot_classes)))
    jobs = [(name, k) for name in encoders for k in fs.shots]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="few-shot episodes", unit="setting")
    out = []
    for name, shots in jobs:
        ec = EpisodeConfig(ways=fs.ways, shots=shots, queries=fs.queries, episodes=fs.episodes,
                           classifier=fs.classifier, seed=config.seed)
        res = evaluate_model(encoders[name], pool, config=ec, classes=list(data.fewshot_classes))
        out.append({"encoder": name, "classes_seen_in_training": not data.holdout and name != "teacher",
                    **res.to_dict()})
        logger.info("few-shot %s: %s", name, res)
    write_json(path, out)
    return json.loads(path.read_text())


def _explain_faces(config: RunConfig, data: RunData):  # noqa: ANN202
    names = np.asarray(data.test.classes)[data.test.labels]
    keep = []
    for c in (*data.basic, *data.compound, *data.holdout):
        keep += np.flatnonzero(names == c)[: config.explain.per_class].tolist()
    return data.test.subset(np.asarray(sorted(keep)))


def _explain(config: RunConfig, data: RunData, models: dict, folder: Path, progress: bool) -> dict:
    from cfer.explain.analysis import analyse

    done = folder / "summary.json"
    if done.is_file():
        return json.loads(done.read_text())
    faces = _explain_faces(config, data)
    items = list(models.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="Grad-CAM", unit="model")
    out = {}
    for name, (model, classes) in items:
        s = analyse(model, classes=classes, faces=faces, method=config.explain.method, out_dir=folder / name,
                    title=name)
        s.pop("similarity", None)
        out[name] = s
        model.zero_grad(set_to_none=True)
    write_json(done, out)
    return json.loads(done.read_text())


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
        ValueError: If the data does not suit the config (see :func:`cfer.prepare.prepare_data`).
    """
    from cfer.report import write_report

    run = Path(out_dir)
    if resume:
        saved = load_run_config(run)
        if saved != config:
            raise ValueError(f"the config differs from the one {run} was started with; resume with "
                             f"load_run_config({str(run)!r})")
    elif (run / "config.yaml").exists():
        raise RunExistsError(f"{run} already holds a run; resume it with `cfer run --resume {run}` or choose "
                             "another --out")
    write_text(run / "config.yaml", dump_config(config))
    torch.set_num_threads(config.threads)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    data = prepare_data(config, progress=progress)
    timing["data_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    teacher, teacher_info = _teacher(config, data, run / "teacher.pt", progress)
    timing["teacher_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    records, student, student_classes = _continual(config, data, teacher, run, progress)
    timing["continual_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fewshot = _fewshot(config, data, {"teacher": teacher, "student": student}, run / "fewshot.json", progress)
    timing["fewshot_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    explain = _explain(config, data, {"teacher": (teacher, data.basic), "student": (student, student_classes)},
                       run / "explain", progress)
    timing["explain_s"] = time.perf_counter() - t0

    metrics = {
        "cfer_version": cfer.__version__,
        "data": {"source": data.source, "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
                 "basic": list(data.basic), "compound": list(data.compound), "holdout": list(data.holdout),
                 "fewshot_classes": list(data.fewshot_classes)},
        "teacher": {k: teacher_info.get(k) for k in ("val_accuracy", "test_accuracy", "best_epoch", "epochs_run")},
        "continual": {"orders": records, "summary": _summary(records)},
        "fewshot": fewshot,
        "explain": explain,
    }
    # Seconds spent on each stage, summed over this call and the calls before a kill.
    before = json.loads((run / "timing.json").read_text()) if resume and (run / "timing.json").is_file() else {}
    timing = {k: before.get(k, 0.0) + v for k, v in timing.items()}
    timing["invocations"] = int(before.get("invocations", 0)) + 1
    t0 = time.perf_counter()
    write_report(run, metrics=metrics, config=config, timing=timing)
    timing["report_s"] = before.get("report_s", 0.0) + time.perf_counter() - t0
    write_json(run / "timing.json", timing)
    return metrics


_SUMMARY_KEYS = ("average_accuracy", "final_accuracy", "final_basic_accuracy", "final_compound_accuracy",
                 "mean_newest_accuracy", "forgetting")


def _summary(records: list[dict]) -> dict:
    out = {}
    for key in _SUMMARY_KEYS:
        vals = np.array([r[key] for r in records if r.get(key) is not None], float)
        if len(vals):
            out[key] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(len(vals))}
    return out
