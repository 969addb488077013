"""The configuration of the main job (``cfer run``), as frozen dataclasses.

One :class:`RunConfig` holds every option, grouped in sections that follow the data flow: ``data`` →
``classes`` → ``model``/``teacher``/``student`` → ``continual`` → ``fewshot`` → ``explain``. The same keys are read
from a YAML file (``cfer run --config FILE``), set from the command line (``--epochs 3`` is
``continual.epochs: 3``) and printed back (``cfer run --print-config``). Every value is checked when the
config is built, so a wrong option fails before any work starts, with a message that names the fix.
The sections are plain data (no disk, no timm), so a saved config loads anywhere; the data path,
face cascade, architecture and weights file are checked where the run starts
(:func:`cfer.app.prepare.check_inputs`). YAML: :mod:`cfer.app.config_io`.

Example:
    >>> RunConfig(continual=ContinualSection(per_step=5)).continual.epochs
    4
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from cfer import taxonomy
from cfer.app import config_checks as _checks
from cfer.app.config_student import StudentSection
from cfer.continual.loggers import LOGGERS
from cfer.data.faces import FaceCropper
from cfer.data.readers import FORMATS
from cfer.explain.methods import METHODS as CAM_METHODS
from cfer.fewshot.episodes import CLASSIFIERS

__all__ = ["DataSection", "ClassesSection", "ModelSection", "TeacherSection", "StudentSection", "ContinualSection",
           "FewShotSection", "ExplainSection", "RunConfig", "DEFAULT_IMAGE_SIZE", "MAX_SEED"]

DEFAULT_IMAGE_SIZE = 48
"""The image side of every command's default (``--image-size``)."""

TEACHER_RECIPES = ("auto", "fast", "photo")  # teacher.recipe
MAX_SEED = 2**32 - 1
"""The largest seed (NumPy's and torch's generators take seeds in ``[0, 2**32 - 1]`` alike)."""


