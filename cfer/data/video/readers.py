"""Reading labelled clips listed in a CSV manifest, and the checks every clip reader shares.

:func:`read_clip_manifest` (and :func:`cfer.data.video.dfew.read_dfew`) return a
:class:`~cfer.data.video.dataset.ClipDataset` over a
:class:`~cfer.data.video.files.FileClipSource`: the CSV is read and checked at once,
the clips are decoded lazily when an item is first used. A clip is a video file
(:data:`~cfer.data.video.decode.VIDEO_EXTENSIONS`) or a folder of frame images
(optionally with ``audio.wav``). With ``check_files=True`` (the default) every clip is
also probed at read time: a video's header must open and hold a video stream, a folder
must hold frame images. Bad rows raise :class:`~cfer.data.readers.DatasetError` naming
the CSV line and the fix, or with ``skip_invalid=True`` are skipped, counted in one
:class:`~cfer.data.readers.SkippedItemsWarning` and in ``dataset.skipped``.

Example:
    >>> from cfer.data.video import ClipLayout
    >>> ds = read_clip_manifest("clips.csv", layout=ClipLayout(frames=8, image_size=64))  # doctest: +SKIP
    >>> train, test = ds.select_split("train").with_train(True), ds.select_split("test")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cfer import taxonomy
from cfer.data.faces import FaceCropper
from cfer.data.readers.common import (
    _SPLITS,
    _canonical,
    _cropper,
    _Problems,
    _read_csv_header,
    _require_dir,
    _require_file,
)
from cfer.data.video.cache import DEFAULT_CACHE_BYTES
from cfer.data.video.dataset import ClipDataset
from cfer.data.video.decode import DEFAULT_FPS, VIDEO_EXTENSIONS, ClipError, ClipNotFoundError
from cfer.data.video.files import FileClipSource, _probe
from cfer.data.video.layout import ClipLayout

__all__ = ["read_clip_manifest"]

logger = logging.getLogger(__name__)

_SPELLINGS = "; ".join(f"{name}: {'/'.join(k for k, v in _SPLITS.items() if v == name)}"
                       for name in dict.fromkeys(_SPLITS.values()))


class _ClipProblems(_Problems):
    """:class:`_Problems` with clip wording in its final messages."""

    items = usable = "clips"


def _check_clip(path: Path, *, where: str, problems: _Problems, check_files: bool, base: Path | None) -> bool:
    """True when ``path`` is a usable clip; else the problem is reported."""
    rel = f" (relative paths resolve against {base}; set root= to change that)" if base is not None else ""
    if not path.exists():
        problems.report(reason="missing clip", where=where, problem=f"clip {path} does not exist",
                        fix=f"fix the path{rel}", not_found=True)
        return False
    if path.is_file() and path.suffix.lower() not in VIDEO_EXTENSIONS:
        problems.report(reason="unsupported clip", where=where,
                        problem=f"{path.name}: {path.suffix or 'no'} extension is not a video extension "
                                f"{list(VIDEO_EXTENSIONS)}",
                        fix="list video files or folders of frame images")
        return False
    if check_files:
        try:
            _probe(path)
        except ClipNotFoundError as exc:  # pragma: no cover - checked above; a race with deletion
            problems.report(reason="missing clip", where=where, problem=str(exc), fix="fix the path",
                            not_found=True, cause=exc)
            return False
        except ClipError as exc:
            problems.report(reason="unreadable clip", where=where, problem=str(exc).split("; ")[0],
                            fix="replace or delete the clip", cause=exc)
            return False
    return True


def _dataset(*, paths: list[Path], labels: list[str], subjects: list[str] | None, splits: list[str] | None,
             problems: _Problems, total: int, layout: ClipLayout, fps: float, max_frames: int | None, train: bool,
             cache_bytes: int, crop_faces: bool | FaceCropper, seed: int, min_frames: int | None) -> ClipDataset:
    problems.finish(total=total, kept=len(paths))
    present = set(labels)
    classes = [c for c in taxonomy.ALL_CLASSES if c in present]
    index = {c: i for i, c in enumerate(classes)}
    ds = ClipDataset(
        source=FileClipSource(paths, fps=fps, max_frames=max_frames),
        labels=[index[c] for c in labels],
        classes=classes,
        layout=layout,
        subjects=subjects,
        splits=splits,
        paths=[str(p) for p in paths],
        train=train,
        cache_bytes=cache_bytes,
        crop_faces=crop_faces,
        seed=seed,
        min_frames=min_frames,
        skipped=problems.skipped,
    )
    logger.info("%s: %d clips of %d classes", problems.reader, len(ds), len(classes))
    return ds


def _check_layout(layout: ClipLayout) -> None:
    if not isinstance(layout, ClipLayout):
        raise ValueError(f"layout must be a cfer.data.video.ClipLayout, got {type(layout).__name__}; "
                         "e.g. layout=ClipLayout(frames=8, image_size=64)")


def read_clip_manifest(
    path: str | os.PathLike,
    *,
    layout: ClipLayout,
    root: str | os.PathLike | None = None,
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
    """Read clips listed in a CSV manifest: ``path,label[,subject][,split]``.

    The CSV has a header line; columns as :func:`cfer.data.readers.read_csv_manifest`
    (case-insensitive names, labels in any spelling :func:`cfer.taxonomy.normalize`
    accepts, split spellings ``train``/``val``/``test`` and their synonyms). ``path`` is
    a video file (``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ``.webm``, ...) or a folder of
    frame images, relative to ``root`` (default: the CSV's folder).

    Args:
        path: The CSV file.
        layout: The packed clip shape (frames, size, channels, audio, landmarks).
        root: Folder relative clip paths resolve against.
        fps: Frame rate of frame folders.
        max_frames: Decode at most this many frames of each clip.
        min_frames: Clips with fewer than ``layout.frames`` but at least this many
            frames repeat frames (default: such clips are an error when used).
        train: Random temporal crops (True) or uniform frames.
        cache_bytes: Budget of the prepared-clip cache.
        crop_faces: Crop the face of every clip (``True`` or a ``FaceCropper``).
        seed: Seed of the training crops.
        skip_invalid: Skip bad rows (counted in one warning and in ``skipped``).
        check_files: Probe every clip now (open each video's header); False defers
            all decoding errors to first use.

    Returns:
        A lazy :class:`ClipDataset` with subjects/splits when the columns exist.

    Raises:
        DatasetNotFoundError: If the CSV, or a clip it lists, does not exist.
        DatasetError: For a missing column, an empty cell, an unknown label or split,
            a clip listed twice, a file that is not a video, an unreadable clip (with
            ``check_files``), or a CSV that is not UTF-8.

    Example:
        >>> # clips.csv:  path,label,subject,split
        >>> #             s01/happy.mp4,Happiness,s01,train
        >>> ds = read_clip_manifest("clips.csv", layout=ClipLayout(frames=8))  # doctest: +SKIP
    """
    _check_layout(layout)
    _cropper(crop_faces)
    path = _require_file(Path(path), what="CSV manifest", fix="pass the path of an existing CSV file")
    base = Path(root) if root is not None else path.parent
    _require_dir(base, what="clip root", fix="pass root= the folder the manifest's relative paths start from")
    fix = "the header must name the columns 'path' and 'label' (optional: 'subject', 'split')"
    columns, rows = _read_csv_header(path, ("path", "label"), fix)
    has_subject, has_split = "subject" in columns, "split" in columns
    problems = _ClipProblems(reader=f"read_clip_manifest({path})", skip_invalid=skip_invalid)
    paths: list[Path] = []
    labels: list[str] = []
    subjects: list[str] = []
    splits: list[str] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        where = f"{path} line {line}"
        empty = [c for c in ("path", "label", "subject", "split") if c in columns and not row[c]]
        if empty:
            problems.report(reason="empty cell", where=where, problem=f"empty {empty[0]!r} value",
                            fix=f"fill in the {empty[0]!r} column or remove the row")
            continue
        label, why = _canonical(row["label"])
        if label is None:
            problems.report(reason="unknown label", where=where, problem=why,
                            fix="use a class name from cfer.taxonomy.ALL_CLASSES in the 'label' column")
            continue
        split = None
        if has_split:
            split = _SPLITS.get(row["split"].lower())
            if split is None:
                problems.report(reason="unknown split", where=where,
                                problem=f"unknown split {row['split']!r}; accepted spellings (any case): {_SPELLINGS}",
                                fix="use one of them in the 'split' column")
                continue
        clip = Path(row["path"])
        clip = clip if clip.is_absolute() else base / clip
        key = os.path.normcase(os.path.normpath(os.path.abspath(clip)))
        if key in first_line:
            problems.report(reason="duplicate path", where=where,
                            problem=(f"path {row['path']!r} is already listed on line {first_line[key]} "
                                     f"(lines {first_line[key]} and {line})"),
                            fix="list each clip once")
            continue
        first_line[key] = line
        if not _check_clip(clip, where=where, problems=problems, check_files=check_files, base=base):
            continue
        paths.append(clip)
        labels.append(label)
        subjects.append(row["subject"] if has_subject else "")
        splits.append(split or "")
    return _dataset(paths=paths, labels=labels, subjects=subjects if has_subject else None,
                    splits=splits if has_split else None, problems=problems, total=len(rows), layout=layout, fps=fps,
                    max_frames=max_frames, train=train, cache_bytes=cache_bytes, crop_faces=crop_faces, seed=seed,
                    min_frames=min_frames)
