"""Decoding and training throughput on video files, and peak memory for 200 vs 2,000 clips.

Exports synthetic clips as MP4 files with a voice track (``cfer synth --video``'s
export), then, in a fresh process for each data-set size, reads them through
``read_clip_manifest`` (a :class:`~cfer.data.video.ClipDataset` with a bounded cache):

* decode: one pass over every clip in a ``DataLoader`` (PyAV decoding, resizing, point
  tracking or landmarks, log-mel), clips/s;
* decode + train: ``--train-batches`` batches of a clip model's forward + backward
  reading from the same dataset, clips/s;
* the process's peak resident memory after both (``ru_maxrss``) and the cache's bytes.

Memory should stay flat with the data set's size: the cache is bounded and clips are
decoded lazily.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/clip_io.py --clips 200 2000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _measure(manifest: Path, n: int, args: argparse.Namespace) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from cfer.continual.growing import build_model
    from cfer.data.video import ClipLayout, read_clip_manifest

    torch.set_num_threads(args.threads)
    layout = ClipLayout(frames=args.frames, image_size=args.size)
    ds = read_clip_manifest(manifest, layout=layout, cache_bytes=args.cache_mib * 2**20)
    ds = ds.subset(list(range(n))).with_train(True)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    seen = 0
    for x, _ in DataLoader(ds, batch_size=16, shuffle=False, num_workers=0):
        seen += len(x)
    decode = seen / (time.perf_counter() - t0)
    model = build_model(arch=args.arch, num_classes=len(ds.classes), in_chans=3, img_size=args.size,
                        options={"layout": layout})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(0))
    t0, trained = time.perf_counter(), 0
    for b, (x, y) in enumerate(loader):
        if b == args.train_batches:
            break
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        trained += len(x)
    train = trained / (time.perf_counter() - t0)
    info = ds.cache_info()
    return {"clips": n, "decode_clips_per_s": decode, "decode_train_clips_per_s": train,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_after_imports_mib": base, "cache_mib": info.bytes / 2**20, "cache_items": info.items,
            "cache_budget_mib": args.cache_mib}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, nargs="+", default=[200, 2000])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--decoded-frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--arch", default="temporal_slim")
    p.add_argument("--cache-mib", type=int, default=64)
    p.add_argument("--train-batches", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dir", type=Path, default=None, help="reuse or create the exported clips here")
    p.add_argument("--measure", nargs=2, default=None, help=argparse.SUPPRESS)  # internal: MANIFEST N
    args = p.parse_args()
    if args.measure:
        print(json.dumps(_measure(Path(args.measure[0]), int(args.measure[1]), args)))
        return
    from cfer.data.video import synth_video_command

    root = args.dir or Path(tempfile.mkdtemp(prefix="cfer_clips_"))
    manifest = root / "clips" / "manifest.csv"
    most = max(args.clips)
    if not manifest.exists():
        per_subject = 22  # one clip of each class per person
        subjects = -(-most // per_subject)
        t0 = time.perf_counter()
        s = synth_video_command(out=root / "clips", subjects=subjects, per_class=1, frames=args.decoded_frames,
                                fps=8, image_size=args.size, grey=False, seed=0, classes="all", preview=None,
                                progress=False)
        print(f"exported {s['clips']} clips ({s['video_codec']} + {s['audio_codec']}) in "
              f"{time.perf_counter() - t0:.0f} s to {manifest.parent}")
    rows = []
    for n in args.clips:
        cmd = [sys.executable, __file__, "--measure", str(manifest), str(n), "--frames", str(args.frames),
               "--size", str(args.size), "--arch", args.arch, "--cache-mib", str(args.cache_mib),
               "--train-batches", str(args.train_batches), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"| clips | decode clips/s | decode + train ({args.arch}) clips/s | peak RSS MiB | after imports MiB "
          f"| cache MiB (budget {args.cache_mib}) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clips']} | {r['decode_clips_per_s']:.1f} | {r['decode_train_clips_per_s']:.1f} | "
              f"{r['peak_rss_mib']:.0f} | {r['rss_after_imports_mib']:.0f} | {r['cache_mib']:.1f} |")


if __name__ == "__main__":
    main()