@dataclass(frozen=True)
class DataSection:
    """Where the faces come from.

    Attributes:
        path: Dataset root folder or CSV file; ``None`` uses cfer's synthetic faces.
        format: ``imagefolder``, ``csv``, ``rafdb``, ``fer2013`` or ``clips`` (required with ``path``).
        image_size: Side of the square images the models see.
        grey: Read/render single-channel images.
        crop_faces: Detect and crop the face in each image (Haar cascade) before resizing.
        align_faces: Eyes level at fixed places (:func:`cfer.data.align.face_cropper`).
        crop_cascade: Haar cascade file (in OpenCV's ``cv2.data.haarcascades``) of the face
            crop; ``haarcascade_frontalface_alt2.xml`` finds more faces in some photos.
        crop_min_neighbors: Overlapping detections a face needs (higher: fewer false faces).
        crop_margin: Border around the detected face box, as a fraction of its side.
        subject_pattern: ImageFolder: regex whose one group captures the subject id from a
            file name (e.g. ``'^(s\\d+)_'``); subjects make the splits person-disjoint.
        rafdb_basic: RAF-DB: the basic RAF-DB folder (``data.path`` is the compound one;
            RAF-DB distributes the two sets separately and a run needs both).
        skip_invalid: Skip images that cannot be read or hold no detectable face (counted in
            one warning) instead of stopping.
        split: Train/validation/test shares of subjects when the data has no split of its own.
        synthetic_subjects: Synthetic faces: subjects in train, validation and test.
        synthetic_per_class: Synthetic faces: faces per class per subject.
        synthetic_difficulty: Synthetic faces: nuisance scale (0 clean, 1 default).
    """

    path: str | None = None
    format: str | None = None
    image_size: int = DEFAULT_IMAGE_SIZE
    grey: bool = False
    crop_faces: bool = False
    align_faces: bool = False
    crop_cascade: str = "haarcascade_frontalface_default.xml"
    crop_min_neighbors: int = 5
    crop_margin: float = 0.2
    subject_pattern: str | None = None
    rafdb_basic: str | None = None
    skip_invalid: bool = False
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    synthetic_subjects: tuple[int, int, int] = (16, 4, 8)
    synthetic_per_class: int = 4
    synthetic_difficulty: float = 1.0

    def __post_init__(self) -> None:
        _checks.finite(self, "data")
        if self.path is not None and self.format is None:
            raise ValueError(f"data.format is needed with data.path; choose one of {list(FORMATS)} "
                             "(--format imagefolder|csv|rafdb|fer2013)")
        if self.format is not None and self.format not in (*FORMATS, "clips"):
            close = difflib.get_close_matches(str(self.format), (*FORMATS, "clips"), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown data.format {self.format!r}{hint}; choose one of {[*FORMATS, 'clips']}")
        if self.path is None and (given := [k for k in ("format", "crop_faces", "align_faces") if getattr(self, k)]):
            raise ValueError(f"data.{given[0]} needs data.path; add --data PATH or drop --{given[0].replace('_', '-')}")
        if self.format == "fer2013":
            raise ValueError("FER2013 holds only basic expressions, and a run needs compound classes too; put "
                             "FER2013's basic images and your compound images in one CSV manifest (--format csv)")
        if self.format == "rafdb" and self.rafdb_basic is None:
            raise ValueError("RAF-DB's basic and compound sets are separate folders and a run needs both: give the "
                             "compound folder as --data and the basic one as --rafdb-basic")
        if self.rafdb_basic is not None and self.format != "rafdb":
            raise ValueError("data.rafdb_basic applies to --format rafdb only; drop --rafdb-basic")
        if self.format in ("rafdb", "fer2013") and self.crop_faces:
            raise ValueError(f"data.crop_faces does not apply to {self.format}: its images are already aligned "
                             "faces; drop --crop-faces")
        if self.subject_pattern is not None and self.format not in (None, "imagefolder"):
            raise ValueError("data.subject_pattern applies to imagefolder data only; a CSV manifest has a "
                             "'subject' column instead")
        _checks.positive("data", "image_size", self.image_size)
        if self.image_size < 16:
            raise ValueError(f"data.image_size must be >= 16 pixels, got {self.image_size}; 48 or 64 suit the "
                             "CPU models, 224 the ImageNet backbones")
        try:  # the cropper's own rules for its numbers (its cascade file is checked at the run's start)
            FaceCropper(margin=self.crop_margin, min_neighbors=self.crop_min_neighbors, cascade=self.crop_cascade)
        except ValueError as exc:
            raise ValueError(f"data.crop_*: {exc}") from None
        if self.subject_pattern is not None:
            try:
                if re.compile(self.subject_pattern).groups != 1:
                    raise ValueError(f"data.subject_pattern {self.subject_pattern!r} must have exactly one group "
                                     r"capturing the subject, e.g. '^(s\d+)_'")
            except re.error as exc:
                raise ValueError(f"data.subject_pattern {self.subject_pattern!r} is not a valid regex: {exc}") from None
        if len(self.split) != 3 or any(f <= 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"data.split must be three positive shares (train, val, test) summing to 1, "
                             f"got {list(self.split)}")
        if len(self.synthetic_subjects) != 3:
            raise ValueError(f"data.synthetic_subjects must be three counts (train, val, test), "
                             f"got {list(self.synthetic_subjects)}")
        for n in self.synthetic_subjects:
            _checks.positive("data", "synthetic_subjects", n)
        _checks.positive("data", "synthetic_per_class", self.synthetic_per_class)
        if self.synthetic_difficulty < 0:
            raise ValueError(f"data.synthetic_difficulty must be >= 0, got {self.synthetic_difficulty}")


@dataclass(frozen=True)
class ClassesSection:
    """Which classes are basic (the teacher's) and which arrive as compound steps.

    Attributes:
        basic: The first experience's classes, in the teacher's output order.
        compound: The compound classes of the stream; ``None``: every compound class
            the data has (minus the few-shot hold-out).
    """

    basic: tuple[str, ...] = taxonomy.BASIC
    compound: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        basic = taxonomy.normalize_many(list(self.basic))
        object.__setattr__(self, "basic", basic)
        if len(basic) < 2:
            raise ValueError(f"classes.basic needs at least 2 classes, got {list(basic)}")
        if self.compound is not None:
            comp = taxonomy.normalize_many(list(self.compound))
            object.__setattr__(self, "compound", comp)
            both = sorted(set(basic) & set(comp))
            if both:
                raise ValueError(f"classes {both} are both basic and compound; list each class once")
            if not comp:
                raise ValueError("classes.compound is empty; leave it out to use every compound class in the data")


@dataclass(frozen=True)
class ModelSection:
    """The network: the teacher's architecture, which the student copies unless it has its own.

    Attributes:
        arch: A cfer model (``resemotenet_slim``, ``resemotenet``, ``cfer_tiny``), any timm name,
            or an ensemble of them (``ensemble:cfer_tiny+resemotenet_slim@48``, see
            :mod:`cfer.models.ensemble_arch`).
        weights: Optional weights: a local file (``cfer pretrain``'s ``encoder.pt``) or hub weights.
        student_arch: The student's own architecture (any name ``arch`` takes), e.g. one network
            distilled from an ensemble teacher, which first learns the basic classes for
            ``continual.basic_epochs`` epochs with distillation; or ``member:NAME`` (a member's
            name or index; ``best``: the most accurate on the validation subjects): a copy of that
            trained member of an ensemble teacher, which knows them already. None: the student
            starts as a copy of the teacher.
        freeze_stages: Stem + first N blocks frozen in the teacher and its copy (0: none).

    Checked where the run starts (:func:`cfer.app.prepare.check_inputs`): a saved config stays loadable.
    """

    arch: str = "resemotenet_slim"
    weights: str | None = None
    student_arch: str | None = None
    freeze_stages: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or not self.arch.strip():
            raise ValueError(f"model.arch must be a model name such as 'resemotenet_slim', got {self.arch!r}")
        if self.student_arch is not None and (not isinstance(self.student_arch, str) or not self.student_arch.strip()):
            raise ValueError("model.student_arch must be a model name such as 'resemotenet_slim' or null (the "
                             f"student copies the teacher), got {self.student_arch!r}")
        if isinstance(self.freeze_stages, bool) or not isinstance(self.freeze_stages, int) or self.freeze_stages < 0:
            raise ValueError(f"model.freeze_stages must be a whole number >= 0 (0: none), got {self.freeze_stages!r}")


@dataclass(frozen=True)
class TeacherSection:
    """Training of the basic teacher (early stopping on the validation subjects).

    Attributes:
        recipe: ``auto`` (``photo`` with ``data.path``, else ``fast``), ``fast`` (flips, shifts,
            Adam) or ``photo`` (:func:`cfer.continual.teacher.photo_recipe`; docs/photos.md).
        epochs: Maximum epochs (default: the recipe's, 15 fast, 40 photo).
        patience: Epochs without a better validation accuracy before stopping (3 fast, 8 photo).
        lr: Learning rate (default: the recipe's, 2e-3 fast, 1e-3 photo); ``batch_size``: mini-batch size.
        member_training: An ensemble's members ``joint`` or ``one_by_one`` (docs/models.md); ``precise_bn``:
            recompute the BatchNorm statistics on the training faces before each validation; ``mixup``:
            mixup's Beta(α, α) parameter (0: none; images only; docs/pretraining.md); ``layer_decay``: each
            block's learning rate as a share of the next one's (1: none; AdamW, so the photo recipe).
    """

    recipe: str = "auto"
    epochs: int | None = None
    patience: int | None = None
    lr: float | None = None
    batch_size: int = 64
    member_training: str = "joint"
    precise_bn: bool = False
    mixup: float = 0.0
    layer_decay: float = 1.0

    def __post_init__(self) -> None:
        _checks.finite(self, "teacher")
        _checks.teacher_section(self, recipes=TEACHER_RECIPES)


@dataclass(frozen=True)
class ContinualSection:
    """The compound steps with the cfer strategy.

    Attributes:
        per_step: Compound classes per experience (1 is the published protocol).
        orders: Number of seeded random class orders (each a full run; results averaged).
        order: An explicit compound order instead (overrides ``orders``).
        epochs: Epochs per compound experience.
        lr: Adam learning rate of the student.
        batch_size: Mini-batch size.
        memory_fraction: Replay budget ``M`` as a share of the training set (published: 0.3).
        memory_size: Replay budget in items (overrides ``memory_fraction``).
        strategy: ``cfer`` (the default preset) or ``published`` (the method as published,
            exactly; it takes none of the options below): :mod:`cfer.continual.presets`.
        psmr_mode, gamma0, temperature, feature_weight, logit_adjustment, nearest_mean, previous_weight,
            previous_weight_scale, head, weight_aligning, mirror_training, psmr_first_step_weight,
            shift_training: Change the
            ``cfer`` preset's value
            (None: the preset's): PSMR ``grow`` or ``limit``; the first logit-distillation weight; the
            temperature; the feature-distillation weight; logit adjustment's ``tau``; nearest-class-mean
            prediction (``off``, ``memory``, ``memory+new``); the previous student's weight and its scaling
            (``constant``, ``sqrt_ratio``: sqrt(old / new)); the student's head (``cosine``, ``linear``);
            weight aligning; mirror images in the training mini-batches; the memory items a class of the
            first step (the teacher's) keeps against a later class (1: alike); the largest random shift
            of the training faces, in pixels (0: none).
        basic_epochs: Epochs on the basic experience for a student of its own
            (``model.student_arch``); a copy of the teacher skips it.
        logger: Where the training curves go besides the report: ``none``, ``tensorboard``,
            ``csv`` or ``wandb-offline``, written to ``RUN/logs/<logger>/order<k>/``
            (:mod:`cfer.continual.loggers`).
    """

    per_step: int = 3
    orders: int = 3
    order: tuple[str, ...] | None = None
    epochs: int = 4
    lr: float = 2e-3
    batch_size: int = 32
    memory_fraction: float = 0.3
    memory_size: int | None = None
    strategy: str = "cfer"
    psmr_mode: str | None = None
    gamma0: float | None = None
    temperature: float | None = None
    feature_weight: float | None = None
    logit_adjustment: float | None = None
    nearest_mean: str | None = None
    previous_weight: float | None = None
    previous_weight_scale: str | None = None
    head: str | None = None
    weight_aligning: bool | None = None
    mirror_training: bool | None = None
    psmr_first_step_weight: float | None = None
    shift_training: int | None = None
    basic_epochs: int = 10
    logger: str = "none"

    def __post_init__(self) -> None:
        _checks.finite(self, "continual")
        if self.logger not in LOGGERS:
            close = difflib.get_close_matches(str(self.logger), LOGGERS, n=1)
            hint = f" (did you mean --logger {close[0]}?)" if close else ""
            raise ValueError(f"unknown continual.logger {self.logger!r}{hint}; choose one of {list(LOGGERS)}")
        for name in ("per_step", "orders", "epochs", "batch_size", "basic_epochs"):
            _checks.positive("continual", name, getattr(self, name))
        if self.order is not None:
            object.__setattr__(self, "order", taxonomy.normalize_many(list(self.order)))
        if not self.lr > 0:
            raise ValueError(f"continual.lr must be > 0, got {self.lr}")
        _checks.fraction("continual", "memory_fraction", self.memory_fraction, zero_ok=True)
        if self.memory_size is not None and (isinstance(self.memory_size, bool) or self.memory_size < 0):
            raise ValueError(f"continual.memory_size must be >= 0 items, got {self.memory_size!r}")
        _checks.continual_method(self)


@dataclass(frozen=True)
class FewShotSection:
    """N-way K-shot episodes on faces of test subjects.

    Attributes:
        holdout: Compound classes kept out of the stream and used only for episodes, so
            no encoder has trained on them (0: episodes over the stream's compound classes).
        ways: Classes per episode.
        shots: Support sizes to evaluate (one result per value).
        queries: Queries per class.
        episodes: Episodes per result.
        classifier: ``prototype``, ``cosine``, ``logistic`` or ``finetune``.
    """

    holdout: int = 5
    ways: int = 5
    shots: tuple[int, ...] = (1, 5)
    queries: int = 10
    episodes: int = 600
    classifier: str = "prototype"

    def __post_init__(self) -> None:
        _checks.finite(self, "fewshot")
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, int) or self.holdout < 0:
            raise ValueError(f"fewshot.holdout must be a whole number >= 0, got {self.holdout!r}")
        for name in ("ways", "queries", "episodes"):
            _checks.positive("fewshot", name, getattr(self, name))
        if self.ways < 2:
            raise ValueError("fewshot.ways must be >= 2: a 1-way episode measures nothing")
        if self.holdout and self.holdout < self.ways:
            raise ValueError(f"fewshot.holdout ({self.holdout}) is smaller than fewshot.ways ({self.ways}): "
                             f"hold out at least {self.ways} classes, or lower --ways")
        if not self.shots:
            raise ValueError("fewshot.shots is empty; give e.g. [1, 5]")
        for k in self.shots:
            _checks.positive("fewshot", "shots", k)
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"unknown fewshot.classifier {self.classifier!r}; choose one of {list(CLASSIFIERS)}")


