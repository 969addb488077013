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
10% of the labels (the subset ``pretrain_labels.py`` draws for seed 0).
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
from cfer.data.synthetic import make_synthetic_splits


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
    ap.add_argument("--encoder", required=True, help="the MAE encoder file for w=mae")
    ap.add_argument("--arch", default="vit_face_mini")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fraction", type=float, default=1.0, help="share of the training labels (class-stratified, "
                    "the subset pretrain_labels.py draws for seed 0)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    splits = make_synthetic_splits(classes=[*taxonomy.BASIC, *taxonomy.COMPOUND], subjects=(24, 6, 10), per_class=3,
                                   image_size=48, channels=1, seed=0)
    train = splits["train"]
    if args.fraction < 1:
        sys.path.insert(0, str(Path(__file__).parent))
        from pretrain_labels import _subset

        train = _subset(train, args.fraction, 0)
    print(f"# {len(train)} training faces ({args.fraction:.0%} of the labels)")
    print("| setting | best validation accuracy | at epoch | seconds |\n|---|---|---|---|")
    for setting in args.settings:
        changes = {k: _value(v) for k, v in (kv.split("=", 1) for kv in setting.split(",") if kv)}
        weights = args.encoder if changes.pop("w", "none") == "mae" else None
        config = photo_recipe(arch=args.arch, weights=weights, patience=100, **changes)
        t0 = time.perf_counter()
        res = train_teacher(train=train, val=splits["val"], classes=taxonomy.BASIC, config=config)
        print(f"| {setting} | {res.best_val_accuracy:.3f} | {res.best_epoch} | {time.perf_counter() - t0:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
