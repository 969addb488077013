"""Reading DFEW (Dynamic Facial Expression in the Wild; Jiang et al., ACM MM 2020).

:func:`read_dfew` reads one cross-validation fold, from the official release's layout or
cfer's simple one, into a lazy :class:`~cfer.data.video.dataset.ClipDataset` with
``train``/``test`` splits; rows are checked as :func:`cfer.data.video.readers.read_clip_manifest`
checks them.

Example:
    >>> from cfer.data.video import ClipLayout
    >>> dfew = read_dfew("DFEW", fold=1, layout=ClipLayout(frames=16, image_size=112))  # doctest: +SKIP
    >>> train, test = dfew.select_split("train").with_train(True), dfew.select_split("test")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from cfer.data.faces import FaceCropper
from cfer.data.readers.common import _cropper, _parse_int, _read_csv_header, _require_dir, _require_file
from cfer.data.video.cache import DEFAULT_CACHE_BYTES
from cfer.data.video.dataset import ClipDataset
from cfer.data.video.decode import DEFAULT_FPS, VIDEO_EXTENSIONS, ClipNotFoundError
from cfer.data.video.layout import ClipLayout
from cfer.data.video.readers import _check_clip, _check_layout, _ClipProblems, _dataset

__all__ = ["read_dfew", "DFEW_LABELS", "DFEW_FOLDS"]

DFEW_LABELS: tuple[str, ...] = ("happy", "sad", "neutral", "angry", "surprised", "disgusted", "fearful")
"""DFEW's labels 1..7 in order (1 happy, 2 sad, 3 neutral, 4 angry, 5 surprise, 6 disgust,
7 fear), as cfer's canonical names."""

DFEW_FOLDS: tuple[int, ...] = (1, 2, 3, 4, 5)
"""DFEW's five cross-validation folds."""


def _dfew_split_files(root: Path, fold: int) -> tuple[str, dict[str, Path]]:
    """(layout name, split -> CSV path) for DFEW's official or cfer's simple layout."""
    official = root / "EmoLabel_DataSplit"
    simple = root / "annotations"
    if official.is_dir():
        files = {s: official / f"{s}(single-labeled)" / f"set_{fold}.csv" for s in ("train", "test")}
        return "official", files
    if simple.is_dir():
        return "simple", {s: simple / f"set_{fold}" / f"{s}.csv" for s in ("train", "test")}
    raise ClipNotFoundError(
        f"DFEW root {root} has neither EmoLabel_DataSplit/ (the official release) nor annotations/ (cfer's simple "
        "layout); pass the folder that holds them"
    )


def _dfew_clip_dir(root: Path, kind: str, clips: str | None) -> Path:
    if kind == "official":
        folder = root / "Clip" / (clips or "clip_224x224")
        fix = ("pass clips= the sub-folder of Clip/ that holds the clips (clip_224x224, clip_224x224_16f, ...)")
    else:
        folder = root / (clips or "clips")
        fix = "pass clips= the sub-folder of root that holds the clips"
    return _require_dir(folder, what="DFEW clip folder", fix=fix)


