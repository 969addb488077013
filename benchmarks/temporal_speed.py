"""Parameter counts and training-step time per clip of cfer's temporal models.

Times one forward + backward (the model's training loss, `criterion_for`: cross-entropy plus
the stream-subset terms of the registered recipe; 7 classes) of a batch of packed RGB clips
(``--frames`` frames of ``--size`` pixels, all three streams present: frames, landmark
tracks, audio spectrogram) for each model, and, for scale, the same step of its frame
encoder alone (with a linear head) on the clips' ``B * T`` frames. Times are the median of
``--repeats`` steps after two warm-up steps; the models take turns step by step, so a
change in the machine's load touches every model alike.

Usage:
    python benchmarks/temporal_speed.py [--models temporal_tiny temporal_slim] [--batch 8]
        [--size 64] [--frames 8] [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm
import torch
import torch.nn.functional as F
from torch import nn

import cfer.models  # noqa: F401 - registers cfer's models
from cfer.cliplayout import ClipLayout
from cfer.models.ensemble_loss import criterion_for


def random_clips(layout: ClipLayout, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Packed clips with every stream present."""
    T, C, S = layout.frames, layout.channels, layout.image_size
    return torch.stack([layout.pack(frames=torch.rand(T, C, S, S, generator=gen),
                                    mel=torch.randn(layout.mel_bins, layout.mel_steps, generator=gen),
                                    landmarks=torch.rand(T, layout.landmarks, 2, generator=gen) * 2 - 1)
                        for _ in range(batch)])


def step_seconds(names: list[str], *, batch: int, size: int, frames: int, repeats: int,
                 seed: int = 0) -> dict[str, tuple[int, float, float]]:
    """Per model: parameters, median seconds of one training step of the clip model, and of
    its frame encoder alone on the same ``batch * frames`` frames."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    nets = {n: timm.create_model(n, num_classes=7, img_size=size, frames=frames).train() for n in names}
    alone = {n: nn.Sequential(net.frame_encoder, nn.Linear(net.frame_encoder.num_features, 7)).train()
             for n, net in nets.items()}
    x = random_clips(next(iter(nets.values())).clip_layout, batch, gen)
    y = torch.randint(0, 7, (batch,), generator=gen)
    images, y_img = x[:, :frames].flatten(0, 1), y.repeat_interleave(frames)
    times = {n: ([], []) for n in names}
    losses = {n: (criterion_for(nets[n]), F.cross_entropy) for n in names}  # the model's training loss
    for i in range(repeats + 2):
        for n in names:
            for k, (model, inp, tgt) in enumerate(((nets[n], x, y), (alone[n], images, y_img))):
                model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                losses[n][k](model(inp), tgt).backward()
                if i >= 2:
                    times[n][k].append(time.perf_counter() - t0)
    return {n: (sum(p.numel() for p in nets[n].parameters()), statistics.median(times[n][0]),
                statistics.median(times[n][1])) for n in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["temporal_tiny", "temporal_slim"])
    ap.add_argument("--batch", type=int, default=8, help="clips per step")
    ap.add_argument("--size", type=int, default=64, help="frame side in pixels")
    ap.add_argument("--frames", type=int, default=8, help="frames per clip")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = step_seconds(args.models, batch=args.batch, size=args.size, frames=args.frames, repeats=args.repeats)
    print(f"forward + backward of {args.batch} RGB clips ({args.frames} frames of {args.size}x{args.size}, landmarks, "
          f"audio), {args.threads} thread(s), median of {args.repeats} steps (torch {torch.__version__}, "
          f"timm {timm.__version__})\n")
    print("| model | parameters | ms / clip | clips / s | frame encoder alone, ms / clip |")
    print("|---|---:|---:|---:|---:|")
    for name, (params, sec, enc) in rows.items():
        print(f"| {name} | {params:,} | {1000 * sec / args.batch:.1f} | {args.batch / sec:,.1f} | "
              f"{1000 * enc / args.batch:.1f} |")


if __name__ == "__main__":
    main()
