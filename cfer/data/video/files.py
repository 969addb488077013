"""Clips on disk by path: a video file or a folder of frame images, and a source over them.

* :func:`read_clip` reads a path whichever it is: a video file
  (:func:`~cfer.data.video.decode.read_video`, by its extension in
  :data:`~cfer.data.video.decode.VIDEO_EXTENSIONS`) or a frame folder
  (:func:`~cfer.data.video.frame_folder.read_frame_folder`).
* :class:`FileClipSource` is the :class:`~cfer.data.video.ClipSource` the readers
  (:mod:`cfer.data.video.readers`, :mod:`cfer.data.video.dfew`) give their
  :class:`~cfer.data.video.dataset.ClipDataset`: clip ``i`` is ``read_clip(paths[i])``.

Example:
    >>> source = FileClipSource(["a.mp4", "clips/00002"])
    >>> len(source)
    2
    >>> read_clip("clips/00002").fps  # doctest: +SKIP
    25.0
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cfer.data.readers.folder import IMAGE_EXTENSIONS
from cfer.data.video.decode import DEFAULT_FPS, VIDEO_EXTENSIONS, ClipError, ClipNotFoundError, _open, read_video
from cfer.data.video.frame_folder import _frame_files, read_frame_folder
from cfer.data.video.layout import RawClip

__all__ = ["FileClipSource", "read_clip"]


def read_clip(
    path: str | os.PathLike,
    *,
    fps: float = DEFAULT_FPS,
    max_frames: int | None = None,
    min_frames: int = 1,
) -> RawClip:
    """A video file (:func:`read_video`) or frame folder (:func:`read_frame_folder`).

    ``fps`` applies to frame folders only; videos state their own.

    Raises:
        ClipNotFoundError: If nothing exists at ``path``.
        ClipError: As the two readers, or if ``path`` is a file without a video
            extension (:data:`VIDEO_EXTENSIONS`).

    Example:
        >>> read_clip("clips/00001").fps  # doctest: +SKIP
        25.0
    """
    path = Path(path)
    if path.is_dir():
        return read_frame_folder(path, fps=fps, max_frames=max_frames, min_frames=min_frames)
    if not path.exists():
        raise ClipNotFoundError(f"clip {path} does not exist; fix the path")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise ClipError(f"{path}: {path.suffix or 'no'} extension is not a video extension {list(VIDEO_EXTENSIONS)}; "
                        "rename the file if it is a video, or give a folder of frames")
    return read_video(path, max_frames=max_frames, min_frames=min_frames)


def _probe(path: Path) -> None:
    """Cheap check that a clip can be read: a video's header and video stream, or a
    folder holding at least one frame image. Raises ClipError / ClipNotFoundError."""
    if path.is_dir():
        _frame_files(path, IMAGE_EXTENSIONS)
        return
    container = _open(path)
    try:
        if not container.streams.video:
            raise ClipError(f"{path}: the file has no video stream; pass a video file with pictures")
        if container.streams.video[0].frames == 0 and container.duration is not None and container.duration <= 0:
            raise ClipError(f"{path}: the video stream is empty; replace the file or drop the clip")
    finally:
        container.close()



class FileClipSource:
    """A :class:`~cfer.data.video.ClipSource` over clip paths: video files or frame folders.

    Args:
        paths: One path per clip.
        fps: Frame rate of frame folders (videos state their own).
        max_frames: Decode at most this many frames of each clip (the start of it).

    Example:
        >>> source = FileClipSource(["a.mp4", "clips/00002"])
        >>> len(source)
        2
        >>> source.load(0).frames.shape  # doctest: +SKIP
        (75, 480, 640, 3)
    """

    def __init__(self, paths: Sequence[str | os.PathLike], *, fps: float = DEFAULT_FPS,
                 max_frames: int | None = None) -> None:
        if isinstance(paths, (str, os.PathLike)):
            raise ValueError("paths must be a sequence of clip paths, not one path; wrap it in a list")
        if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer))
                                       or max_frames < 1):
            raise ValueError(f"max_frames must be a positive int or None, got {max_frames!r}")
        self.paths: tuple[Path, ...] = tuple(Path(p) for p in paths)
        self.fps = float(fps)
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> RawClip:
        """Decode clip ``index`` (:func:`read_clip`)."""
        return read_clip(self.paths[index], fps=self.fps, max_frames=self.max_frames)

    def __repr__(self) -> str:
        return f"FileClipSource({len(self)} clips, fps={self.fps:g} for frame folders)"
