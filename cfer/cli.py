"""The ``cfer`` command: thin wrappers that parse options and call the library.

Subcommands:
    run     the main job: teacher -> compound steps -> few-shot episodes -> Grad-CAM ->
            report.html, resumable after a kill (``--resume RUN_DIR``).
    synth   render synthetic FACS faces: a labelled grid picture, a summary, and
            optionally an ImageFolder + manifest.csv export.
    data    load a dataset in any supported format and print its summary.
    teacher train the basic-expression teacher (early stopping on validation) and save it.
    fewshot N-way K-shot episodes (mean accuracy, 95% CI) with a saved model.
    explain Grad-CAM figures, region attention and basic/compound similarity of a saved model.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import cfer

__all__ = ["main", "build_parser"]

FORMATS = ("imagefolder", "csv", "rafdb", "fer2013")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cfer`` command (exposed for docs and tests)."""
    p = argparse.ArgumentParser(
        prog="cfer",
        description="Continual few-shot compound facial expression recognition.",
    )
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
    for flags, key, help_text in RUN_OPTIONS:
        if key in _RUN_FLAGS:
            r.add_argument(*flags, dest=key, action="store_const", const=True, default=None, help=help_text)
        else:
            r.add_argument(*flags, dest=key, default=None, metavar=key.split(".")[-1].upper(), help=help_text)

    s = sub.add_parser("synth", help="render synthetic faces: grid picture, summary, optional export")
    s.add_argument("--out", type=Path, required=True, help="PNG path of the labelled grid")
    s.add_argument("--subjects", type=_positive_int, default=5, help="identities (rows) in the grid")
    s.add_argument("--classes", default="all", help="'all', 'basic', 'compound' or comma-separated names")
    s.add_argument("--size", type=_positive_int, default=64, help="image side in pixels")
    s.add_argument("--grey", action="store_true", help="render grey instead of RGB faces")
    s.add_argument("--difficulty", type=float, default=1.0, help="nuisance scale (0 clean, 1 default)")
    s.add_argument("--occlusion", type=float, default=0.0, help="probability of an occluding patch")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--export", type=Path, default=None,
                   help="also write the faces as an ImageFolder (class folders of PNGs) with manifest.csv")
    s.add_argument("--per-class", type=_positive_int, default=1, help="faces per class per subject")
    s.add_argument("--photos", action="store_true",
                   help="with --export: write photo-like JPEG frames that need face cropping (cfer.data.framed) "
                        "instead of face crops")

    d = sub.add_parser("data", help="load a dataset and print its summary")
    d.add_argument("path", type=Path, help="dataset root folder or CSV file")
    d.add_argument("--format", choices=FORMATS, required=True)
    d.add_argument("--size", type=_positive_int, default=None, help="resize images to SIZE x SIZE")
    d.add_argument("--crop-faces", action="store_true", help="detect and crop the face in each image")
    d.add_argument("--skip-invalid", action="store_true", help="skip bad items (counted in one warning)")
    d.add_argument("--subject-pattern", default=None,
                   help=r"imagefolder: regex with one group giving the subject from the file name, e.g. '^(s\d+)_'")
    d.add_argument("--subset", choices=("basic", "compound"), default="basic", help="rafdb: label set")
    d.add_argument("--grid", type=Path, default=None, help="also draw a labelled grid to this PNG")
    d.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")
    t = sub.add_parser("teacher", help="train the basic-expression teacher and save it")
    t.add_argument("--out", type=Path, required=True, help="model file to write")
    t.add_argument("--arch", default="resemotenet_slim", help="cfer or timm model name")
    t.add_argument("--size", type=_positive_int, default=64, help="image side")
    t.add_argument("--epochs", type=_positive_int, default=15, help="maximum epochs (early stopping on validation)")
    t.add_argument("--neutral", action="store_true", help="include neutral among the teacher's classes")
    t.add_argument("--data", type=Path, default=None, help="training data (default: synthetic faces)")
    t.add_argument("--format", choices=FORMATS, default=None, help="format of --data")
    t.add_argument("--subjects", type=_positive_int, nargs=3, default=(24, 6, 6), metavar=("TRAIN", "VAL", "TEST"),
                   help="synthetic: subjects per split")
    t.add_argument("--per-class", type=_positive_int, default=5, help="synthetic: faces per class per subject")
    t.add_argument("--seed", type=int, default=0)

    f = sub.add_parser("fewshot", help="N-way K-shot episodes with a saved model as the encoder")
    f.add_argument("--model", type=Path, required=True, help="a cfer model file (cfer.teacher.save_model)")
    f.add_argument("--ways", type=_positive_int, default=5)
    f.add_argument("--shots", type=_positive_int, default=1)
    f.add_argument("--queries", type=_positive_int, default=15)
    f.add_argument("--episodes", type=_positive_int, default=600)
    f.add_argument("--classifier", default="prototype", help="prototype, cosine, logistic or finetune")
    f.add_argument("--classes", default="compound", help="'compound' or comma-separated class names")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--data", type=Path, default=None, help="dataset to draw episodes from (default: synthetic faces)")
    f.add_argument("--format", choices=FORMATS, default=None, help="format of --data")
    f.add_argument("--subjects", type=_positive_int, default=8, help="synthetic: subjects in the pool")
    f.add_argument("--per-class", type=_positive_int, default=5, help="synthetic: faces per class per subject")
    f.add_argument("--data-seed", type=int, default=12345, help="synthetic: seed of the pool's faces")
    f.add_argument("--json", type=Path, default=None, help="also write the result as JSON")

    e = sub.add_parser("explain", help="Grad-CAM maps, region attention and basic/compound similarity")
    e.add_argument("--model", type=Path, required=True, help="a cfer model file (cfer.teacher.save_model)")
    e.add_argument("--out", type=Path, required=True, help="folder for the PNG figures and explain.json")
    e.add_argument("--method", default="gradcam", help="gradcam, gradcam++, layercam, eigencam, xgradcam, hirescam")
    e.add_argument("--data", type=Path, default=None, help="faces to explain (default: synthetic faces)")
    e.add_argument("--format", choices=FORMATS, default=None, help="format of --data")
    e.add_argument("--subjects", type=_positive_int, default=4, help="synthetic: subjects")
    e.add_argument("--per-class", type=_positive_int, default=2, help="synthetic: faces per class per subject")
    e.add_argument("--data-seed", type=int, default=12345, help="synthetic: seed of the faces")
    return p


