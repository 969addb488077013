"""How well does the Haar face cropper find synthetic faces drawn into photo-like frames?

Renders framed faces of all 21 expression classes (6 basic + 15 compound) with
:func:`cfer.data.synthetic.framed.render_framed_faces`, several seeds and disjoint subjects, runs a
:class:`cfer.data.faces.FaceCropper` on each whole frame (it never sees the true box)
and prints a markdown table per kind of class: faces, detection rate (any face found),
mean IoU of the crop box with the true face box over detected faces, share of all faces
whose crop box has IoU >= 0.5, and seconds per 100 frames to find the crop box (one detection each) on one thread.

Usage:
    python benchmarks/framed_detection.py [--seeds 0 1 ... 7] [--subjects 5] [--face-size 96]
        [--frame 240 320] [--shading 1.0] [--cropper photo|default]

``--cropper photo`` is :data:`cfer.data.synthetic.framed.PHOTO_CROPPER` (the documented settings);
``default`` is ``FaceCropper()``, i.e. what ``crop_faces=True`` uses.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np

from cfer import taxonomy
from cfer.data.faces import FaceCropper, NoFaceFoundError
from cfer.data.synthetic.framed import PHOTO_CROPPER, box_iou, render_framed_faces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--subjects", type=int, default=5, help="subjects per seed (disjoint across seeds)")
    ap.add_argument("--face-size", type=int, default=96)
    ap.add_argument("--frame", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    ap.add_argument("--shading", type=float, default=1.0)
    ap.add_argument("--cropper", choices=["photo", "default"], default="photo")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    cropper = PHOTO_CROPPER if args.cropper == "photo" else FaceCropper()
    kinds = {c: "basic" for c in taxonomy.BASIC} | {c: "compound" for c in taxonomy.COMPOUND}

    rows: dict[str, list[tuple[bool, float]]] = {"basic": [], "compound": []}
    per_subject: dict[str, list[bool]] = {}
    seconds, frames = 0.0, 0
    for seed in args.seeds:
        photos = render_framed_faces(
            classes=taxonomy.BASIC + taxonomy.COMPOUND, n_subjects=args.subjects, per_class=1,
            face_size=args.face_size, frame_size=tuple(args.frame), shading=args.shading, seed=seed,
            first_subject=seed * args.subjects,
        )
        for image, box, label, subject in zip(photos.images, photos.boxes, photos.labels, photos.subjects):
            t0 = time.perf_counter()
            try:
                crop, found = cropper.box(image), True
            except NoFaceFoundError:
                crop, found = None, False
            seconds += time.perf_counter() - t0
            frames += 1
            rows[kinds[photos.classes[label]]].append((found, box_iou(crop, box) if found else 0.0))
            per_subject.setdefault(subject, []).append(found)

    print(f"cropper: {cropper}")
    print(f"faces {args.face_size} px (+-15%) in {args.frame[0]}x{args.frame[1]} frames, shading {args.shading}, "
          f"seeds {args.seeds}, {args.subjects} subjects per seed\n")
    print("| kind | faces | detected | mean IoU (detected) | IoU >= 0.5 | s / 100 frames |")
    print("|---|---|---|---|---|---|")
    speed = f"{100 * seconds / frames:.2f}"
    for kind, res in (*rows.items(), ("all", rows["basic"] + rows["compound"])):
        found = np.array([f for f, _ in res])
        iou = np.array([i for _, i in res])
        mean_iou = iou[found].mean() if found.any() else float("nan")
        print(f"| {kind} | {len(res)} | {found.mean():.1%} | {mean_iou:.3f} | {(iou >= 0.5).mean():.1%} | {speed} |")
    worst = min(per_subject, key=lambda s: np.mean(per_subject[s]))
    print(f"\nlowest detection rate of one subject: {np.mean(per_subject[worst]):.0%} ({worst}, "
          f"{len(per_subject)} subjects)")


if __name__ == "__main__":
    main()
