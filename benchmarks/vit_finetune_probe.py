"""Choose a ViT's fine-tuning settings on validation subjects: best validation accuracy per setting.

The seed-0 data of ``pretrain_labels.py`` (synthetic faces, 24 / 6 / 10 subjects, 3 faces per
class, 48 px grey), all training labels, the six basic classes. Each setting is
``key=value`` pairs over :func:`cfer.continual.teacher.photo_recipe` (``w=mae`` starts from
``--encoder``, ``w=none`` from random weights); patience is 100, so every run goes the full
``max_epochs`` and the best validation epoch is reported. The test subjects are never used.

    python benchmarks/vit_finetune_probe.py \\
        --encoder runs/pretrain_labels/vit_face_mini-48-same-seed0-n1512-i100000.pt \\
        "w=none,max_epochs=60" "w=mae,max_epochs=60,augment=shift,label_smoothing=0.0,lr=0.0005"

(the encoder is the one ``pretrain_labels.py --seeds 0`` caches.) ``--fraction 0.1`` chooses with
10% of the labels (the subset ``pretrain_labels.py`` draws for seed 0). ``--seed S`` takes seed S's
data, label subset and initialisation instead, and ``--encoder same`` the encoder that
``pretrain_labels.py`` caches for that seed's pool (pretrained here if it is not cached yet).
``drop_path_rate=R`` sets the ViT's stochastic depth (a builder option, not a recipe field);
``--every N`` prints the training loss and validation accuracy every N epochs. ``--framed``
(with ``--align``) takes the photo-like folders of ``pretrain_labels.py --framed`` instead, and
``--encoder same`` then that run's ``framed-same`` encoder (``--encoder large``: ``framed-large``):

    python benchmarks/vit_finetune_probe.py --seed 1 --fraction 0.1 --encoder same --patience 600 --every 50 \\
        "w=mae,augment=shift,label_smoothing=0.0,max_epochs=600,warmup_epochs=30,lr=0.0005" ...
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

from cfer import taxonomy
from cfer.continual.teacher import photo_recipe, train_teacher


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", help="comma-separated key=value over photo_recipe; w=mae|none")
    ap.add_argument("--encoder", required=True, help="the MAE encoder file for w=mae; 'same' / 'large': "
                    "pretrain_labels.py's encoder of the seed's own pool / of the larger pool (cached under "
                    "runs/pretrain_labels)")
    ap.add_argument("--mask-ratio", type=float, default=0.75, help="with --encoder same: the pretraining's masking")
    ap.add_argument("--pretrain-images", type=int, default=100_000, help="with --encoder same: faces the pretraining "
                    "sees")
    ap.add_argument("--seed", type=int, default=0, help="data, label subset and initialisation (default 0)")
    ap.add_argument("--patience", type=int, default=100)
    ap.add_argument("--every", type=int, default=0, help="print loss and validation accuracy every N epochs")
    ap.add_argument("--arch", default="vit_face_mini")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--framed", action="store_true", help="pretrain_labels.py --framed's photo-like folders")
    ap.add_argument("--align", action="store_true", help="with --framed: eyes aligned in the detected face")
    ap.add_argument("--fraction", type=float, default=1.0, help="share of the training labels (class-stratified, "
                    "the subset pretrain_labels.py draws for seed 0)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    import pretrain_labels

    labels_args = pretrain_labels.parse_args(["--seeds", str(args.seed), "--arch", args.arch,
                                               "--mask-ratio", str(args.mask_ratio),
                                               "--pretrain-images", str(args.pretrain_images),
                                               *(["--framed"] if args.framed else []),
                                               *(["--align"] if args.align else [])])
    classes = [*taxonomy.BASIC, *taxonomy.COMPOUND]
    splits = pretrain_labels.data_splits(classes, labels_args, args.seed)
    prefix = "framed-" if args.framed else ""
    if args.encoder == "same":
        args.encoder = str(pretrain_labels._encoder(splits["train"].images, prefix + "same", labels_args,
                                                    args.seed)[0])
    elif args.encoder == "large":
        pool = pretrain_labels._large_pool(classes, labels_args, args.seed).images
        args.encoder = str(pretrain_labels._encoder(pool, prefix + "large", labels_args, args.seed)[0])
    train = splits["train"]
    if args.fraction < 1:
        train = pretrain_labels._subset(train, args.fraction, args.seed)
    print(f"# seed {args.seed}: {len(train)} training faces ({args.fraction:.0%} of the labels)")
    print("| setting | best validation accuracy | at epoch | seconds |\n|---|---|---|---|")
    for setting in args.settings:
        changes = {k: _value(v) for k, v in (kv.split("=", 1) for kv in setting.split(",") if kv)}
        weights = args.encoder if changes.pop("w", "none") == "mae" else None
        if "drop_path_rate" in changes:
            changes["arch_options"] = {"drop_path_rate": float(changes.pop("drop_path_rate"))}
        config = photo_recipe(arch=args.arch, weights=weights, patience=args.patience, seed=args.seed, **changes)
        t0 = time.perf_counter()
        res = train_teacher(train=train, val=splits["val"], classes=taxonomy.BASIC, config=config)
        if args.every:
            print("  " + ", ".join(f"{h['epoch']}: {h['train_loss']:.2f} / {h['val_accuracy']:.3f}"
                                   for h in res.history[::args.every]), file=sys.stderr, flush=True)
        print(f"| {setting} | {res.best_val_accuracy:.3f} | {res.best_epoch} | {time.perf_counter() - t0:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
