"""The ``cfer`` command: the argument parser and the entry point; the handlers live in
:mod:`cfer.app.commands`.

Subcommands:
    run     the main job: teacher -> compound steps -> few-shot episodes -> Grad-CAM ->
            report.html, resumable after a kill (``--resume RUN_DIR``).
    synth   render synthetic FACS faces: a labelled grid picture, a summary, and
            optionally an ImageFolder + manifest.csv export.
    data    load a dataset in any supported format and print its summary.
    teacher train the basic-expression teacher (early stopping on validation) and save it.
    fewshot N-way K-shot episodes (mean accuracy, 95% CI) with a saved model.
    explain Grad-CAM figures, region attention and basic/compound similarity of a saved model.
    compare two or more run folders side by side: compare.html and compare.csv.
    pretrain masked-autoencoder pretraining of a ViT encoder on unlabelled faces: encoder.pt
            for ``cfer run --arch ARCH --weights RUN/encoder.pt``, resumable (``--resume RUN_DIR``).

``run``, ``teacher`` and ``pretrain`` train on ``--device`` (auto, cpu, cuda, cuda:N) and in
``--nproc N`` processes (DDP under ``torchrun``; :mod:`cfer.app.launch`); ``torchrun
--nproc_per_node N -m cfer ...`` works too.

One name means one thing in every command: ``--image-size`` is the image side (default
:data:`cfer.app.config.DEFAULT_IMAGE_SIZE`), ``--arch`` an architecture name,
``--model`` a saved model file, and the commands that read data share one group of
data options (:func:`add_data_options`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import cfer
from cfer.app.config import DEFAULT_IMAGE_SIZE, TEACHER_RECIPES, DataSection, FewShotSection
from cfer.app.run_options import RUN_FLAGS, RUN_OPTIONS
from cfer.data.readers import FORMATS, READERS
from cfer.distributed import PRECISIONS
from cfer.explain.methods import METHODS

__all__ = ["main", "build_parser", "add_data_options", "RUN_OPTIONS", "PRETRAIN_DEFAULTS"]

PRETRAIN_DEFAULTS = {"arch": "vit_face_tiny", "epochs": 30, "mask_ratio": 0.75, "batch_size": 64, "lr": 1e-3,
                     "seed": 0, "subjects": 40, "per_class": 3, "data_seed": 12345, "precision": "fp32"}
"""Defaults of ``cfer pretrain``'s options (None on the parser, so ``--resume`` can tell what was given)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_data_options(p: argparse.ArgumentParser, *, path: bool = True) -> None:
    """The data options every command that reads faces takes (``--data`` unless ``path=False``)."""
    g = p.add_argument_group("data")
    if path:
        g.add_argument("--data", type=Path, default=None, help="dataset folder or CSV file (default: synthetic faces)")
    g.add_argument("--format", choices=(*FORMATS, "clips"), default=None,
                   help="format of the data: " + "; ".join(f"{k}: {r.notes}" for k, r in READERS.items())
                   + "; clips: a CSV manifest (path,label[,subject][,split]) of video files or frame folders")
    g.add_argument("--image-size", type=_positive_int, default=DEFAULT_IMAGE_SIZE,
                   help=f"image side in pixels (default {DEFAULT_IMAGE_SIZE})")
    g.add_argument("--grey", action="store_true", help="single-channel images")
    g.add_argument("--crop-faces", action="store_true", help="detect and crop the face in each image")
    g.add_argument("--align-faces", action="store_true", help="eyes level at fixed places (with --crop-faces: "
                   "in the detected face; alone: images that are face crops already)")
    g.add_argument("--crop-cascade", default=DataSection.crop_cascade,
                   help=f"Haar cascade of the face crop (default {DataSection.crop_cascade})")
    g.add_argument("--crop-margin", type=float, default=DataSection.crop_margin,
                   help=f"border around the face, as a share of its side (default {DataSection.crop_margin})")
    g.add_argument("--crop-min-neighbors", type=_positive_int, default=DataSection.crop_min_neighbors,
                   help=f"overlapping detections a face needs (default {DataSection.crop_min_neighbors})")
    g.add_argument("--subject-pattern", default=None,
                   help=r"imagefolder: regex with one group giving the subject from the file name, e.g. '^(s\d+)_'")
    g.add_argument("--skip-invalid", action="store_true", help="skip bad items (counted in one warning)")