# Options of `cfer run`: flags, the config key they set, help. Values stay strings here;
# cfer.config converts and checks them (one place for every rule and error message).
RUN_OPTIONS: list[tuple[tuple[str, ...], str, str]] = [
    (("--data",), "data.path", "dataset folder or CSV file (default: cfer's synthetic faces)"),
    (("--format",), "data.format", "imagefolder, csv, rafdb or fer2013 (with --data)"),
    (("--image-size",), "data.image_size", "image side in pixels"),
    (("--crop-faces",), "data.crop_faces", "detect and crop the face in each image before resizing"),
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
    (("--model",), "model.arch", "cfer or timm model name (resemotenet_slim, resemotenet, cfer_tiny, resnet18, ...)"),
    (("--weights",), "model.weights", "local weights file for the backbone"),
    (("--teacher-epochs",), "teacher.epochs", "maximum teacher epochs (early stopping on validation)"),
    (("--orders",), "continual.orders", "number of random compound class orders"),
    (("--order",), "continual.order", "explicit comma-separated compound order"),
    (("--per-step",), "continual.per_step", "compound classes per step (1 = published protocol)"),
    (("--epochs",), "continual.epochs", "epochs per compound step"),
    (("--memory-fraction",), "continual.memory_fraction", "replay budget as a share of the training set"),
    (("--memory-size",), "continual.memory_size", "replay budget in items (overrides --memory-fraction)"),
    (("--psmr-mode",), "continual.psmr_mode", "grow or limit"),
    (("--holdout",), "fewshot.holdout", "compound classes kept for few-shot episodes only (0: none)"),
    (("--ways",), "fewshot.ways", "classes per episode"),
    (("--queries",), "fewshot.queries", "query faces per class in an episode"),
    (("--shots",), "fewshot.shots", "comma-separated support sizes, e.g. 1,5"),
    (("--episodes",), "fewshot.episodes", "episodes per setting"),
    (("--cam-method",), "explain.method", "gradcam, gradcam++, layercam, eigencam, xgradcam or hirescam"),
    (("--seed",), "seed", "seed of data, splits, initialisation, orders and episodes"),
    (("--threads",), "threads", "torch CPU threads"),
]
_RUN_FLAGS = {"data.crop_faces", "data.grey", "data.skip_invalid"}
_RUN_PATHS = ("data.path", "data.rafdb_basic", "model.weights")


