"""The stages of the main job: data → teacher → continual → confusion → few-shot → explain.

Each :class:`Stage` has a name, the artefact in the run folder that marks it done, a
``run`` that computes and writes it, and a ``load`` that reads it back; the pipeline
(:mod:`cfer.app.pipeline`) calls ``load`` where the artefact exists and ``run``
otherwise, so a killed run goes on where it stopped. Stages share one
:class:`RunState`; a stage's result is ``state.outputs[stage.name]``. The continual stage
has no single artefact: it resumes itself, class order by class order, from
``results/``, ``students/`` and ``checkpoints/``.

A new stage is a ``run`` and a ``load`` function and one entry in :data:`STAGES`.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from cfer.app.config import RunConfig
from cfer.app.prepare import RunData, prepare_data
from cfer.app.student import pool_faces, student_arch, student_for_order, student_member
from cfer.atomic import jsonable, write_json
from cfer.data.base import FaceDataset
from cfer.distributed import barrier, is_main

if TYPE_CHECKING:  # pragma: no cover
    from cfer.continual.cfer_config import CferConfig

__all__ = ["RunState", "Stage", "STAGES", "members"]

logger = logging.getLogger(__name__)


@dataclass
class RunState:
    """What the stages of one run share.

    Attributes:
        config: The run's configuration.
        folder: The run folder.
        progress: Show progress bars.
        outputs: Each finished stage's result, by stage name.
    """

    config: RunConfig
    folder: Path
    progress: bool
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> RunData:
        return self.outputs["data"]


@dataclass(frozen=True)
class Stage:
    """One step of the main job.

    Attributes:
        name: Its name (also the key of its result and of its time in ``timing.json``).
        artefact: The file, relative to the run folder, that marks it done (None: always run).
        run: Compute the result (and write the artefact).
        load: Read the result back from the artefact.
    """

    name: str
    artefact: str | None
    run: Callable[[RunState], Any]
    load: Callable[[RunState], Any]

    def done(self, state: RunState) -> bool:
        return self.artefact is not None and (state.folder / self.artefact).is_file()

    def __call__(self, state: RunState) -> Any:
        return self.load(state) if self.done(state) else self.run(state)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


# -- data ------------------------------------------------------------------------------------
def _data(state: RunState) -> RunData:
    return prepare_data(state.config, progress=state.progress)


# -- teacher ---------------------------------------------------------------------------------
def _teacher(state: RunState) -> tuple[Any, dict]:
    from cfer.app.recipe import teacher_config
    from cfer.continual.resume import seed_everything
    from cfer.continual.teacher import evaluate_classes, train_teacher
    from cfer.models.ensemble import LateFusionEnsemble
    from cfer.models.io import save_model

    config, data = state.config, state.data
    seed_everything(config.seed)
    recipe, tc = teacher_config(config, progress=state.progress)
    result = train_teacher(train=data.train, val=data.val, config=tc, classes=data.basic)
    test_accuracy, _ = evaluate_classes(result.model, data.test, classes=result.classes)
    info = {"image_size": config.data.image_size, "recipe": recipe, "best_epoch": result.best_epoch,
            "val_accuracy": result.best_val_accuracy, "test_accuracy": test_accuracy,
            "epochs_run": len(result.history), "history": result.history}
    if isinstance(result.model, LateFusionEnsemble):  # each member on its own head, and the fusion weights
        info["members"] = {name: evaluate_classes(m, data.test, classes=result.classes)[0]
                           for name, m in zip(result.model.member_names, result.model.members)}
        info["fusion_weights"] = [float(w) for w in result.model.fusion_weights.detach()]
    if tc.arch_options:  # a clip model: its layout and frame encoder rebuild it
        info["arch_options"] = tc.arch_options
    if is_main():
        save_model(result.model, state.folder / "teacher.pt", arch=tc.arch, classes=result.classes, extra=info)
    return result.model, info


def _load_teacher(state: RunState) -> tuple[Any, dict]:
    from cfer.continual.growing import load_model

    model, _ = load_model(state.folder / "teacher.pt")
    logger.info("teacher loaded from %s", state.folder / "teacher.pt")
    return model, model.cfer_meta


# -- continual -------------------------------------------------------------------------------
def _orders(config: RunConfig, data: RunData) -> list[tuple[str, ...]]:
    from cfer.continual.stream import compound_orders

    if config.continual.order is not None:
        return [tuple(config.continual.order)]
    return compound_orders(classes=data.compound, n_orders=config.continual.orders, seed=config.seed)


def strategy_options(config: RunConfig):  # noqa: ANN202
    """The ``CferConfig`` of ``continual.strategy`` (a preset) with the config's changes."""
    from cfer.app.config_checks import METHOD_KEYS
    from cfer.continual.presets import preset_config

    c = config.continual
    return preset_config(c.strategy, **{k: getattr(c, k) for k in METHOD_KEYS})