def _dfew_find(folder: Path, name: str) -> Path | None:
    """The clip called ``name`` in ``folder``: a frame folder or a video, as written or
    zero-padded to 5 digits (DFEW's folders are ``00001`` while the CSVs may say ``1``)."""
    names = [name]
    number = _parse_int(name)
    if number is not None and number >= 0 and f"{number:05d}" != name:
        names.append(f"{number:05d}")
    for n in names:
        if (folder / n).is_dir():
            return folder / n
        for ext in VIDEO_EXTENSIONS:
            for candidate in (folder / f"{n}{ext}", folder / f"{n}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def read_dfew(
    root: str | os.PathLike,
    *,
    layout: ClipLayout,
    fold: int = 1,
    clips: str | None = None,
    fps: float = DEFAULT_FPS,
    max_frames: int | None = None,
    min_frames: int | None = None,
    train: bool = False,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    crop_faces: bool | FaceCropper = False,
    seed: int = 0,
    skip_invalid: bool = False,
    check_files: bool = True,
) -> ClipDataset:
    """Read one fold of DFEW (Dynamic Facial Expression in the Wild; Jiang et al., ACM MM 2020).

    Two layouts are read; the first is the official release as public DFEW loaders
    use it (confirmed against several independent loaders' paths and column names; not
    against the release itself, which needs a licence):

    * **official**: ``root/EmoLabel_DataSplit/train(single-labeled)/set_<fold>.csv``
      and ``test(single-labeled)/set_<fold>.csv``, columns ``video_name,label``; clips
      in ``root/Clip/clip_224x224/<video_name>/`` as frame images (``clips=`` picks
      another sub-folder of ``Clip/``, e.g. ``clip_224x224_16f``);
    * **simple** (cfer's own, e.g. for exported subsets): ``root/annotations/set_<fold>/
      train.csv`` and ``test.csv`` with the same columns; clips in ``root/clips/``.

    A clip is a frame folder or a video file (``<video_name>.mp4``, ...) named as in
    the CSV or zero-padded to five digits (``1`` finds ``00001``, DFEW's folder names).
    Labels are DFEW's 1..7: 1 happy, 2 sad, 3 neutral, 4 angry, 5 surprise, 6 disgust,
    7 fear (:data:`DFEW_LABELS`; the order public loaders use, e.g. columns
    ``1happy ... 7fear``). Any other label is an error (``"unknown label"``). DFEW names
    no subjects, so ``subjects`` is None; ``splits`` is ``train``/``test`` from the fold.

    Args:
        root: The DFEW folder.
        layout: The packed clip shape.
        fold: Cross-validation fold, 1..5.
        clips: Sub-folder holding the clips (see above).
        fps: Frame rate of frame folders (DFEW's clips were cut from films; the frame
            folders do not store it).
        max_frames, min_frames, train, cache_bytes, crop_faces, seed, skip_invalid,
            check_files: As in :func:`read_clip_manifest`.

    Raises:
        DatasetNotFoundError: If the folders or the fold's CSVs are missing, or a clip
            they list does not exist.
        DatasetError: For a malformed row, an unknown label, a clip listed twice or an
            unreadable clip (with ``check_files``).

    Example:
        >>> ds = read_dfew("DFEW", fold=2, layout=ClipLayout(frames=16, image_size=112))  # doctest: +SKIP
        >>> sorted(set(ds.splits))  # doctest: +SKIP
        ['test', 'train']
    """
    _check_layout(layout)
    _cropper(crop_faces)
    if isinstance(fold, bool) or fold not in DFEW_FOLDS:
        raise ValueError(f"fold must be one of DFEW's folds {list(DFEW_FOLDS)}, got {fold!r}")
    root = _require_dir(Path(root), what="DFEW root", fix="pass the folder of the DFEW data set")
    kind, files = _dfew_split_files(root, fold)
    folder = _dfew_clip_dir(root, kind, clips)
    for f in files.values():
        _require_file(f, what=f"DFEW fold {fold} split file", fix=f"check that fold {fold}'s CSV files are there")
    problems = _ClipProblems(reader=f"read_dfew({root}, fold={fold})", skip_invalid=skip_invalid)
    paths: list[Path] = []
    labels: list[str] = []
    splits: list[str] = []
    seen: dict[str, str] = {}
    total = 0
    fix_cols = "DFEW split files have the columns 'video_name' and 'label'"
    for split, csv_path in files.items():
        _, rows = _read_csv_header(csv_path, ("video_name", "label"), fix_cols)
        total += len(rows)
        for line, row in rows:
            where = f"{csv_path} line {line}"
            name, raw = row["video_name"], row["label"]
            if not name or not raw:
                problems.report(reason="empty cell", where=where,
                                problem=f"empty {'video_name' if not name else 'label'!r} value",
                                fix="fill it in or remove the row")
                continue
            code = _parse_int(raw)
            if code is None or not 1 <= code <= len(DFEW_LABELS):
                problems.report(reason="unknown label", where=where,
                                problem=f"label {raw!r} is not one of DFEW's 1..7 "
                                        f"({', '.join(f'{i} {n}' for i, n in enumerate(DFEW_LABELS, 1))})",
                                fix="use the single-labelled split files")
                continue
            key = f"{int(name):05d}" if _parse_int(name) is not None else name
            if key in seen:
                problems.report(reason="duplicate clip", where=where,
                                problem=f"clip {name!r} is already listed ({seen[key]})", fix="list each clip once")
                continue
            seen[key] = where
            clip = _dfew_find(folder, name)
            if clip is None:
                problems.report(reason="missing clip", where=where,
                                problem=f"no frame folder or video for clip {name!r} in {folder}",
                                fix="check clips= and that the clip was extracted", not_found=True)
                continue
            if not _check_clip(clip, where=where, problems=problems, check_files=check_files, base=None):
                continue
            paths.append(clip)
            labels.append(DFEW_LABELS[code - 1])
            splits.append(split)
    return _dataset(paths=paths, labels=labels, subjects=None, splits=splits, problems=problems, total=total,
                    layout=layout, fps=fps, max_frames=max_frames, train=train, cache_bytes=cache_bytes,
                    crop_faces=crop_faces, seed=seed, min_frames=min_frames)