def _parse_classes(text: str) -> str | list[str]:
    return text if text in ("all", "basic", "compound", "basic+neutral") else [t for t in text.split(",") if t]


def _hide_library_notices() -> None:
    """Show warnings as one plain line, and drop Avalanche's and learn2learn's own notices
    (deprecations inside those packages, "no loggers specified"): the user cannot act on
    them. cfer's warnings still show.
    Filtering happens at display time because Avalanche forces its deprecation warnings on."""
    if getattr(warnings.showwarning, "cfer_quiet", False):
        return
    noisy = tuple(f"{os.sep}{m}{os.sep}" for m in ("avalanche", "learn2learn"))

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if any(n in str(filename) for n in noisy) and issubclass(category, (DeprecationWarning, FutureWarning,
                                                                             UserWarning)):
            return
        print(f"cfer: {category.__name__}: {message}", file=sys.stderr if file is None else file)

    show.cfer_quiet = True
    warnings.showwarning = show


def _cmd_run(args: argparse.Namespace) -> int:
    from cfer.config import RunConfig, dump_config, load_config, with_overrides

    given = {key: getattr(args, key) for _, key, _ in RUN_OPTIONS if getattr(args, key) is not None}
    if args.resume is not None:
        extra = [flags[0] for flags, key, _ in RUN_OPTIONS if key in given]
        extra += ["--config"] * (args.config is not None) + ["--out"] * (args.out is not None)
        if extra:
            raise ValueError(f"--resume goes on with the run's saved config; drop {', '.join(extra)}")
        from cfer.pipeline import load_run_config

        config, out = load_run_config(args.resume), args.resume
    else:
        base = load_config(args.config) if args.config is not None else RunConfig()
        config = with_overrides(base, given)
        # Absolute paths in the saved config, so --resume works from any folder.
        paths = {k: str(Path(v).resolve()) for k in _RUN_PATHS
                 if (v := getattr(getattr(config, k.split(".")[0]), k.split(".")[1])) is not None}
        config = with_overrides(config, paths)
        out = args.out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    from cfer.pipeline import run_pipeline
    from cfer.report import summary_table

    if not args.verbose:
        _hide_library_notices()
    print(f"cfer run -> {out}" + (" (resuming)" if args.resume is not None else ""))
    t0 = time.perf_counter()
    try:
        metrics = run_pipeline(config, out_dir=out, resume=args.resume is not None, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted; go on with: cfer run --resume {out}", file=sys.stderr)
        return 130
    print(summary_table(metrics))
    print(f"finished in {time.perf_counter() - t0:.0f} s")
    print(f"report: {(Path(out) / 'report.html').resolve()}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from cfer.data.preview import draw_grid
    from cfer.data.synthetic import render_faces

    t0 = time.perf_counter()
    faces = render_faces(
        classes=_parse_classes(args.classes), n_subjects=args.subjects, per_class=args.per_class,
        image_size=args.size, channels=1 if args.grey else 3, difficulty=args.difficulty,
        occlusion=args.occlusion, seed=args.seed,
    )
    took = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig = draw_grid(faces, max_subjects=args.subjects,
                    title=f"cfer synthetic faces (difficulty {args.difficulty:g}, seed {args.seed})")
    fig.savefig(args.out, dpi=110)
    print(faces.summary())
    print(f"rendered {len(faces)} faces in {took:.2f} s; grid written to {args.out}")
    if args.photos and args.export is None:
        raise ValueError("--photos writes photo-like frames to the --export folder; add --export DIR")
    if args.export is not None and args.photos:
        from cfer.data.framed import PHOTO_CROPPER, export_photo_folder, render_framed_faces

        photos = render_framed_faces(classes=_parse_classes(args.classes), n_subjects=args.subjects,
                                     per_class=args.per_class, difficulty=args.difficulty, seed=args.seed,
                                     progress=True)
        n = export_photo_folder(args.export, photos=photos)
        print(f"exported {n} JPEG photos ({photos.images.shape[2]}x{photos.images.shape[1]}) and boxes.csv to "
              f"{args.export}; read them with face cropping, e.g.\n  cfer run --data {args.export} --format "
              f"imagefolder --crop-faces --crop-cascade {PHOTO_CROPPER.cascade} --crop-margin "
              f"{PHOTO_CROPPER.margin} --crop-min-neighbors {PHOTO_CROPPER.min_neighbors} --subject-pattern '^(s\\d+)_'")
    elif args.export is not None:
        n = _export_imagefolder(faces, args.export)
        print(f"exported {n} PNG files and manifest.csv to {args.export}")
    return 0


def _export_imagefolder(faces, root: Path) -> int:  # noqa: ANN001
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    counters: dict[tuple[str, str], int] = {}
    rows = []
    for i in range(len(faces)):
        name = faces.classes[faces.labels[i]]
        subject = faces.subjects[i]
        k = counters.get((name, subject), 0)
        counters[(name, subject)] = k + 1
        rel = Path(name) / f"{subject}_{k:03d}.png"
        (root / name).mkdir(exist_ok=True)
        img = faces.images[i]
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(root / rel)
        rows.append((rel.as_posix(), name, subject))
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "subject"])
        w.writerows(rows)
    return len(rows)