def run_method(config: RunConfig, run: Path) -> CferConfig:
    """The run's ``CferConfig``, pinned in ``RUN/method.json`` when the run first trains its
    compound steps.

    A run resumed after an upgrade of cfer goes on with the method it was started with: a
    preset whose options changed in between is logged, not applied (``config`` itself cannot
    differ: :func:`cfer.app.pipeline.run_pipeline` refuses a resume with another config).
    Options the file lacks (added to cfer since) take the values that do what the cfer that
    wrote it did (:data:`cfer.continual.cfer_config.ADDED_OPTIONS`), else today's.

    Raises:
        ValueError: If the file names options this version of cfer does not have.
    """
    import dataclasses

    from cfer.continual.cfer_config import ADDED_OPTIONS, CferConfig

    today = strategy_options(config)
    path = run / "method.json"
    if not path.is_file():
        if is_main():
            write_json(path, dataclasses.asdict(today))
        return today
    saved = {**ADDED_OPTIONS, **_read_json(path)}
    unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(CferConfig)})
    if unknown:
        raise ValueError(f"{path} names options this version of cfer does not have ({', '.join(unknown)}): the run "
                         "was started by another version; finish it with that version, or start a new run")
    pinned = dataclasses.replace(today, **saved)
    changed = [f"{k}={v!r} (today's preset: {getattr(today, k)!r})" for k, v in saved.items() if getattr(today, k) != v]
    if changed:
        logger.warning("%s goes on with the method it was started with: %s", run, ", ".join(changed))
    return pinned


def _continual(state: RunState) -> dict:
    """Every class order, each resumed from its own files; returns the records, the first
    order's student (the one few-shot and Grad-CAM look at) and the method (``run_method``)."""
    from cfer.continual.growing import load_model
    from cfer.continual.loggers import close_loggers, make_loggers
    from cfer.continual.plugins.ncm import attached_class_means
    from cfer.continual.plugins.psmr import class_quotas
    from cfer.continual.resume import run_order
    from cfer.continual.stream import make_stream
    from cfer.models.io import save_model

    config, data, run = state.config, state.data, state.folder
    teacher, _ = state.outputs["teacher"]
    pool = functools.cache(lambda: pool_faces(config, data, progress=state.progress))  # read once, if at all
    # the same for every order (member:best is chosen once, on the validation faces)
    saved_arch = functools.cache(lambda: student_arch(config, teacher=teacher, data=data))
    copied_member = functools.cache(lambda: student_member(config, teacher=teacher, data=data))
    records, first_student, first_classes = [], None, ()
    orders = _orders(config, data)
    c = config.continual
    method = run_method(config, run)
    for k, order in enumerate(orders):
        done, student_path = run / "results" / f"order{k}.json", run / "students" / f"order{k}.pt"
        if done.is_file() and student_path.is_file():
            rec = _read_json(done)
            student, classes = load_model(student_path) if k == 0 else (None, tuple(rec["class_names"]))
        else:
            checkpoint = run / "checkpoints" / f"order{k}.pt"
            resuming = checkpoint.is_file()  # it holds the student's weights
            stream = make_stream(train=data.train, test=data.test, val=data.val, basic=data.basic,
                                 compound=data.compound, per_step=c.per_step, order=order)
            n_train = sum(len(e.dataset) for e in stream.train_stream)
            memory = c.memory_size if c.memory_size is not None else int(np.floor(c.memory_fraction * n_train))
            loggers = (make_loggers(c.logger, folder=run / "logs" / c.logger / f"order{k}", name=f"{run.name}-order{k}")
                       if is_main() else [])
            try:
                results, student = run_order(stream=stream, teacher=teacher, memory_size=memory, epochs=c.epochs,
                                             lr=c.lr, batch_size=c.batch_size, cfer=method,
                                             checkpoint=checkpoint, seed=config.seed + k,
                                             progress=state.progress, desc=f"order {k + 1}/{len(orders)}",
                                             loggers=loggers, freeze_stages=config.model.freeze_stages,
                                             device=config.device, num_workers=config.workers,
                                             **student_for_order(config, data, teacher=teacher, seed=config.seed + k,
                                                                 pool=None if resuming else pool,
                                                                 progress=state.progress))
            finally:
                close_loggers(loggers)
            classes = tuple(stream.class_names)
            if is_main():
                arch, clip = saved_arch(), {}
                if config.data.format == "clips" and config.model.student_arch is None:  # the clip teacher's copy
                    from cfer.app.recipe import clip_model

                    arch, options = clip_model(config)
                    clip = {"arch_options": options}
                save_model(student, student_path, arch=arch, classes=classes,
                           extra={"image_size": config.data.image_size, "order": list(order), **clip,
                                  **attached_class_means(student)})
            per_basic, per_class = class_quotas(memory, first=len(data.basic), later=len(classes) - len(data.basic),
                                                weight=method.psmr_first_step_weight)  # at the end of the order
            rec = jsonable({"order": list(order), "class_names": list(classes), "memory_size": memory,
                            "memory_per_class": per_class, "memory_per_basic_class": per_basic,
                            "step_classes": [[classes[j] for j in s] for s in stream.step_classes],
                            **results.to_dict()})
            member = copied_member()
            if member is not None:  # the member the student copied (member:best is chosen on validation)
                rec["student_member"] = member
            if is_main():
                write_json(done, rec)
            barrier()
        records.append(rec)
        if k == 0:
            first_student, first_classes = student, classes
    teacher.cpu()  # the distillation moved it to the run's device; the stages after this run on the CPU
    return {"records": records, "student": first_student, "student_classes": first_classes, "method": method}


