"""The ``cfer pretrain`` job: read faces, pretrain a masked autoencoder, write the run folder.

The run folder holds, rewritten atomically after every epoch, ``checkpoint.pt`` (all the
training state), ``encoder.pt`` (the encoder's weights, for ``cfer run --arch ARCH --weights
RUN/encoder.pt``) and ``pretrain.json`` (options, loss history, status); at the end
``reconstruction.png`` (masked input, reconstruction, original). ``--resume RUN_DIR`` goes
on from the checkpoint with the options saved in it.

The folder guards follow the run folder's (docs/reliability.md): ``--out`` that is a file,
or a non-empty folder that is not a pretraining run, is refused before anything is
written; a new run into a folder that holds one is refused with the resume command.

Example:
    >>> from cfer.app.cli import main
    >>> main(["pretrain", "--out", "runs/mae", "--arch", "vit_face_micro", "--epochs", "1"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["run_pretrain", "OPTION_KEYS"]

OPTION_KEYS = ("data", "format", "image_size", "grey", "crop_faces", "align_faces", "crop_cascade", "crop_margin",
               "crop_min_neighbors", "subject_pattern", "skip_invalid", "arch", "epochs", "mask_ratio",
               "batch_size", "lr", "seed", "subjects", "per_class", "data_seed", "precision")
"""The options a pretraining run saves (and ``--resume`` reuses)."""

_MARKERS = ("pretrain.json", "checkpoint.pt")
LOCK_NAME = ".cfer.lock"  # cfer.app.runfolder's lock, held by rank 0 while it works


def _given(args: argparse.Namespace) -> list[str]:
    """The options given on the command line (differing from the parser's defaults)."""
    from cfer.app.cli import build_parser

    defaults = vars(build_parser().parse_args(["pretrain"]))
    return ["--" + k.replace("_", "-") for k in OPTION_KEYS + ("out",) if getattr(args, k) != defaults[k]]


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The effective options: the given ones over :data:`cfer.app.cli.PRETRAIN_DEFAULTS`."""
    from cfer.app.cli import PRETRAIN_DEFAULTS

    opts = {k: getattr(args, k) for k in OPTION_KEYS}
    opts.update({k: v for k, v in PRETRAIN_DEFAULTS.items() if opts.get(k) is None})
    opts["data"] = None if opts["data"] is None else str(Path(opts["data"]).resolve())
    return opts


def _claim(out: Path, *, resume: bool) -> None:
    """The run folder's refusals, before anything is written."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder; give --out a folder path (new or empty)")
    is_run = out.is_dir() and any((out / m).is_file() for m in _MARKERS)
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise ValueError(f"{out} holds no pretraining checkpoint (checkpoint.pt); give the folder a "
                             "`cfer pretrain` run wrote")
        return
    if is_run:
        raise ValueError(f"{out} already holds a pretraining run; go on with it with `cfer pretrain --resume {out}` "
                         "or choose another --out")
    found = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) if out.is_dir() else []
    if found:
        raise ValueError(f"{out} is not empty and is not a cfer pretraining folder ({len(found)} entries: "
                         f"{', '.join(found[:5])}); cfer would overwrite them: choose a new or empty folder for --out")


def _faces(opts: dict[str, Any], *, progress: bool):  # noqa: ANN202 - np.ndarray or FaceDataset
    """The faces the options name: synthetic, an unlabelled folder, or a dataset (labels ignored)."""
    channels = 1 if opts["grey"] else 3
    if opts["data"] is None:
        from cfer.data.synthetic import render_faces

        return render_faces(classes="all", n_subjects=opts["subjects"], per_class=opts["per_class"],
                            image_size=opts["image_size"], channels=channels, seed=opts["data_seed"],
                            progress=progress)
    path = Path(opts["data"])
    if opts["format"] is None:
        if not path.is_dir():
            raise ValueError(f"--data {path} is not a folder; give a folder of face images, or --format for a "
                             "dataset file (csv, fer2013)")
        if opts["crop_faces"] or opts.get("align_faces"):
            raise ValueError("--crop-faces and --align-faces read through a dataset format: add --format imagefolder "
                             "(class folders) or crop the faces beforehand")
        from cfer.pretrain.images import read_unlabelled

        return read_unlabelled(path, image_size=opts["image_size"], channels=channels,
                               skip_invalid=opts["skip_invalid"], progress=progress)
    from cfer.app.commands import _read

    return _read(argparse.Namespace(**opts), path)