def _cmd_data(args: argparse.Namespace) -> int:
    from cfer.data import folders

    common = dict(skip_invalid=args.skip_invalid)
    if args.size is not None:
        common["image_size"] = args.size
    if args.format == "imagefolder":
        ds = folders.read_image_folder(args.path, crop_faces=args.crop_faces,
                                       subject_pattern=args.subject_pattern, **common)
    elif args.format == "csv":
        ds = folders.read_csv_manifest(args.path, crop_faces=args.crop_faces, **common)
    elif args.format == "rafdb":
        ds = folders.read_rafdb(args.path, subset=args.subset, **common)
    else:
        ds = folders.read_fer2013(args.path, **common)
    print(ds.summary())
    if args.grid is not None:
        from cfer.data.preview import draw_grid

        args.grid.parent.mkdir(parents=True, exist_ok=True)
        draw_grid(ds, max_subjects=5, title=str(args.path)).savefig(args.grid, dpi=110)
        print(f"grid written to {args.grid}")
    if args.json is not None:
        info = {
            "path": str(args.path), "format": args.format, "n": len(ds), "image_size": list(ds.image_size),
            "channels": ds.channels, "counts": ds.counts(),
            "subjects": None if ds.subjects is None else len(set(ds.subjects.tolist())),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(info, indent=2))
        print(f"summary written to {args.json}")
    return 0


def _load_data(path: Path, fmt: str | None, size: int | None = None):  # noqa: ANN202
    from cfer.data import folders

    if fmt is None:
        raise ValueError("--format is required with --data (imagefolder, csv, rafdb or fer2013)")
    kw = {} if size is None else {"image_size": size}
    readers = {"imagefolder": folders.read_image_folder, "csv": folders.read_csv_manifest,
               "rafdb": lambda p, **k: folders.read_rafdb(p, subset="compound", **k), "fer2013": folders.read_fer2013}
    return readers[fmt](path, **kw)


