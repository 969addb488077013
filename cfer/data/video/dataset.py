"""The clip dataset: clips decoded lazily, kept in a bounded cache, packed per item.

:class:`ClipDataset` is to clips what :class:`cfer.data.FaceDataset` is to images: a
``torch.utils.data.Dataset`` with ``classes``, ``labels``, ``targets``, ``subjects``,
``splits``, ``subset`` and ``select_split``, so the rest of cfer (Avalanche streams,
replay buffers, distillation, few-shot episodes) takes it where it takes a
``FaceDataset``. Each item is one packed clip ``(T + k, C, S, S)`` of its
:class:`~cfer.data.video.ClipLayout` and an int label.

What happens to clip ``i`` (``__getitem__``):

1. **Decode and prepare, once.** The source decodes the clip;
   :func:`~cfer.data.video.prepare.prepare_clip` crops the face (``crop_faces``: one box
   from the middle frame for all frames), converts and resizes every frame to
   ``S x S`` and gives it landmarks (the source's, or
   :func:`~cfer.data.video.tracking.track_points`). This prepared clip goes into an LRU
   cache bounded in **bytes** (``cache_bytes``, :mod:`cfer.data.video.cache`): prepared
   frames are ``S x S``, so far more clips fit than raw decoded ones. The source, the
   cache and the counts are a :class:`~cfer.data.video.store.ClipStore` that subsets share.
2. **Sample T frames.** Evaluation (``train=False``): :func:`uniform_indices`.
   Training: :func:`random_crop_indices` with a generator seeded from ``(seed,
   epoch, clip, draw)``, where ``draw`` counts this process's draws of the clip: the
   same seed gives the same crops run after run. With ``DataLoader`` workers each
   worker has its own copy of the dataset (and its own cache), so call
   :meth:`ClipDataset.set_epoch` every epoch to vary the crops there.
3. **Audio.** The log-mel (:func:`~cfer.data.video.audio.log_mel`) of the whole clip
   (evaluation) or of the audio under the sampled frames (training). A clip without
   audio is packed with ``mel=None``: its audio flag is 0. The first such clip is
   logged once; :attr:`ClipDataset.missing_audio` counts them.
4. **Pack** with :meth:`ClipLayout.pack`.

Example:
    >>> import numpy as np
    >>> from cfer.data.video.layout import ClipLayout, RawClip
    >>> class Source:
    ...     def __len__(self): return 2
    ...     def load(self, i): return RawClip(frames=np.full((6, 20, 20, 3), 40 * i, np.uint8), fps=25.0)
    >>> ds = ClipDataset(source=Source(), labels=[0, 1], classes=["happy", "sad"],
    ...                  layout=ClipLayout(frames=4, image_size=16, mel_bins=8, mel_steps=8, landmarks=4))
    >>> x, y = ds[1]
    >>> tuple(x.shape), y, ds.missing_audio
    ((5, 3, 16, 16), 1, 1)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from cfer.data.base import _check_skipped, split_and_class_lines
from cfer.data.faces import FaceCropper
from cfer.data.readers.common import _cropper
from cfer.data.video.cache import DEFAULT_CACHE_BYTES, CacheInfo
from cfer.data.video.labelled import LabelledClips
from cfer.data.video.layout import ClipLayout, ClipSource
from cfer.data.video.prepare import PreparedClip, clip_mel
from cfer.data.video.sampling import random_crop_indices, uniform_indices
from cfer.data.video.store import ClipStore

__all__ = ["ClipDataset"]


class ClipDataset(LabelledClips):
    """Labelled clips from a :class:`~cfer.data.video.ClipSource`, packed per item.

    Args:
        source: Where the clips come from (``__len__`` and ``load(i) -> RawClip``),
            e.g. :class:`cfer.data.video.files.FileClipSource`.
        labels: One int per item, an index into ``classes``.
        classes: Class names; normalised through :func:`cfer.taxonomy.normalize`.
        layout: The packed shape (frames ``T``, size ``S``, channels, audio and
            landmark sizes).
        subjects: Optional subject id per item (stored as strings).
        splits: Optional split name per item.
        paths: Optional source path per item (named in error messages).
        indices: The source clips the items are, in order; default all of
            ``range(len(source))``.
        train: Random temporal crops (True) or uniform frames (False).
        cache_bytes: Budget of the prepared-clip cache in bytes (0 turns it off).
        crop_faces: Crop the face (``True`` or a :class:`cfer.data.faces.FaceCropper`):
            the box found on the middle frame is used for every frame. A clip where no
            face is found keeps its whole frames (logged once; see :attr:`no_face`).
        seed: Seed of the training crops.
        min_frames: Clips with at least this many but fewer than ``T`` frames repeat
            frames; default ``T`` (shorter clips are an error).
        min_span: Shortest training window, as a fraction of the clip.
        skipped: What the reader left out, reason -> count (see
            :attr:`cfer.data.FaceDataset.skipped`).

    Attributes:
        targets: ``torch.LongTensor`` of labels (what Avalanche reads).

    The views ``subset``, ``select_split`` and ``relabelled``, and ``class_names`` and
    ``counts``, come from :class:`~cfer.data.video.labelled.LabelledClips`; every view
    shares this dataset's source and cache.

    Example:
        >>> ds = read_clip_manifest("clips.csv", layout=ClipLayout(frames=8))  # doctest: +SKIP
        >>> x, y = ds[0]; x.shape  # doctest: +SKIP
        torch.Size([9, 3, 64, 64])
    """

    def __init__(
        self,
        *,
        source: ClipSource,
        labels: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        layout: ClipLayout,
        subjects: Sequence[object] | np.ndarray | None = None,
        splits: Sequence[str] | np.ndarray | None = None,
        paths: Sequence[str] | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        train: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        crop_faces: bool | FaceCropper = False,
        seed: int = 0,
        min_frames: int | None = None,
        min_span: float = 0.5,
        skipped: Mapping[str, int] | None = None,
    ) -> None:
        if not isinstance(layout, ClipLayout):
            raise ValueError(f"layout must be a cfer.data.video.ClipLayout, got {type(layout).__name__}")
        if not (hasattr(source, "load") and hasattr(source, "__len__")):
            raise ValueError(f"source must have __len__ and load(index) -> RawClip (a ClipSource), "
                             f"got {type(source).__name__}")
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, (int, np.integer)) or cache_bytes < 0:
            raise ValueError(f"cache_bytes must be an int >= 0 (0 turns the cache off), got {cache_bytes!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if min_frames is not None and (isinstance(min_frames, bool) or not isinstance(min_frames, (int, np.integer))
                                       or min_frames < 1):
            raise ValueError(f"min_frames must be a positive int or None, got {min_frames!r}")
        if not (isinstance(min_span, (int, float)) and 0 < min_span <= 1):
            raise ValueError(f"min_span must be a fraction in (0, 1], got {min_span!r}")
        n_source = len(source)
        ids = np.arange(n_source, dtype=np.int64) if indices is None else np.asarray(indices, np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= n_source):
            raise ValueError(f"indices must lie in [0, {n_source - 1}] (the source has {n_source} clips), got range "
                             f"[{ids.min()}, {ids.max()}]")
        self._set_items(ids=ids, labels=labels, classes=classes, subjects=subjects, splits=splits, paths=paths)
        self.layout = layout
        self.train = bool(train)
        self.seed = int(seed)
        self.min_frames = None if min_frames is None else int(min_frames)
        self.min_span = float(min_span)
        self.epoch = 0
        self._cropper = _cropper(crop_faces)
        self._skipped = _check_skipped(skipped)
        self._store = ClipStore(source=source, cache_bytes=int(cache_bytes))

    # -- views (subset, select_split, relabelled: LabelledClips) --------------------------
    def with_train(self, train: bool) -> "ClipDataset":
        """The same items with random crops on (``True``) or off, sharing the cache.

        Example:
            >>> train_set = ds.select_split("train").with_train(True)  # doctest: +SKIP
        """
        ds = self._view(np.arange(len(self)))
        ds.train = bool(train)
        return ds

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the training crops (call it at each epoch's start
        when a ``DataLoader`` uses worker processes, like ``DistributedSampler``)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    # -- torch Dataset -------------------------------------------------------------
    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = self._check_index(index)
        clip = self._prepared(index)
        idx = self._indices(index, clip, advance=True)
        frames = torch.from_numpy(np.ascontiguousarray(clip.frames[idx])).permute(0, 3, 1, 2).float().div_(255.0)
        landmarks = torch.from_numpy(np.ascontiguousarray(clip.landmarks[idx]))
        return self.layout.pack(frames=frames, mel=self._mel(clip, idx), landmarks=landmarks), int(self.labels[index])

    def frames_at(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The ``T`` frames item ``index`` shows the model, and their region maps.

        In evaluation mode these are exactly the frames ``self[index]`` packs; in
        training mode, the crop the next ``self[index]`` will draw. For Grad-CAM
        strips and previews.

        Returns:
            uint8 ``(T, S, S, C)`` and uint8 ``(T, S, S)`` region maps (synthetic
            clips) or None.

        Example:
            >>> frames, regions = ds.frames_at(0); frames.shape  # doctest: +SKIP
            (8, 64, 64, 3)
        """
        index = self._check_index(index)
        clip = self._prepared(index)
        idx = self._indices(index, clip, advance=False)
        return clip.frames[idx].copy(), None if clip.regions is None else clip.regions[idx].copy()

    def _indices(self, index: int, clip: PreparedClip, *, advance: bool) -> np.ndarray:
        n, T = len(clip.frames), self.layout.frames
        where = self._where(index)
        if not self.train:
            return uniform_indices(n, T, min_frames=self.min_frames, where=where)
        sid = int(self._ids[index])
        draw = self._store.draw(sid, advance=advance)
        rng = np.random.default_rng([self.seed, self.epoch, sid, draw])
        return random_crop_indices(n, T, rng=rng, min_span=self.min_span, min_frames=self.min_frames, where=where)

    def _mel(self, clip: PreparedClip, idx: np.ndarray) -> torch.Tensor | None:
        return clip_mel(clip, idx, train=self.train, layout=self.layout)

    def _prepared(self, index: int) -> PreparedClip:
        return self._store.prepared(int(self._ids[index]), where=self._where(index), layout=self.layout,
                                    cropper=self._cropper)

    # -- conveniences ----------------------------------------------------------------
    @property
    def source(self) -> ClipSource:
        """Where the clips come from (shared with subsets)."""
        return self._store.source

    @property
    def image_size(self) -> tuple[int, int]:
        """``(S, S)``, the side of every packed frame."""
        return self.layout.image_size, self.layout.image_size

    @property
    def channels(self) -> int:
        """1 for grey frames, 3 for RGB."""
        return self.layout.channels

    @property
    def skipped(self) -> dict[str, int]:
        """What the reader left out, reason -> count (a copy; subsets carry it unchanged)."""
        return dict(self._skipped)

    @property
    def missing_audio(self) -> int:
        """How many of this dataset's clips decoded so far had no audio (clips are
        decoded lazily; each ``DataLoader`` worker counts its own)."""
        return len(self._store.no_audio.intersection(self._ids.tolist()))

    @property
    def no_face(self) -> int:
        """How many of this dataset's clips decoded so far had no face on their middle
        frame (``crop_faces`` only; those keep their whole frames)."""
        return len(self._store.no_face.intersection(self._ids.tolist()))

    def cache_info(self) -> CacheInfo:
        """Hits, misses, bytes and items of the prepared-clip cache (shared with subsets).

        Example:
            >>> ds[0]; ds[0]; ds.cache_info().hits  # doctest: +SKIP
            1
        """
        return self._store.cache.info()

    def tensors(self, *, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """All packed clips as one tensor ``(N, T + k, C, S, S)`` and the labels.

        This decodes every clip and holds them all in memory at once; for anything
        but small sets iterate a ``torch.utils.data.DataLoader`` instead.
        """
        items = range(len(self))
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(items, desc="clips", unit="clip")
        if len(self) == 0:
            return torch.zeros((0, *self.layout.shape)), self.targets.clone()
        return torch.stack([self[i][0] for i in items]), self.targets.clone()

    def summary(self) -> str:
        """A short multi-line description: size, layout, classes, counts and cache."""
        lay = self.layout
        n_subj = "unknown" if self.subjects is None else str(len(set(self.subjects)))
        lines = [
            f"{type(self).__name__}: {len(self)} clips, T={lay.frames} frames of {lay.image_size}x{lay.image_size}x"
            f"{lay.channels} (audio {lay.mel_bins}x{lay.mel_steps} log-mel, {lay.landmarks} points), "
            f"{len(self.classes)} classes, subjects: {n_subj}, {'training crops' if self.train else 'uniform frames'}"
        ]
        lines += split_and_class_lines(self.splits, self.counts())
        info = self.cache_info()
        lines.append(f"cache: {info.items} clips, {info.bytes / 2**20:.1f} of {info.max_bytes / 2**20:.1f} MiB "
                     f"(hits {info.hits}, misses {info.misses}); without audio so far: {self.missing_audio}")
        if self._skipped:
            lines.append("skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(self._skipped.items())))
        return "\n".join(lines)

    def __repr__(self) -> str:
        lay = self.layout
        return (f"{type(self).__name__}(n={len(self)}, frames={lay.frames}, size={lay.image_size}x{lay.image_size}x"
                f"{lay.channels}, classes={len(self.classes)}, train={self.train})")