@dataclass(frozen=True)
class ExplainSection:
    """Grad-CAM maps of the teacher and the final student on test faces.

    Attributes:
        method: CAM method name.
        per_class: Test faces per class to explain (at most).
    """

    method: str = "gradcam"
    per_class: int = 6

    def __post_init__(self) -> None:
        _checks.finite(self, "explain")
        if self.method not in CAM_METHODS:
            close = difflib.get_close_matches(self.method, CAM_METHODS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown explain.method {self.method!r}{hint}; choose one of {list(CAM_METHODS)}")
        _checks.positive("explain", "per_class", self.per_class)


@dataclass(frozen=True)
class RunConfig:
    """Every option of ``cfer run`` (see the section classes).

    Attributes:
        seed: Seed of the data, splits, initialisation, class orders, shuffling and episodes.
        threads: Torch CPU threads per process (under ``torchrun``: at most cores / processes).
        device, precision, compile, workers: Where the teacher and the stream train (``auto``,
            ``cpu``, ``cuda``, ``cuda:N``), the teacher's mixed precision (``fp32``, ``bf16``,
            ``fp16`` on CUDA), ``torch.compile``, loader workers (docs/distributed.md).
        data, classes, model, teacher, student, continual, fewshot, explain: The sections.
    """

    seed: int = 0
    threads: int = 2
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    workers: int = 0
    data: DataSection = field(default_factory=DataSection)
    classes: ClassesSection = field(default_factory=ClassesSection)
    model: ModelSection = field(default_factory=ModelSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    student: StudentSection = field(default_factory=StudentSection)
    continual: ContinualSection = field(default_factory=ContinualSection)
    fewshot: FewShotSection = field(default_factory=FewShotSection)
    explain: ExplainSection = field(default_factory=ExplainSection)

    def __post_init__(self) -> None:
        _checks.run_level(self, max_seed=MAX_SEED)
