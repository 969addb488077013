"""The handlers of the ``cfer`` subcommands: each parses nothing, calls the library and prints.

:data:`HANDLERS` maps a subcommand to its handler; :mod:`cfer.app.cli` builds the parser.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

__all__ = ["HANDLERS"]

_RUN_PATHS = ("data.path", "data.rafdb_basic", "model.weights")


def _is_hub(weights: str) -> bool:
    """Whether ``--weights`` names hub weights (``hf-hub:ORG/NAME`` or a timm tag), not a file."""
    from cfer.models.hub import is_hub_weights

    return is_hub_weights(weights)


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


def _face_options_need_data(args: argparse.Namespace) -> None:
    """Refuse --crop-faces / --align-faces without --data: on the synthetic faces they would do nothing."""
    if getattr(args, "data", None) is None:
        for flag in ("crop_faces", "align_faces"):
            if getattr(args, flag, False):
                raise ValueError(f"--{flag.replace('_', '-')} applies to --data only; the synthetic faces are rendered "
                                 "centred and level: add --data PATH or drop it")


def _read(args: argparse.Namespace, path: Path, *, image_size: int | None = None, subset: str | None = None):  # noqa: ANN202
    """Read ``path`` with the shared data options (see ``cli.add_data_options``)."""
    from cfer.data.align import face_cropper
    from cfer.data.readers import read_dataset

    if args.format is None:
        raise ValueError("--format is required with --data (imagefolder, csv, rafdb, fer2013 or clips)")
    try:
        crop = face_cropper(crop=args.crop_faces, align=getattr(args, "align_faces", False), margin=args.crop_margin,
                            min_neighbors=args.crop_min_neighbors, cascade=args.crop_cascade)
    except ValueError as exc:
        raise ValueError(f"--crop-margin/--crop-min-neighbors/--crop-cascade: {exc}") from None
    if args.format == "clips":
        from cfer.cliplayout import ClipLayout
        from cfer.data.video import read_clip_manifest

        return read_clip_manifest(path, layout=ClipLayout(image_size=image_size or args.image_size,
                                                          channels=1 if args.grey else 3),
                                  crop_faces=crop, skip_invalid=args.skip_invalid)
    return read_dataset(path, format=args.format, image_size=image_size or args.image_size,
                        channels=1 if args.grey else None, crop_faces=crop,
                        subject_pattern=args.subject_pattern, subset=subset, skip_invalid=args.skip_invalid,
                        progress=True)


def _cmd_run(args: argparse.Namespace) -> int:
    from cfer.app.config import RunConfig
    from cfer.app.config_io import dump_config, load_config, with_overrides
    from cfer.app.run_options import RUN_OPTIONS

    given = {key: getattr(args, key) for _, key, _ in RUN_OPTIONS if getattr(args, key) is not None}
    if args.resume is not None:
        extra = [flags[0] for flags, key, _ in RUN_OPTIONS if key in given]
        extra += ["--config"] * (args.config is not None) + ["--out"] * (args.out is not None)
        if extra:
            raise ValueError(f"--resume goes on with the run's saved config; drop {', '.join(extra)}")
        from cfer.app.pipeline import load_run_config

        config, out = load_run_config(args.resume), args.resume
    else:
        base = load_config(args.config) if args.config is not None else RunConfig()
        config = with_overrides(base, given)
        # Absolute paths in the saved config, so --resume works from any folder.
        paths = {k: str(Path(v).resolve()) for k in _RUN_PATHS
                 if (v := getattr(getattr(config, k.split(".")[0]), k.split(".")[1])) is not None
                 and not (k == "model.weights" and _is_hub(v))}
        config = with_overrides(config, paths)
        out = args.out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    from cfer.app.launch import join
    from cfer.distributed import broadcast_object

    join(device=config.device, seed=config.seed)
    out = broadcast_object(out)  # every process of a torchrun job works on rank 0's folder
    from cfer.app.pipeline import run_pipeline
    from cfer.app.report import summary_table

    if not args.verbose:
        _hide_library_notices()
    print(f"cfer run -> {out}" + (" (resuming)" if args.resume is not None else ""))
    t0 = time.perf_counter()
    try:
        metrics = run_pipeline(config, out_dir=out, resume=args.resume is not None, progress=not args.no_progress)
    except KeyboardInterrupt:
        from cfer.app.launch import resume_hint, say

        say(f"\ninterrupted; go on with: {resume_hint('run', out)}")
        return 130
    if not metrics:  # a torchrun rank other than 0: rank 0 reports
        return 0
    print(summary_table(metrics))
    print(f"finished in {time.perf_counter() - t0:.0f} s")
    print(f"report: {(Path(out) / 'report.html').resolve()}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from cfer.data.preview import draw_grid
    from cfer.data.synthetic import render_faces

    if args.photos and args.export is None:
        raise ValueError("--photos writes photo-like frames to the --export folder; add --export DIR")
    if args.video:
        return _synth_video(args)
    t0 = time.perf_counter()
    faces = render_faces(
        classes=_parse_classes(args.classes), n_subjects=args.subjects, per_class=args.per_class,
        image_size=args.image_size, channels=1 if args.grey else 3, difficulty=args.difficulty,
        occlusion=args.occlusion, seed=args.seed,
    )
    took = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig = draw_grid(faces, max_subjects=args.subjects,
                    title=f"cfer synthetic faces (difficulty {args.difficulty:g}, seed {args.seed})")
    fig.savefig(args.out, dpi=110)
    print(faces.summary())
    print(f"rendered {len(faces)} faces in {took:.2f} s; grid written to {args.out}")
    if args.export is not None and args.photos:
        from cfer.data.synthetic.framed import PHOTO_CROPPER, export_photo_folder, render_framed_faces

        photos = render_framed_faces(classes=_parse_classes(args.classes), n_subjects=args.subjects,
                                     per_class=args.per_class, difficulty=args.difficulty, seed=args.seed,
                                     progress=True)
        n = export_photo_folder(args.export, photos=photos)
        print(f"exported {n} JPEG photos ({photos.images.shape[2]}x{photos.images.shape[1]}) and manifest.csv to "
              f"{args.export}; read them with face cropping, e.g.\n  cfer run --data {args.export} --format "
              f"imagefolder --crop-faces --crop-cascade {PHOTO_CROPPER.cascade} --crop-margin "
              f"{PHOTO_CROPPER.margin} --crop-min-neighbors {PHOTO_CROPPER.min_neighbors} "
              "--subject-pattern '^(s\\d+)_'")
    elif args.export is not None:
        from cfer.data.export import export_image_folder

        n = export_image_folder(args.export, images=faces.images, labels=faces.class_names, subjects=faces.subjects,
                                overwrite=True)
        print(f"exported {n} PNG files and manifest.csv to {args.export}")
    return 0


def _synth_video(args: argparse.Namespace) -> int:
    from cfer.data.video.export import synth_video_command

    if args.export is None or args.photos:
        raise ValueError("--video writes clips to the --export folder (and cannot be combined with --photos); "
                         "add --export DIR")
    summary = synth_video_command(out=args.export, subjects=args.subjects, per_class=args.per_class,
                                  frames=args.frames, fps=args.fps, image_size=args.image_size, grey=args.grey,
                                  seed=args.seed, classes=args.classes, preview=args.out, progress=True)
    print(f"exported {summary['clips']} clips ({summary['video_codec']} + {summary['audio_codec']}) and "
          f"{summary['manifest']} in {summary['seconds']:.1f} s; preview: {summary['preview']}\n"
          f"read them with: cfer data {summary['manifest']} --format clips")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    ds = _read(args, args.path, subset=args.subset)
    print(ds.summary())
    if ds.skipped:
        print("left out: " + ", ".join(f"{n} {reason}" for reason, n in ds.skipped.items()))
    if args.grid is not None:
        from cfer.data.preview import draw_grid

        args.grid.parent.mkdir(parents=True, exist_ok=True)
        draw_grid(ds, max_subjects=5, title=str(args.path)).savefig(args.grid, dpi=110)
        print(f"grid written to {args.grid}")
    if args.json is not None:
        from cfer.atomic import write_json

        info = {
            "path": str(args.path), "format": args.format, "n": len(ds), "image_size": list(ds.image_size),
            "channels": ds.channels, "counts": ds.counts(),
            "subjects": None if ds.subjects is None else len(set(ds.subjects.tolist())),
            "skipped": ds.skipped,
        }
        write_json(args.json, info)
        print(f"summary written to {args.json}")
    return 0


def _splits(args: argparse.Namespace, ds):  # noqa: ANN001, ANN202
    """Person-disjoint train/val/test splits of a read dataset, as ``cfer run`` makes them."""
    from cfer.app.config_io import config_from_dict
    from cfer.app.prepare import split_run_data

    return split_run_data(ds, config=config_from_dict({"seed": args.seed}))


def _cmd_teacher(args: argparse.Namespace) -> int:
    import torch

    from cfer import taxonomy
    from cfer.app.launch import join, local_threads
    from cfer.app.recipe import recipe_teacher
    from cfer.continual.teacher import evaluate_classes, train_teacher
    from cfer.distributed import is_main
    from cfer.models.io import save_model

    _face_options_need_data(args)
    join(device=args.device, seed=args.seed)
    if args.threads is not None:
        torch.set_num_threads(local_threads(args.threads))
    classes = ((taxonomy.NEUTRAL,) if args.neutral else ()) + taxonomy.BASIC
    if args.data is None:
        from cfer.data.synthetic import make_synthetic_splits

        parts = make_synthetic_splits(classes=list(classes), subjects=tuple(args.subjects), per_class=args.per_class,
                                      image_size=args.image_size, channels=1 if args.grey else 3, seed=args.seed)
    else:
        parts = _splits(args, _read(args, args.data))
    recipe, config = recipe_teacher(args.recipe, user_data=args.data is not None, epochs=args.epochs,
                                    arch=args.arch, seed=args.seed, progress=True, batch_size=args.batch_size,
                                    device=args.device, precision=args.precision, compile=args.compile,
                                    member_training=args.member_training, precise_bn=args.precise_bn,
                                    mixup=args.mixup)
    result = train_teacher(train=parts["train"], val=parts["val"], config=config,
                           classes=tuple(c for c in classes if c in parts["train"].classes))
    acc, n_test = evaluate_classes(result.model, parts["test"], classes=result.classes)
    if not is_main():  # rank 0 writes the file
        return 0
    save_model(result.model, args.out, arch=args.arch, classes=result.classes,
               extra={"image_size": args.image_size, "recipe": recipe, "best_epoch": result.best_epoch,
                      "val_accuracy": result.best_val_accuracy, "test_accuracy": acc})
    print(f"teacher {args.arch} ({recipe} recipe): best validation accuracy {result.best_val_accuracy:.3f} at epoch "
          f"{result.best_epoch}; test accuracy {acc:.3f} on {n_test} faces of unseen subjects")
    print(f"saved to {args.out}")
    return 0


def _model_and_faces(args: argparse.Namespace, *, classes: str | list[str] | None = None):  # noqa: ANN202
    """The saved model, and faces at its own image size and channels (synthetic without --data)."""
    from cfer.continual.growing import load_model
    from cfer.models.io import input_channels

    _face_options_need_data(args)
    model, model_classes = load_model(args.model)
    size = getattr(model, "cfer_meta", {}).get("image_size") or args.image_size
    channels = input_channels(model)
    if args.grey and channels != 1:
        raise ValueError(f"{args.model} takes {channels}-channel images; drop --grey (the model's own channels are "
                         "used)")
    args.grey = channels == 1  # the saved model knows its channels: a grey model reads grey faces
    if args.data is None:
        from cfer.data.synthetic import render_faces

        faces = render_faces(classes=classes, n_subjects=args.subjects, per_class=args.per_class, image_size=size,
                             channels=channels, seed=args.data_seed, first_subject=100_000)
    else:
        faces = _read(args, args.data, image_size=size, subset="compound" if args.format == "rafdb" else None)
    return model, model_classes, faces


def _cmd_fewshot(args: argparse.Namespace) -> int:
    from cfer.atomic import write_json
    from cfer.fewshot.episodes import EpisodeConfig, evaluate_model

    config = EpisodeConfig(ways=args.ways, shots=args.shots, queries=args.queries, episodes=args.episodes,
                           classifier=args.classifier, seed=args.seed)
    pool_classes = "compound" if args.classes == "compound" else _parse_classes(args.classes)
    model, model_classes, data = _model_and_faces(args, classes=pool_classes)
    classes = None if args.classes == "compound" else _parse_classes(args.classes)
    result = evaluate_model(model, data, config=config, classes=classes)
    print(f"model {args.model} (trained on {len(model_classes)} classes); pool: {len(data)} images")
    print(result)
    worst = sorted(result.per_class.items(), key=lambda kv: kv[1])[:3]
    print("hardest classes: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in worst))
    if args.json is not None:
        write_json(args.json, result.to_dict())
        print(f"result written to {args.json}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from cfer.explain.analysis import analyse
    from cfer.explain.figures import save_analysis

    model, classes, faces = _model_and_faces(args)
    result = analyse(model, classes=classes, faces=faces, method=args.cam_method)
    save_analysis(result, args.out, title=args.model.stem)
    summary = result.summary
    print(f"explained {summary['n_images']} faces with {args.cam_method}")
    if "localisation" in summary:
        loc = summary["localisation"]
        print("localisation (CAM energy in the shown AUs' regions / uniform map): "
              + ", ".join(f"{k} {v:.2f}" for k, v in loc.items()))
    if "constituent_gap" in summary:
        g = summary["constituent_gap"]["correlation"]["mean"]
        print(f"compound maps vs constituents minus other basics (correlation): {g:+.3f}")
    print(f"figures and explain.json written to {args.out}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from cfer.app.compare import write_comparison

    out = args.out or Path("runs") / time.strftime("compare-%Y%m%d-%H%M%S")
    paths = write_comparison(args.runs, out_dir=out)
    print(f"compared {len(args.runs)} runs: {', '.join(str(r) for r in args.runs)}")
    print(f"table: {paths['csv'].resolve()}")
    print(f"comparison: {paths['html'].resolve()}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from cfer.app.pretrain_job import run_pretrain

    if not args.verbose:
        _hide_library_notices()
    return run_pretrain(args)


HANDLERS = {"run": _cmd_run, "synth": _cmd_synth, "data": _cmd_data, "teacher": _cmd_teacher,
            "fewshot": _cmd_fewshot, "explain": _cmd_explain, "compare": _cmd_compare, "pretrain": _cmd_pretrain}
"""The handler of each subcommand."""
