"""What precise BatchNorm costs the teacher: seconds per epoch with and without it, in one run.

``train_teacher`` on the synthetic faces (all 22 classes, 16 training subjects, 4 faces per
class and subject, 48 px), a fixed number of epochs (no early stop), the two settings
alternating ``--repeats`` times; prints the median seconds per epoch of each and their ratio.

    python benchmarks/precise_bn_cost.py --arch resemotenet_slim manet_pool_slim
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from cfer import taxonomy
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.data.synthetic import make_synthetic_splits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", nargs="+", default=["resemotenet_slim", "manet_pool_slim"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    classes = [taxonomy.NEUTRAL, *taxonomy.BASIC, *taxonomy.COMPOUND]
    sp = make_synthetic_splits(classes=classes, subjects=(16, 4, 8), per_class=4, image_size=48, seed=0)
    print(f"# {len(sp['train'])} training faces, {a.epochs} epochs a run, {a.repeats} runs of each, "
          f"{a.threads} thread(s)")
    print("| model | s / epoch | s / epoch, precise BN | ratio |\n|---|---|---|---|")
    for arch in a.arch:
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(a.repeats):
            for precise in (False, True):
                config = TeacherConfig(arch=arch, max_epochs=a.epochs, patience=a.epochs, precise_bn=precise)
                t0 = time.perf_counter()
                train_teacher(train=sp["train"], val=sp["val"], config=config)
                times[precise].append((time.perf_counter() - t0) / a.epochs)
        off, on = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {arch} | {off:.2f} | {on:.2f} | {on / off:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
