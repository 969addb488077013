"""The options of ``cfer run``: each flag, the config key it sets and its help text.

:func:`cfer.app.cli.build_parser` turns every entry into an option of ``cfer run``; the
values stay strings there, and :mod:`cfer.app.config` converts and checks them (one place
for every rule and error message). ``cfer run --resume`` reads the same table to tell which
options were given on its command line.

Example:
    >>> dict((key, flags[0]) for flags, key, _ in RUN_OPTIONS)["continual.epochs"]
    '--epochs'
"""

from __future__ import annotations

from cfer.app.config import DEFAULT_IMAGE_SIZE, FewShotSection
from cfer.data.readers import FORMATS
from cfer.explain.methods import METHODS

__all__ = ["RUN_OPTIONS", "RUN_FLAGS"]

# Options of `cfer run`: flags, the config key they set, help. Values stay strings here;
# cfer.app.config converts and checks them (one place for every rule and error message).
RUN_OPTIONS: list[tuple[tuple[str, ...], str, str]] = [
    (("--data",), "data.path", "dataset folder or CSV file (default: cfer's synthetic faces)"),
    (("--format",), "data.format", f"{', '.join(FORMATS)}, clips (a clip manifest; with --data)"),
    (("--image-size",), "data.image_size", f"image side in pixels (default {DEFAULT_IMAGE_SIZE})"),
    (("--crop-faces",), "data.crop_faces", "detect and crop the face in each image before resizing"),
    (("--align-faces",), "data.align_faces", "eyes level at fixed places in the crop (with --crop-faces: of the "
     "detected face; alone: images that are face crops already)"),
    (("--crop-cascade",), "data.crop_cascade", "Haar cascade of the face crop, e.g. "
                                                "haarcascade_frontalface_alt2.xml"),
    (("--crop-margin",), "data.crop_margin", "border around the detected face, as a fraction of its side"),
    (("--crop-min-neighbors",), "data.crop_min_neighbors", "overlapping detections a face needs"),
    (("--grey",), "data.grey", "single-channel images"),
    (("--subject-pattern",), "data.subject_pattern", r"imagefolder: regex capturing the subject, e.g. '^(s\d+)_'"),
    (("--rafdb-basic",), "data.rafdb_basic", "rafdb: the basic RAF-DB folder (--data is the compound one)"),
    (("--skip-invalid",), "data.skip_invalid", "skip unreadable images and images with no detectable face"),
    (("--basic",), "classes.basic", "comma-separated basic classes (the teacher's)"),
    (("--compound",), "classes.compound", "comma-separated compound classes (default: all in the data)"),
    (("--arch",), "model.arch", "cfer or timm architecture (resemotenet_slim, resemotenet, cfer_tiny, resnet18, ...) "
     "or an ensemble of them (ensemble:cfer_tiny+resemotenet_slim@48)"),
    (("--weights",), "model.weights", "weights for the backbone: a local file (e.g. encoder.pt of cfer pretrain), "
     "hf-hub:ORG/NAME or a timm tag such as resnet50.a1_in1k (through timm's hub cache; HF_HUB_OFFLINE honoured)"),
    (("--student-arch",), "model.student_arch", "the student's own architecture (e.g. one network distilled from "
     "an ensemble teacher), or member:NAME (member:0, ...): a copy of that member of an ensemble teacher (default: "
     "a copy of the teacher)"),
    (("--distil-pool",), "student.pool", "before the stream, distil a member's copy (--student-arch member:NAME) "
     "from the ensemble on unlabelled faces: 'synthetic' (rendered faces of other people) or a folder of faces"),
    (("--distil-pool-epochs",), "student.pool_epochs", "epochs of that distillation (default 20)"),
    (("--distil-pool-subjects",), "student.pool_subjects", "--distil-pool synthetic: people rendered, one face per "
     "class each (default 100)"),
    (("--basic-epochs",), "continual.basic_epochs", "epochs on the basic classes for a student of its own "
     "(--student-arch)"),
    (("--freeze-stages",), "model.freeze_stages", "freeze the backbone's stem and first N blocks or stages in teacher "
     "and student (fine-tune pretrained weights from the later layers; default 0: none)"),
    (("--teacher-recipe",), "teacher.recipe", "auto (default: photo with --data, fast on the synthetic faces), fast "
     "(flip + shift, Adam) or photo (face augmentation, AdamW, label smoothing, warm-up + cosine)"),
    (("--teacher-epochs",), "teacher.epochs", "maximum teacher epochs (early stopping on validation; default: the "
     "recipe's, 15 fast / 40 photo)"),
    (("--teacher-patience",), "teacher.patience", "teacher epochs without a better validation accuracy before "
     "stopping (default: the recipe's, 3 fast / 8 photo)"),
    (("--teacher-lr",), "teacher.lr", "teacher learning rate (default: the recipe's, 2e-3 fast / 1e-3 photo; "
     "5e-4 suits a ViT from MAE weights)"),
    (("--member-training",), "teacher.member_training", "an ensemble teacher's members: joint (default, the "
     "ensemble loss) or one_by_one (each alone, then learn_weights=true fusion weights fitted on validation)"),
    (("--teacher-precise-bn",), "teacher.precise_bn", "recompute the teacher's BatchNorm statistics on the training "
     "faces before each validation"),
    (("--teacher-mixup",), "teacher.mixup", "mixup's Beta(a, a) parameter for the teacher (0: none; images only)"),
    (("--teacher-layer-decay",), "teacher.layer_decay", "each block's teacher learning rate as a share of the next "
     "one's (1: none; 0.75 for a ViT from MAE weights; needs the photo recipe)"),
    (("--orders",), "continual.orders", "number of random compound class orders"),
    (("--order",), "continual.order", "explicit comma-separated compound order"),
    (("--per-step",), "continual.per_step", "compound classes per step (1 = published protocol)"),
    (("--epochs",), "continual.epochs", "epochs per compound step"),
    (("--memory-fraction",), "continual.memory_fraction", "replay budget as a share of the training set"),
    (("--memory-size",), "continual.memory_size", "replay budget in items (overrides --memory-fraction)"),
    (("--strategy",), "continual.strategy", "cfer (default: the best preset) or published (the method as published, "
     "exactly)"),
    (("--psmr-mode",), "continual.psmr_mode", "grow or limit (default: the preset's)"),
    (("--nearest-mean",), "continual.nearest_mean", "off, memory or memory+new: predict by nearest class mean "
     "(default: the preset's)"),
    (("--previous-weight",), "continual.previous_weight", "weight of distillation from the previous step's student "
     "(default: the preset's)"),
    (("--previous-weight-scale",), "continual.previous_weight_scale", "constant or sqrt_ratio (the weight times "
     "sqrt(old / new classes): less forgetting, less new-class accuracy; default: the preset's)"),
    (("--head",), "continual.head", "the student's head: linear or cosine (cosine-normalised; default: the "
     "preset's, linear)"),
    (("--weight-aligning",), "continual.weight_aligning", "on or off: scale the new classes' head weights to the old "
     "classes' mean norm after each step (default: the preset's, on)"),
    (("--mirror-training",), "continual.mirror_training", "on or off: train on mirror images of half the faces "
     "of each mini-batch, drawn at random (default: the preset's, on)"),
    (("--psmr-first-step-weight",), "continual.psmr_first_step_weight", "memory items a class of the first step "
     "(the teacher's) keeps, as a multiple of a later class's (1: every class alike; default: the preset's, 0.5)"),
    (("--shift-training",), "continual.shift_training", "largest random shift of the training faces, in pixels, "
     "in each direction (0: none, the preset's default; 2: as the teacher trains)"),
    (("--logger",), "continual.logger", "training curves to RUN/logs/KIND/: none (default), tensorboard, csv "
                                        "or wandb-offline"),
    (("--holdout",), "fewshot.holdout", "compound classes kept for few-shot episodes only (0: none)"),
    (("--ways",), "fewshot.ways", "classes per episode"),
    (("--queries",), "fewshot.queries", f"query faces per class in an episode (default {FewShotSection.queries})"),
    (("--shots",), "fewshot.shots", "comma-separated support sizes, e.g. 1,5"),
    (("--episodes",), "fewshot.episodes", "episodes per setting"),
    (("--cam-method",), "explain.method", ", ".join(METHODS)),
    (("--seed",), "seed", "seed of data, splits, initialisation, orders and episodes"),
    (("--threads",), "threads", "torch CPU threads (per process)"),
    (("--device",), "device", "auto (the GPU when CUDA works, else the CPU), cpu, cuda or cuda:N: where the teacher "
     "and the continual stream train"),
    (("--precision",), "precision", "fp32 (default), bf16 (mixed precision, CPU or CUDA) or fp16 (CUDA) for the "
     "teacher"),
    (("--compile",), "compile", "train the teacher through torch.compile"),
    (("--workers",), "workers", "worker processes loading the continual stream's training batches (default 0)"),
]
RUN_FLAGS = {"data.crop_faces", "data.align_faces", "data.grey", "data.skip_invalid", "compile",
             "teacher.precise_bn"}