def members(role: str, model: Any) -> list[tuple[str, Any]]:
    """``("ROLE-MEMBER", member)`` for each member of a late-fusion ensemble (none for a
    single model): the keys under which the confusion, score and Grad-CAM stages report
    each member on its own head, next to the fused ``ROLE``."""
    from cfer.models.ensemble import LateFusionEnsemble

    if not isinstance(model, LateFusionEnsemble):
        return []
    return [(f"{role}-{name}", m) for name, m in zip(model.member_names, model.members)]


# -- confusion -------------------------------------------------------------------------------
def _confusion(state: RunState) -> dict:
    """Confusion matrices on the test faces of the stream's classes: the first order's final
    student (every class it learnt) and the teacher (basic outputs; basic and compound rows)."""
    from cfer.continual.confusion import confusion

    data, student = state.data, state.outputs["continual"]
    rows = (*data.basic, *data.compound)
    teacher = state.outputs["teacher"][0]
    out = {
        "student": confusion(student["student"], data.test, classes=student["student_classes"]).to_dict(),
        "teacher": confusion(teacher, data.test, classes=data.basic, rows=rows).to_dict(),
    }
    for key, member in members("student", student["student"]):  # an ensemble's members, each on its own head
        out[key] = confusion(member, data.test, classes=student["student_classes"]).to_dict()
    for key, member in members("teacher", teacher):
        out[key] = confusion(member, data.test, classes=data.basic, rows=rows).to_dict()
    out = jsonable(out)
    write_json(state.folder / "confusion.json", out)
    return out


# -- few-shot --------------------------------------------------------------------------------
def _fewshot(state: RunState) -> list[dict]:
    from cfer.fewshot.episodes import EpisodeConfig, evaluate_model

    config, data = state.config, state.data
    encoders = {"teacher": state.outputs["teacher"][0], "student": state.outputs["continual"]["student"]}
    fs = config.fewshot
    pool = data.test.subset(np.flatnonzero(np.isin(data.test.class_names, data.fewshot_classes)))
    jobs = [(name, k) for name in encoders for k in fs.shots]
    if state.progress:
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
    out = jsonable(out)
    write_json(state.folder / "fewshot.json", out)
    return out


# -- explain ---------------------------------------------------------------------------------
def _explain_faces(config: RunConfig, data: RunData):  # noqa: ANN202
    names = np.asarray(data.test.class_names)
    keep = []
    for c in (*data.basic, *data.compound, *data.holdout):
        keep += np.flatnonzero(names == c)[: config.explain.per_class].tolist()
    return data.test.subset(np.asarray(sorted(keep)))


def _explain(state: RunState) -> dict:
    from cfer.explain.analysis import analyse
    from cfer.explain.figures import save_analysis

    config, data, folder = state.config, state.data, state.folder / "explain"
    student = state.outputs["continual"]
    teacher = state.outputs["teacher"][0]
    models = {"teacher": (teacher, data.basic),
              **{key: (m, data.basic) for key, m in members("teacher", teacher)},
              "student": (student["student"], student["student_classes"]),
              **{key: (m, student["student_classes"]) for key, m in members("student", student["student"])}}
    faces = _explain_faces(config, data)
    items = list(models.items())
    if state.progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="Grad-CAM", unit="model")
    out = {}
    clips = not isinstance(faces, FaceDataset)
    for name, (model, classes) in items:
        if clips:  # per-frame maps and region curves
            from cfer.explain.clip_analysis import analyse_clips, save_clip_analysis

            result = analyse_clips(model, classes=classes, clips=faces, method=config.explain.method)
            save_clip_analysis(result, folder / name, title=name)
        else:
            result = analyse(model, classes=classes, faces=faces, method=config.explain.method)
            save_analysis(result, folder / name, title=name)
        summary = dict(result.summary)
        summary.pop("similarity", None)
        out[name] = summary
        model.zero_grad(set_to_none=True)
    out = jsonable(out)
    write_json(folder / "summary.json", out)
    return out


STAGES: tuple[Stage, ...] = (
    Stage("data", None, _data, _data),
    Stage("teacher", "teacher.pt", _teacher, _load_teacher),
    Stage("continual", None, _continual, _continual),
    Stage("confusion", "confusion.json", _confusion, lambda s: _read_json(s.folder / "confusion.json")),
    Stage("fewshot", "fewshot.json", _fewshot, lambda s: _read_json(s.folder / "fewshot.json")),
    Stage("explain", "explain/summary.json", _explain, lambda s: _read_json(s.folder / "explain" / "summary.json")),
)
"""The main job's stages, in order (the report is written after them)."""

DISTRIBUTED_STAGES = ("data", "teacher", "continual")
"""The stages every process of a ``torchrun`` job runs (DDP); rank 0 alone runs the others."""
