"""Images per second of the masked-autoencoder pretraining step vs a plain supervised step.

Both run in ONE process, taking turns step by step (so a change in the machine's load
touches both alike and their ratio survives a shared machine), on the same encoder
(``vit_face_tiny``: ViT-Tiny widths, 8-pixel patches, 64-pixel faces, unless ``--arch`` /
``--size``) and the same random batch:

* **MAE**: mask ``--mask-ratio`` of the patches before the encoder, encode the rest, decode
  with cfer's light decoder (``PretrainConfig``'s default width and depth unless
  ``--decoder-dim`` / ``--decoder-depth``), normalised-pixel loss on the masked patches, backward;
* **supervised**: the same encoder on whole images with a 7-class linear head,
  cross-entropy, backward.

Each is timed as forward + backward and as forward + backward + AdamW step (a whole
training step); augmentation is left out of both. The figure of merit is the in-run ratio
of images/s; the absolute images/s depend on what else the machine runs.

Usage:
    python benchmarks/pretrain_speed.py [--threads 2] [--batch 64] [--repeats 15] [--size 64]
        [--arch vit_face_tiny] [--mask-ratio 0.75]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OpenMP threads that wait by sleeping, not spinning: on a shared 2-core machine a spinning
# thread whose partner was descheduled stalls every parallel region, and both steps fall to
# the same few images/s (measured: 13 vs 13 with the variable unset). Set it to ACTIVE to measure without it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import timm
import torch
import torch.nn.functional as F

import cfer.models  # noqa: F401 - registers cfer's models
from cfer.pretrain import MaskedAutoencoder, PretrainConfig


def measure(*, arch: str, size: int, batch: int, repeats: int, mask_ratio: float, decoder_dim: int = 128,
            decoder_depth: int = 1, seed: int = 0) -> dict:
    """Median seconds per step of each kind, ``{kind: {"fb": s, "step": s}}``."""
    torch.manual_seed(seed)
    sup = timm.create_model(arch, num_classes=7, img_size=size).train()
    encoder = timm.create_model(arch, num_classes=0, img_size=size)
    mae = MaskedAutoencoder(encoder=encoder, mask_ratio=mask_ratio, decoder_dim=decoder_dim,
                            decoder_depth=decoder_depth).train()
    opts = {"mae": torch.optim.AdamW(mae.parameters(), lr=1e-4),
            "supervised": torch.optim.AdamW(sup.parameters(), lr=1e-4)}
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 7, (batch,))
    losses = {"mae": lambda: mae(x).loss, "supervised": lambda: F.cross_entropy(sup(x), y)}
    times: dict[str, dict[str, list[float]]] = {k: {"fb": [], "step": []} for k in losses}
    for i in range(repeats + 2):
        for kind, loss_fn in losses.items():
            opts[kind].zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss_fn().backward()
            t1 = time.perf_counter()
            opts[kind].step()
            t2 = time.perf_counter()
            if i >= 2:
                times[kind]["fb"].append(t1 - t0)
                times[kind]["step"].append(t2 - t0)
    return {k: {m: statistics.median(v) for m, v in t.items()} for k, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vit_face_tiny")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--mask-ratio", type=float, default=0.75)
    ap.add_argument("--decoder-dim", type=int, default=PretrainConfig.decoder_dim)
    ap.add_argument("--decoder-depth", type=int, default=PretrainConfig.decoder_depth)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = measure(arch=args.arch, size=args.size, batch=args.batch, repeats=args.repeats, mask_ratio=args.mask_ratio,
                decoder_dim=args.decoder_dim, decoder_depth=args.decoder_depth)
    print(f"{args.arch} at {args.size}x{args.size}x3, batch {args.batch}, {args.threads} threads, median of "
          f"{args.repeats} steps each, taking turns, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} "
          f"(torch {torch.__version__}, timm {timm.__version__}; load average before: "
          f"{os.getloadavg()[0]:.1f})\n")
    print("| step | ms / batch (fwd+bwd) | images / s (fwd+bwd) | ms / batch (+AdamW) | images / s (+AdamW) |")
    print("|---|---:|---:|---:|---:|")
    names = {"mae": f"MAE, {args.mask_ratio:.0%} masked (decoder {args.decoder_depth} x {args.decoder_dim})",
             "supervised": "supervised, whole images"}
    for kind, t in r.items():
        print(f"| {names[kind]} | {1000 * t['fb']:.1f} | {args.batch / t['fb']:.1f} | {1000 * t['step']:.1f} | "
              f"{args.batch / t['step']:.1f} |")
    print(f"| **ratio MAE / supervised (images/s)** | | **{r['supervised']['fb'] / r['mae']['fb']:.2f}x** | | "
          f"**{r['supervised']['step'] / r['mae']['step']:.2f}x** |")


if __name__ == "__main__":
    main()