def _synthetic_options(p: argparse.ArgumentParser, *, subjects: int, per_class: int) -> None:
    g = p.add_argument_group("synthetic faces (without --data)")
    g.add_argument("--subjects", type=_positive_int, default=subjects, help="subjects in the pool")
    g.add_argument("--per-class", type=_positive_int, default=per_class, help="faces per class per subject")
    g.add_argument("--data-seed", type=int, default=12345, help="seed of the pool's faces")


def _nproc_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--nproc", type=_positive_int, default=None, metavar="N",
                   help="train in N processes on this machine (DDP under torchrun; the batch size stays the global "
                        "one; on CPUs give each --threads 1 or cores/N)")


def _device_options(p: argparse.ArgumentParser, *, resumable: bool = False) -> None:
    g = p.add_argument_group("devices and processes")
    g.add_argument("--device", default=None if resumable else "auto",
                   help="auto (the GPU when CUDA works, else the CPU), cpu, cuda or cuda:N (default auto)")
    g.add_argument("--precision", choices=PRECISIONS, default=None if resumable else "fp32",
                   help="fp32 (default), bf16 (mixed precision, CPU or CUDA) or fp16 (CUDA)")
    g.add_argument("--compile", action="store_true", default=None if resumable else False,
                   help="train through torch.compile")
    _nproc_option(g)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cfer`` command (exposed for docs and tests)."""
    p = argparse.ArgumentParser(prog="cfer", description="Continual few-shot compound facial expression recognition.")
    p.add_argument("--version", action="version", version=f"cfer {cfer.__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", help="the whole job: teacher, compound steps, few-shot, Grad-CAM, report",
                       description="Train the basic teacher, learn the compound classes step by step with the "
                                   "cfer strategy, run few-shot episodes and Grad-CAM, and write a run folder with "
                                   "report.html. Options override the --config file, which overrides the defaults.")
    r.add_argument("--out", type=Path, default=None, help="run folder (default: runs/run-DATE-TIME)")
    r.add_argument("--config", type=Path, default=None, help="YAML config file (see --print-config)")
    r.add_argument("--print-config", action="store_true", help="print the effective config as YAML and exit")
    r.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="go on with a killed run from its last checkpoint (uses the run's saved config)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    _nproc_option(r)
    for flags, key, help_text in RUN_OPTIONS:
        if key in RUN_FLAGS:
            r.add_argument(*flags, dest=key, action="store_const", const=True, default=None, help=help_text)
        else:
            r.add_argument(*flags, dest=key, default=None, metavar=key.split(".")[-1].upper(), help=help_text)

    s = sub.add_parser("synth", help="render synthetic faces: grid picture, summary, optional export")
    s.add_argument("--out", type=Path, required=True, help="PNG path of the labelled grid")
    s.add_argument("--subjects", type=_positive_int, default=5, help="identities (rows) in the grid")
    s.add_argument("--classes", default="all", help="'all', 'basic', 'compound' or comma-separated names")
    s.add_argument("--image-size", type=_positive_int, default=DEFAULT_IMAGE_SIZE,
                   help=f"image side in pixels (default {DEFAULT_IMAGE_SIZE})")
    s.add_argument("--grey", action="store_true", help="render grey instead of RGB faces")
    s.add_argument("--difficulty", type=float, default=1.0, help="nuisance scale (0 clean, 1 default)")
    s.add_argument("--occlusion", type=float, default=0.0, help="probability of an occluding patch")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--export", type=Path, default=None,
                   help="also write the faces as an ImageFolder (class folders of PNGs) with manifest.csv")
    s.add_argument("--per-class", type=_positive_int, default=1, help="faces per class per subject")
    s.add_argument("--photos", action="store_true",
                   help="with --export: write photo-like JPEG frames that need face cropping "
                        "(cfer.data.synthetic.framed) instead of face crops")
    s.add_argument("--video", action="store_true",
                   help="with --export: write animated clips (MP4 with a voice track, one per clip) and manifest.csv; "
                        "--out is then a labelled preview GIF")
    s.add_argument("--frames", type=_positive_int, default=16, help="with --video: frames per clip (default 16)")
    s.add_argument("--fps", type=_positive_int, default=8, help="with --video: frames per second (default 8)")

    d = sub.add_parser("data", help="load a dataset and print its summary")
    d.add_argument("path", type=Path, help="dataset root folder or CSV file")
    add_data_options(d, path=False)
    d.add_argument("--subset", choices=("basic", "compound"), default=None, help="rafdb: label set (default basic)")
    d.add_argument("--grid", type=Path, default=None, help="also draw a labelled grid to this PNG")
    d.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")

    t = sub.add_parser("teacher", help="train the basic-expression teacher and save it")
    t.add_argument("--out", type=Path, required=True, help="model file to write")
    t.add_argument("--arch", default="resemotenet_slim", help="cfer or timm architecture name")
    t.add_argument("--epochs", type=_positive_int, default=None,
                   help="maximum epochs (early stopping on validation; default: the recipe's, 15 fast, 40 photo)")
    t.add_argument("--recipe", choices=TEACHER_RECIPES, default="auto",
                   help="auto (photo with --data, fast on the synthetic faces), fast or photo (face augmentation, "
                        "AdamW, label smoothing, warm-up + cosine)")
    t.add_argument("--neutral", action="store_true", help="include neutral among the teacher's classes")
    t.add_argument("--member-training", choices=("joint", "one_by_one"), default="joint",
                   help="an ensemble arch's members: joint (the ensemble loss) or one_by_one (each alone, then "
                        "learn_weights=true fusion weights fitted on validation)")
    t.add_argument("--precise-bn", action="store_true", help="recompute the BatchNorm statistics on the training "
                   "faces before each validation (steadier early stopping for models with noisy statistics)")
    t.add_argument("--mixup", type=float, default=0.0, help="mixup's Beta(a, a) parameter in training (0: none; "
                   "images only)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=_positive_int, default=64, help="global mini-batch size (default 64)")
    t.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads per process")
    _device_options(t)
    add_data_options(t)
    g = t.add_argument_group("synthetic faces (without --data)")
    g.add_argument("--subjects", type=_positive_int, nargs=3, default=(24, 6, 6), metavar=("TRAIN", "VAL", "TEST"),
                   help="subjects per split")
    g.add_argument("--per-class", type=_positive_int, default=5, help="faces per class per subject")

    f = sub.add_parser("fewshot", help="N-way K-shot episodes with a saved model as the encoder")
    f.add_argument("--model", type=Path, required=True, help="a saved cfer model file (cfer teacher, run folder)")
    f.add_argument("--ways", type=_positive_int, default=FewShotSection.ways)
    f.add_argument("--shots", type=_positive_int, default=1)
    f.add_argument("--queries", type=_positive_int, default=FewShotSection.queries,
                   help=f"query faces per class (default {FewShotSection.queries})")
    f.add_argument("--episodes", type=_positive_int, default=FewShotSection.episodes)
    f.add_argument("--classifier", default=FewShotSection.classifier, help="prototype, cosine, logistic or finetune")
    f.add_argument("--classes", default="compound", help="'compound' or comma-separated class names")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    add_data_options(f)
    _synthetic_options(f, subjects=8, per_class=5)

    e = sub.add_parser("explain", help="Grad-CAM maps, region attention and basic/compound similarity")
    e.add_argument("--model", type=Path, required=True, help="a saved cfer model file (cfer teacher, run folder)")
    e.add_argument("--out", type=Path, required=True, help="folder for the PNG figures and explain.json")
    e.add_argument("--cam-method", default="gradcam", help=", ".join(METHODS))
    add_data_options(e)
    _synthetic_options(e, subjects=4, per_class=2)

    pt = sub.add_parser("pretrain", help="masked-autoencoder pretraining of a ViT encoder on unlabelled faces",
                        description="Pretrain a ViT encoder as a masked autoencoder on unlabelled faces (the labels "
                                    "of a labelled dataset are ignored; default: synthetic faces) and write a run "
                                    "folder: encoder.pt (for `cfer run --arch ARCH --weights RUN/encoder.pt`), "
                                    "checkpoint.pt after every epoch, reconstruction.png and pretrain.json.")
    pt.add_argument("--out", type=Path, default=None, help="run folder (default: runs/pretrain-DATE-TIME)")
    pt.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                    help="go on with a killed pretraining from its last checkpoint (uses the run's saved options)")
    pt.add_argument("--arch", default=None, help=f"timm ViT (default {PRETRAIN_DEFAULTS['arch']}: ViT-Tiny widths, "
                                                 "8-pixel patches)")
    pt.add_argument("--epochs", type=_positive_int, default=None,
                    help=f"epochs (default {PRETRAIN_DEFAULTS['epochs']})")
    pt.add_argument("--mask-ratio", type=float, default=None,
                    help=f"share of patches masked (default {PRETRAIN_DEFAULTS['mask_ratio']})")
    pt.add_argument("--batch-size", type=_positive_int, default=None,
                    help=f"faces per step (default {PRETRAIN_DEFAULTS['batch_size']})")
    pt.add_argument("--lr", type=float, default=None,
                    help=f"peak AdamW learning rate (default {PRETRAIN_DEFAULTS['lr']})")
    pt.add_argument("--seed", type=int, default=None, help="seed of initialisation, shuffling, augmentation, masks")
    pt.add_argument("--threads", type=_positive_int, default=None,
                    help="torch CPU threads (default: torch's; the results do not depend on it)")
    pt.add_argument("--no-progress", action="store_true", help="no progress bars")
    _device_options(pt, resumable=True)
    add_data_options(pt)
    g = pt.add_argument_group("synthetic faces (without --data)")
    g.add_argument("--subjects", type=_positive_int, default=None,
                   help=f"subjects in the pool (default {PRETRAIN_DEFAULTS['subjects']}; every class of each)")
    g.add_argument("--per-class", type=_positive_int, default=None,
                   help=f"faces per class per subject (default {PRETRAIN_DEFAULTS['per_class']})")
    g.add_argument("--data-seed", type=int, default=None, help="seed of the pool's faces (default 12345)")

    c = sub.add_parser("compare", help="compare run folders: configs, summary numbers, curves, few-shot bars",
                       description="Put two or more finished run folders side by side: compare.html (configs with "
                                   "the differing keys highlighted, summary numbers with their spread, accuracy "
                                   "curves of all runs, few-shot bars) and compare.csv.")
    c.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders written by `cfer run --out`")
    c.add_argument("--out", type=Path, default=None, help="folder for the comparison (default: runs/compare-DATE-TIME)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cfer`` console script."""
    from cfer.app import commands
    from cfer.data.faces import FaceDetectorUnavailableError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    nproc = getattr(args, "nproc", None)
    if nproc is not None and nproc > 1:
        from cfer.app.launch import launch
        from cfer.distributed import launched_by_torchrun

        if launched_by_torchrun():
            print(f"cfer {args.command}: error: --nproc inside torchrun; give torchrun --nproc_per_node instead",
                  file=sys.stderr)
            return 2
        try:
            return launch(argv, nproc=nproc)
        except KeyboardInterrupt:
            print(f"\ncfer {args.command}: interrupted (the {nproc} processes were stopped)", file=sys.stderr)
            return 130
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return commands.HANDLERS[args.command](args)
    except KeyboardInterrupt:
        print(f"\ncfer {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FaceDetectorUnavailableError) as exc:
        hint = " (on the command line: --skip-invalid)" if "skip_invalid" in str(exc) else ""
        _error(f"cfer {args.command}: error: {exc}{hint}")
        return 2
    except OSError as exc:  # a read-only, full or wrong output place: one line, no traceback
        _error(f"cfer {args.command}: error: {_os_error(exc)}")
        return 2


def _error(message: str) -> None:
    from cfer.app.launch import say

    say(message)


def _os_error(exc: OSError) -> str:
    """What went wrong writing (or reading) a file, and what to do, in one line."""
    import errno

    where = f" {exc.filename}" if exc.filename else ""
    what = exc.strerror or str(exc)
    fix = {errno.EACCES: "choose a folder you can write to (--out)", errno.EPERM: "choose a folder you can write to",
           errno.EROFS: "the file system is read-only: choose another --out",
           errno.ENOSPC: "the disk is full: free space or choose another --out (files already written are whole)",
           errno.EDQUOT: "the disk quota is full: free space or choose another --out",
           errno.ENOTDIR: "a path component is a file, not a folder: choose another --out",
           errno.EISDIR: "the path is a folder, not a file: give a file path",
           errno.EEXIST: "a file is where cfer needs a folder: choose another --out"}
    return f"cannot use{where}: {what}; {fix.get(exc.errno, 'check the path and its permissions')}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