def run_pretrain(args: argparse.Namespace) -> int:
    """``cfer pretrain``: see the module's doc. Returns the exit status."""
    import torch

    from cfer.app.launch import join, local_threads
    from cfer.distributed import broadcast_object, is_main
    from cfer.models.io import load_checkpoint

    resume = args.resume is not None
    if not resume:
        from cfer.app.commands import _face_options_need_data

        _face_options_need_data(args)
    device = args.device or "auto"
    join(device=device, seed=args.seed or 0)
    if args.threads is not None:
        torch.set_num_threads(local_threads(args.threads))
    if resume:
        if extra := _given(args):
            raise ValueError(f"--resume goes on with the run's saved options; drop {', '.join(extra)}")
        out = args.resume
        _claim(out, resume=True)
        opts = load_checkpoint(out / "checkpoint.pt").get("options")
        if not isinstance(opts, dict):
            raise ValueError(f"{out / 'checkpoint.pt'} holds no options of `cfer pretrain`; start a new run")
        opts = {"precision": "fp32", **opts}  # runs of a cfer before --precision
    else:
        out = broadcast_object(args.out or Path("runs") / time.strftime("pretrain-%Y%m%d-%H%M%S"))  # one folder
        if is_main():
            _claim(out, resume=False)
        opts = _options(args)
    return _pretrain(args, out=out, opts=opts, resume=resume, device=device)


def _pretrain(args: argparse.Namespace, *, out: Path, opts: dict[str, Any], resume: bool, device: str) -> int:
    from cfer.app.runfolder import hold_lock
    from cfer.distributed import is_main
    from cfer.pretrain import PretrainConfig
    from cfer.pretrain.train import as_image_tensor

    config = PretrainConfig(arch=opts["arch"], image_size=opts["image_size"], mask_ratio=opts["mask_ratio"],
                            epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"],
                            min_lr=min(1e-5, opts["lr"]), warmup_epochs=min(3.0, opts["epochs"] / 5),
                            seed=opts["seed"], progress=not args.no_progress, precision=opts["precision"],
                            device=device, compile=bool(args.compile))
    import timm

    import cfer.models  # noqa: F401 - registers cfer's models (the check below names them)

    if not timm.is_model(config.arch) or "vit" not in config.arch:
        raise ValueError(f"--arch {config.arch!r} is not a timm ViT; give vit_face_tiny, vit_face_small or any "
                         "timm vit_* name (the masked autoencoder drops patch tokens)")
    from cfer.pretrain import build_mae

    build_mae(config, in_chans=1 if opts["grey"] else 3)  # an image size the patches do not fit fails before any work
    faces = _faces(opts, progress=not args.no_progress)
    x = as_image_tensor(faces)
    if not is_main():  # rank 0 holds the folder; the others only train
        return _train(args, out=out, opts=opts, x=x, config=config, resume=resume)
    out.mkdir(parents=True, exist_ok=True)  # only now: bad options and data leave nothing behind
    with hold_lock(out):
        _claim(out, resume=resume)  # again: what another process wrote before we held the lock
        return _train(args, out=out, opts=opts, x=x, config=config, resume=resume)


def _train(args: argparse.Namespace, *, out: Path, opts: dict[str, Any], x, config, resume: bool) -> int:  # noqa: ANN001
    import torch

    from cfer.atomic import save_figure, write_json
    from cfer.distributed import is_main
    from cfer.pretrain import pretrain_mae, reconstruction_figure

    record = {"options": opts, "n_images": len(x), "in_chans": int(x.shape[1]), "encoder": "encoder.pt",
              "use": f"cfer run --arch {config.arch} --weights {out / 'encoder.pt'} --image-size {config.image_size}"
                     + (" --grey" if opts["grey"] else "")}

    def after_epoch(result) -> None:  # noqa: ANN001
        write_json(out / "pretrain.json", {**record, "status": "running", "history": result.history})
        result.save_encoder(out / "encoder.pt")

    print(f"cfer pretrain {config.arch} on {len(x)} faces ({config.image_size} px, "
          f"{'grey' if x.shape[1] == 1 else 'RGB'}) -> {out}" + (" (resuming)" if resume else ""))
    t0 = time.perf_counter()
    try:  # the checkpoint carries the options, so --resume rebuilds the same data and config
        result = pretrain_mae(images=x, config=config, checkpoint=out / "checkpoint.pt", resume=resume,
                              on_epoch=after_epoch, extra={"options": opts})
    except KeyboardInterrupt:
        from cfer.app.launch import resume_hint, say

        say(f"\ninterrupted; go on with: {resume_hint('pretrain', out)}")
        return 130
    if not is_main():
        return 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts["seed"])
        sample = x[torch.randperm(len(x))[:8]]
    save_figure(reconstruction_figure(model=result.model, images=sample, seed=opts["seed"],
                                      title=f"{config.arch}: {config.mask_ratio:.0%} of the patches masked"),
                out / "reconstruction.png", dpi=110)
    result.save_encoder(out / "encoder.pt")
    write_json(out / "pretrain.json", {**record, "status": "finished", "history": result.history,
                                       "seconds": time.perf_counter() - t0})
    h = result.history
    print(f"loss {h[0]['loss']:.4f} (epoch 1) -> {h[-1]['loss']:.4f} (epoch {h[-1]['epoch']}); "
          f"{h[-1]['images_per_s']:.0f} images/s in the last epoch")
    print(f"encoder: {(out / 'encoder.pt').resolve()}")
    print(f"use it:  {record['use']}")
    return 0
