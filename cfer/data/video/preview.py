"""A labelled animated GIF of clips: a few classes side by side, captioned by class.

:func:`write_preview_gif` shows the first clip(s) of each class of a labelled
:class:`~cfer.data.video.ClipSource` in columns, captioned by class (basic classes blue,
compound red), at the clips' frame rate; the file is written atomically
(:mod:`cfer.atomic`). :func:`cfer.data.video.export.synth_video_command` draws one beside
an export when given ``preview``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cfer import taxonomy
from cfer.atomic import write_bytes
from cfer.data.video.layout import ClipSource

__all__ = ["write_preview_gif"]


def _caption_lines(text: str, width: int, draw, font) -> list[str]:  # noqa: ANN001
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def write_preview_gif(
    path: str | os.PathLike,
    *,
    source: ClipSource,
    classes: Sequence[str] | None = None,
    per_class: int = 1,
    scale: int = 2,
    max_classes: int = 8,
) -> Path:
    """A labelled animated GIF: clips of a few classes side by side, captioned by class.

    The first ``per_class`` clips of each class (in the source's order, so the first
    subject's) form one column per class; the GIF plays at the source's frame rate.

    Args:
        path: Where to write the GIF.
        source: A labelled clip source (``classes``, ``labels``).
        classes: Classes to show (default: the source's first ``max_classes``).
        per_class: Clips (rows) per class.
        scale: Integer upscaling of each frame (nearest neighbour).
        max_classes: Columns when ``classes`` is None.

    Returns:
        ``path``.

    Raises:
        ValueError: On a class the source does not have, or a bad count.

    Example:
        >>> import tempfile, pathlib
        >>> from cfer.data.video.synthetic import SyntheticClipSource
        >>> src = SyntheticClipSource(classes="basic", n_subjects=1, per_class=1, frames=4,
        ...                           image_size=32, audio=False)
        >>> p = write_preview_gif(pathlib.Path(tempfile.mkdtemp()) / "clips.gif", source=src)
        >>> p.suffix
        '.gif'
    """
    from PIL import Image, ImageDraw, ImageFont

    for name, v in (("per_class", per_class), ("scale", scale), ("max_classes", max_classes)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    have = tuple(source.classes)
    if classes is None:
        wanted = have[:max_classes]
    else:
        wanted = tuple(taxonomy.normalize(c) for c in classes)
        missing = [c for c in wanted if c not in have]
        if missing:
            raise ValueError(f"the source has no clips of {missing}; choose from {list(have)}")
    if not wanted:
        raise ValueError("no classes to show; pass classes=[...] from the source's classes")
    labels = np.asarray(source.labels)
    picks: list[list[int]] = []
    for c in wanted:
        hits = np.flatnonzero(labels == have.index(c))[:per_class].tolist()
        if len(hits) < per_class:
            raise ValueError(f"the source has {len(hits)} clips of {c!r}; lower per_class to {len(hits)}")
        picks.append(hits)
    clips = [[source.load(i) for i in col] for col in picks]
    first = clips[0][0]
    T = min(len(c.frames) for col in clips for c in col)
    h, w = first.frames.shape[1] * scale, first.frames.shape[2] * scale
    try:
        font = ImageFont.load_default(size=11)  # a scalable font where Pillow has FreeType
    except (TypeError, ImportError, OSError):  # pragma: no cover - bitmap fallback
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    words = [word for c in wanted for word in taxonomy.display_name(c).split()]
    col_w = max(w, int(np.ceil(max(probe.textlength(word, font=font) for word in words))) + 4)
    captions = [_caption_lines(taxonomy.display_name(c), col_w - 4, probe, font) for c in wanted]
    line_h = 13
    cap_h = line_h * max(len(c) for c in captions) + 6
    pad = 4
    W = len(wanted) * (col_w + pad) + pad
    H = per_class * (h + pad) + pad + cap_h
    images = []
    for t in range(T):
        canvas = Image.new("RGB", (W, H), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        for ci, col in enumerate(clips):
            x = pad + ci * (col_w + pad)
            for ri, clip in enumerate(col):
                f = clip.frames[t]
                f = np.repeat(f, 3, axis=-1) if f.shape[-1] == 1 else f
                tile = Image.fromarray(np.ascontiguousarray(f)).resize((w, h), Image.NEAREST)
                canvas.paste(tile, (x + (col_w - w) // 2, pad + ri * (h + pad)))
            y = pad + per_class * (h + pad)
            colour = (31, 78, 156) if wanted[ci] in taxonomy.BASIC else (156, 31, 58)
            for li, line in enumerate(captions[ci]):
                lw = draw.textlength(line, font=font)
                draw.text((x + (col_w - lw) / 2, y + li * line_h), line, fill=colour, font=font)
        images.append(canvas.quantize(colors=255, method=Image.Quantize.MEDIANCUT))
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, int(round(1000 / float(first.fps)))), disposal=1)
    return write_bytes(path, buf.getvalue())