def _cmd_teacher(args: argparse.Namespace) -> int:
    from cfer import taxonomy
    from cfer.teacher import TeacherConfig, evaluate_classes, save_model, train_teacher

    classes = ((taxonomy.NEUTRAL,) if args.neutral else ()) + taxonomy.BASIC
    if args.data is None:
        from cfer.data.synthetic import make_synthetic_splits

        parts = make_synthetic_splits(classes=list(classes), subjects=tuple(args.subjects), per_class=args.per_class,
                                      image_size=args.size, seed=args.seed)
    else:
        from cfer.data.splits import apply_split

        parts = apply_split(_load_data(args.data, args.format, args.size), seed=args.seed)
    config = TeacherConfig(arch=args.arch, max_epochs=args.epochs, seed=args.seed, progress=True)
    result = train_teacher(train=parts["train"], val=parts["val"], config=config,
                           classes=tuple(c for c in classes if c in parts["train"].classes))
    acc, n_test = evaluate_classes(result.model, parts["test"], classes=result.classes)
    save_model(result.model, args.out, arch=args.arch, classes=result.classes,
               extra={"image_size": args.size, "best_epoch": result.best_epoch,
                      "val_accuracy": result.best_val_accuracy, "test_accuracy": acc})
    print(f"teacher {args.arch}: best validation accuracy {result.best_val_accuracy:.3f} at epoch "
          f"{result.best_epoch}; test accuracy {acc:.3f} on {n_test} faces of unseen subjects")
    print(f"saved to {args.out}")
    return 0


def _cmd_fewshot(args: argparse.Namespace) -> int:
    from cfer.episodes import EpisodeConfig, evaluate_model
    from cfer.teacher import load_model

    config = EpisodeConfig(ways=args.ways, shots=args.shots, queries=args.queries, episodes=args.episodes,
                           classifier=args.classifier, seed=args.seed)
    model, model_classes = load_model(args.model)
    size = getattr(model, "cfer_meta", {}).get("image_size")
    if args.data is None:
        from cfer.data.synthetic import render_faces

        classes = "compound" if args.classes == "compound" else _parse_classes(args.classes)
        data = render_faces(classes=classes, n_subjects=args.subjects, per_class=args.per_class,
                            image_size=size or 64, seed=args.data_seed, first_subject=100_000)
    else:
        data = _load_data(args.data, args.format, size)
    classes = None if args.classes == "compound" else _parse_classes(args.classes)
    result = evaluate_model(model, data, config=config, classes=classes)
    print(f"model {args.model} (trained on {len(model_classes)} classes); pool: {len(data)} images")
    print(result)
    worst = sorted(result.per_class.items(), key=lambda kv: kv[1])[:3]
    print("hardest classes: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in worst))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(result.to_json(indent=2))
        print(f"result written to {args.json}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from cfer.explain.analysis import analyse
    from cfer.teacher import load_model

    model, classes = load_model(args.model)
    size = getattr(model, "cfer_meta", {}).get("image_size")
    if args.data is None:
        from cfer.data.synthetic import render_faces

        faces = render_faces(n_subjects=args.subjects, per_class=args.per_class, image_size=size or 64,
                             seed=args.data_seed, first_subject=100_000)
    else:
        faces = _load_data(args.data, args.format, size)
    summary = analyse(model, classes=classes, faces=faces, method=args.method, out_dir=args.out,
                      title=args.model.stem)
    print(f"explained {summary['n_images']} faces with {args.method}")
    if "localisation" in summary:
        loc = summary["localisation"]
        print("localisation (CAM energy in the shown AUs' regions / uniform map): "
              + ", ".join(f"{k} {v:.2f}" for k, v in loc.items()))
    if "constituent_gap" in summary:
        g = summary["constituent_gap"]["correlation"]["mean"]
        print(f"compound maps vs constituents minus other basics (correlation): {g:+.3f}")
    print(f"figures and explain.json written to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cfer`` console script."""
    from cfer.data.faces import FaceDetectorUnavailableError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handlers = {"run": _cmd_run, "synth": _cmd_synth, "data": _cmd_data, "teacher": _cmd_teacher, "fewshot": _cmd_fewshot,
                "explain": _cmd_explain}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError, FaceDetectorUnavailableError) as exc:
        hint = " (on the command line: --skip-invalid)" if "skip_invalid" in str(exc) else ""
        print(f"cfer {args.command}: error: {exc}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
