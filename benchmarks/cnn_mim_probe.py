"""Probe: does masked-image modelling help the CNN teacher when labels are scarce? (synthetic faces)

The convolutional path the pretraining issue asks about, tried before building it into
``cfer pretrain``. For each seed, on the data of ``benchmarks/pretrain_labels.py`` (48 px
grey synthetic faces, 24 / 6 / 10 subjects, 3 faces per class and subject):

1. **pretraining** (SimMIM-style, dense masking): ``resemotenet_slim``'s trunk sees the
   training pool's faces (every class, labels ignored) with ``--mask`` of their 8x8 patches
   set to zero; a light decoder (upsampling convolutions) rebuilds the image from the
   trunk's feature map; the loss is the mean squared error on the masked patches against
   each patch's pixels normalised by its own mean and variance. AdamW (lr 1e-3, weight
   decay 0.05), 5% warm-up and cosine decay, batch 64, horizontal flips, ``--images``
   faces seen.
2. **fine-tuning**: the basic teacher from those weights against the same CNN from random
   weights, with cfer's fast CNN teacher defaults and a class-stratified 10% / 30% of the
   training labels (``pretrain_labels.py``'s ``_teacher``: the same epochs, patience and
   label subsets as its ``cnn`` arm).

Scores are on ``--evaluate-on`` (default: the validation subjects, where choices are made).

Usage:
    python benchmarks/cnn_mim_probe.py --seeds 0 --json docs/results/cnn_mim_probe_s0.json
    python benchmarks/cnn_mim_probe.py --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_labels  # the same data, label subsets and teacher settings

from cfer import taxonomy
from cfer.data.synthetic import make_synthetic_splits
from cfer.models import create_backbone


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                         nn.ReLU())


def decoder(features: int, map_size: int, image_size: int, channels: int) -> nn.Sequential:
    """Upsampling convolutions from the trunk's ``map_size`` map to the image (one conv per x2)."""
    scale = image_size // map_size
    steps = int(np.log2(scale // 3)) if scale % 3 == 0 else int(np.log2(scale))
    first = scale // (2 ** steps)
    layers: list[nn.Module] = [nn.Upsample(scale_factor=first), nn.Conv2d(features, 128, 3, padding=1),
                               nn.BatchNorm2d(128), nn.ReLU()]
    width = 128
    for _ in range(steps):
        layers.append(_up(width, max(16, width // 2)))
        width = max(16, width // 2)
    layers.append(nn.Conv2d(width, channels, 1))
    return nn.Sequential(*layers)


def masked_loss(pred: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Mean squared error on the masked patches (``mask``: ``(B, patches)``, 1 = masked) against
    per-patch normalised pixels."""
    t = x.unfold(2, patch, patch).unfold(3, patch, patch)  # (B, C, gh, gw, p, p)
    t = (t - t.mean((-1, -2), keepdim=True)) / t.var((-1, -2), keepdim=True).add(1e-6).sqrt()
    p = pred.unfold(2, patch, patch).unfold(3, patch, patch)
    err = ((p - t) ** 2).mean((1, -1, -2)).reshape(len(x), -1)
    return (err * mask).sum() / mask.sum()


def pretrain(pool: torch.Tensor, *, arch: str, images: int, mask_ratio: float, patch: int, seed: int) -> dict:
    """The trunk's weights after masked-image modelling on ``pool`` ``(N, C, H, W)`` in [0, 1]."""
    torch.manual_seed(seed)
    n, c, h, _ = pool.shape
    enc = create_backbone(arch, in_chans=c, img_size=h)
    with torch.no_grad():
        fmap = enc.eval().forward_features(pool[:2])  # the map's size (eval: no BatchNorm update)
    enc.train()
    dec = decoder(fmap.shape[1], fmap.shape[-1], h, c)
    opt = torch.optim.AdamW([*enc.parameters(), *dec.parameters()], lr=1e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(seed)
    grid, batch = h // patch, 64
    steps, t0 = max(1, images // batch), time.perf_counter()
    for s in range(steps):
        lr = 1e-3 * min(1.0, (s + 1) / max(1, 0.05 * steps)) * 0.5 * (1 + np.cos(np.pi * s / steps))
        for group in opt.param_groups:
            group["lr"] = lr
        x = pool[torch.randint(n, (batch,), generator=g)]
        x = torch.where((torch.rand(batch, generator=g) < 0.5)[:, None, None, None], x.flip(-1), x)
        mask = (torch.rand(batch, grid * grid, generator=g).argsort(1) < int(mask_ratio * grid * grid)).float()
        pixels = mask.reshape(batch, 1, grid, grid).repeat_interleave(patch, 2).repeat_interleave(patch, 3)
        loss = masked_loss(dec(enc.forward_features(x * (1 - pixels))), x, mask, patch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s % 200 == 0 or s == steps - 1:
            print(f"  pretrain step {s + 1}/{steps}: loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    return {"state": enc.state_dict(), "final_loss": float(loss.item()), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3])
    ap.add_argument("--images", type=int, default=60_000, help="faces seen by the pretraining")
    ap.add_argument("--mask", type=float, default=0.5, help="share of 8x8 patches masked")
    ap.add_argument("--evaluate-on", choices=["val", "test"], default="val")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny data, few steps")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    args = pretrain_labels.parse_args(["--quick"] if a.quick else [])
    if a.quick:
        a.images, a.fractions = 256, [0.5]
    classes = [*taxonomy.BASIC, *taxonomy.COMPOUND]
    records = []
    with torch.random.fork_rng(devices=[]):
        for seed in a.seeds:
            splits = make_synthetic_splits(classes=classes, subjects=tuple(args.subjects), per_class=args.per_class,
                                           image_size=args.image_size, channels=1, seed=seed)
            pool = torch.as_tensor(splits["train"].images).float().permute(0, 3, 1, 2) / 255.0
            pre = pretrain(pool, arch=args.cnn, images=a.images, mask_ratio=a.mask, patch=8, seed=seed)
            weights = Path(f"runs/cnn_mim_probe/{args.cnn}-seed{seed}-m{a.mask}-i{a.images}.pt")
            weights.parent.mkdir(parents=True, exist_ok=True)
            torch.save(pre["state"], weights)
            evaluate = {**splits, "test": splits[a.evaluate_on]}
            for fraction in a.fractions:
                train = pretrain_labels._subset(splits["train"], fraction, seed)
                for arm, w in (("cnn", None), ("cnn-mim", weights)):
                    _, rec = pretrain_labels._teacher(args.cnn, w, train, evaluate, fraction, args, seed)
                    records.append({"seed": seed, "fraction": fraction, "arm": arm, "pretrain_loss": pre["final_loss"],
                                    **rec})
                    print(f"seed {seed} labels {fraction:.0%} {arm:8s} {a.evaluate_on} accuracy {rec['accuracy']:.3f} "
                          f"macro-F1 {rec['macro_f1']:.3f} ({rec['epochs_run']} epochs)", flush=True)
    print(f"\n| labels | seed | {args.cnn} from scratch | after masked-image modelling | difference |")
    print("|---|---|---|---|---|")
    for fraction in a.fractions:
        for seed in a.seeds:
            r = {x["arm"]: x["accuracy"] for x in records if x["seed"] == seed and x["fraction"] == fraction}
            print(f"| {fraction:.0%} | {seed} | {r['cnn']:.3f} | {r['cnn-mim']:.3f} | {r['cnn-mim'] - r['cnn']:+.3f} |")
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
