"""Synthetic clips in three subject-disjoint splits: the clip counterpart of
:func:`cfer.data.synthetic.make_synthetic_splits`.

Clips are rendered on demand (:class:`~cfer.data.video.synthetic.SyntheticClipSource`)
and kept in each split's bounded cache, so memory does not grow with the number of clips
beyond the cache. The training split samples a random temporal window each time an item
is read (``train=True``); validation and test see uniformly spaced frames.

Example:
    >>> from cfer.data.video import ClipLayout
    >>> sp = make_clip_splits(classes=["happy", "sad"], subjects=(2, 1, 1), per_class=1,
    ...                       layout=ClipLayout(frames=4, image_size=32), seed=0)
    >>> len(sp["train"]), sp["train"].train, sp["test"].train, tuple(sp["test"][0][0].shape)
    (4, True, False, (5, 3, 32, 32))
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cfer.cliplayout import ClipLayout
from cfer.data.video.cache import DEFAULT_CACHE_BYTES
from cfer.data.video.dataset import ClipDataset
from cfer.data.video.synthetic import SyntheticClipSource

__all__ = ["make_clip_splits", "synthetic_clips"]


def synthetic_clips(
    *,
    classes: Sequence[str] | str = "all",
    n_subjects: int = 4,
    per_class: int = 2,
    first_subject: int = 0,
    layout: ClipLayout = ClipLayout(),
    decoded_frames: int = 16,
    fps: float = 8,
    difficulty: float = 1.0,
    audio: bool = True,
    seed: int = 0,
    split: str | None = None,
    train: bool = False,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> ClipDataset:
    """A :class:`ClipDataset` of synthetic clips, every class for every subject.

    Args:
        classes: Class names or ``"basic"``/``"compound"``/``"all"``.
        n_subjects: Number of people.
        per_class: Clips per class per person.
        first_subject: Id of the first person (ranges from separate calls are other people).
        layout: What the model sees (``layout.frames`` of the ``decoded_frames``).
        decoded_frames: Frames rendered per clip (``>= layout.frames``).
        fps: Frames per second (sets the voice's duration).
        difficulty: Renderer difficulty.
        audio: Give every clip a voice track.
        seed: Seed of the people, expressions and voices.
        split: Split name stored on every item.
        train: Random temporal crops (training) instead of uniform frames.
        cache_bytes: Budget of the prepared-clip cache.
    """
    if decoded_frames < layout.frames:
        raise ValueError(f"decoded_frames={decoded_frames} is fewer than layout.frames={layout.frames}; render at "
                         "least as many frames as the model sees")
    source = SyntheticClipSource(classes=classes, n_subjects=n_subjects, per_class=per_class,
                                 first_subject=first_subject, frames=decoded_frames, fps=fps,
                                 image_size=layout.image_size, channels=layout.channels, difficulty=difficulty,
                                 seed=seed, audio=audio, landmarks=layout.landmarks, split=split)
    return ClipDataset(source=source, labels=source.labels, classes=source.classes, layout=layout,
                       subjects=source.subjects, splits=source.splits, train=train, cache_bytes=cache_bytes,
                       seed=seed)


def make_clip_splits(
    *,
    classes: Sequence[str] | str = "all",
    subjects: tuple[int, int, int] = (16, 4, 8),
    per_class: int = 1,
    layout: ClipLayout = ClipLayout(),
    decoded_frames: int = 16,
    fps: float = 8,
    difficulty: float = 1.0,
    audio: bool = True,
    seed: int = 0,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> dict[str, ClipDataset]:
    """Train, validation and test clips from disjoint people.

    Args:
        subjects: People in train, val and test.
        Others: As in :func:`synthetic_clips`.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``; only ``train`` uses random crops.
    """
    if len(subjects) != 3 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                                 for s in subjects):
        raise ValueError(f"subjects must be three positive ints (train, val, test), got {subjects!r}")
    out, first = {}, 0
    for name, count in zip(("train", "val", "test"), subjects):
        out[name] = synthetic_clips(classes=classes, n_subjects=int(count), per_class=per_class, first_subject=first,
                                    layout=layout, decoded_frames=decoded_frames, fps=fps, difficulty=difficulty,
                                    audio=audio, seed=seed, split=name, train=name == "train",
                                    cache_bytes=cache_bytes)
        first += int(count)
    return out
