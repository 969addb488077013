"""What a clip dataset shares with its subsets: the source, the cache and what was found.

A :class:`~cfer.data.video.dataset.ClipDataset` and every view of it (``subset``,
``select_split``, ``with_train``, ``relabelled``) hold one :class:`ClipStore`: the
:class:`~cfer.data.video.ClipSource`, the byte-bounded cache of prepared clips
(:class:`~cfer.data.video.cache.ByteLRU`), the clips found without audio or without a
face (the first of each is logged, once), and how often each clip's training crop was
drawn. :meth:`ClipStore.prepared` is a clip from the cache, or decoded and prepared
(:func:`~cfer.data.video.prepare.prepare_clip`) and cached.

Example:
    >>> import numpy as np
    >>> from cfer.data.video.layout import ClipLayout, RawClip
    >>> class Source:
    ...     def __len__(self): return 1
    ...     def load(self, i): return RawClip(frames=np.zeros((6, 20, 20, 3), np.uint8), fps=25.0)
    >>> store = ClipStore(source=Source(), cache_bytes=2**20)
    >>> layout = ClipLayout(frames=4, image_size=16, mel_bins=8, mel_steps=8, landmarks=4)
    >>> store.prepared(0, where="#0", layout=layout, cropper=None).frames.shape, sorted(store.no_audio)
    ((6, 16, 16, 3), [0])
"""

from __future__ import annotations

import logging
from collections import Counter

from cfer.data.faces import FaceCropper
from cfer.data.video.cache import ByteLRU
from cfer.data.video.decode import ClipError
from cfer.data.video.layout import ClipLayout, ClipSource, RawClip
from cfer.data.video.prepare import PreparedClip, prepare_clip

__all__ = ["ClipStore"]

logger = logging.getLogger(__name__)


class ClipStore:
    """The source, the prepared-clip cache and the per-clip notes a dataset's views share.

    Args:
        source: Where the clips come from (``__len__`` and ``load(i) -> RawClip``).
        cache_bytes: Budget of the prepared-clip cache in bytes (0 turns it off).

    Attributes:
        source: The source.
        cache: The :class:`~cfer.data.video.cache.ByteLRU` of prepared clips.
        no_audio: Source indices of the clips prepared so far that had no audio.
        no_face: Source indices of the clips prepared so far with no face found.
        draws: Source index -> training crops drawn so far.
    """

    def __init__(self, *, source: ClipSource, cache_bytes: int) -> None:
        self.source = source
        self.cache = ByteLRU(cache_bytes)
        self.no_audio: set[int] = set()
        self.no_face: set[int] = set()
        self.draws: Counter[int] = Counter()
        self.logged_audio = False
        self.logged_face = False

    def prepared(self, sid: int, *, where: str, layout: ClipLayout, cropper: FaceCropper | None) -> PreparedClip:
        """Source clip ``sid`` prepared for ``layout``: cached, or decoded, prepared and cached.

        Raises:
            ClipError: If the source's ``load`` returns no ``RawClip``, or as
                :func:`~cfer.data.video.prepare.prepare_clip`.
        """
        clip = self.cache.get(sid)
        if clip is None:
            raw = self.source.load(sid)
            if not isinstance(raw, RawClip):
                raise ClipError(f"clip {where}: the source's load() returned {type(raw).__name__}, "
                                "not a RawClip; fix the ClipSource")
            clip = prepare_clip(raw, layout=layout, cropper=cropper, where=where,
                                missing=lambda what: self._missing(what, sid=sid, where=where))
            self.cache.put(sid, clip)
        return clip

    def draw(self, sid: int, *, advance: bool) -> int:
        """How many training crops of clip ``sid`` were drawn before this one; ``advance``
        counts this one."""
        draw = self.draws[sid]
        if advance:
            self.draws[sid] += 1
        return draw

    def _missing(self, what: str, *, sid: int, where: str) -> None:
        if what == "face":
            self.no_face.add(sid)
            if not self.logged_face:
                logger.warning("clip %s: no face found on the middle frame; using whole frames (counted in "
                               "ClipDataset.no_face; later clips are not logged)", where)
                self.logged_face = True
        else:
            self.no_audio.add(sid)
            if not self.logged_audio:
                logger.warning("clip %s has no audio: such clips are packed with the audio flag at 0 (counted in "
                               "ClipDataset.missing_audio; later clips are not logged)", where)
                self.logged_audio = True
