"""The clip cache: a least-recently-used map bounded in bytes, and its :class:`CacheInfo`.

A :class:`~cfer.data.video.dataset.ClipDataset` keeps its prepared clips
(:class:`~cfer.data.video.prepare.PreparedClip`) in a :class:`ByteLRU`: any value with an
``nbytes`` attribute is counted against the budget, the least recently used clips are
dropped first, and a clip larger than the whole budget is not cached (logged once).
Pickling (a ``DataLoader`` worker's copy) keeps only the budget: each worker process
starts with an empty cache and its own lock.

Example:
    >>> import numpy as np
    >>> cache = ByteLRU(100)
    >>> cache.put(0, np.zeros(60, np.uint8)); cache.put(1, np.zeros(60, np.uint8))
    >>> cache.get(0) is None, cache.info().items, cache.info().bytes
    (True, 1, 60)
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["ByteLRU", "CacheInfo", "DEFAULT_CACHE_BYTES"]

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 256 * 2**20
"""Default budget (bytes, 256 MiB) of a :class:`ClipDataset`'s cache of prepared clips."""


@dataclass(frozen=True)
class CacheInfo:
    """The state of a clip cache (shared by a dataset and its subsets).

    Attributes:
        hits: Items served from the cache.
        misses: Items that had to be decoded.
        bytes: Memory the cached clips hold now.
        items: Clips cached now.
        max_bytes: The budget; ``bytes`` never exceeds it.
    """

    hits: int
    misses: int
    bytes: int
    items: int
    max_bytes: int


class ByteLRU:
    """A least-recently-used map whose values' ``nbytes`` stay within a budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[int, Any] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._warned_big = False

    def get(self, key: int) -> Any | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: int, value: Any) -> None:
        size = value.nbytes
        with self._lock:
            if size > self.max_bytes:
                if not self._warned_big and self.max_bytes > 0:
                    logger.warning("a prepared clip of %.1f MiB is larger than the whole clip cache (%.1f MiB) and is "
                                   "not cached; raise cache_bytes", size / 2**20, self.max_bytes / 2**20)
                    self._warned_big = True
                return
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(hits=self.hits, misses=self.misses, bytes=self._bytes, items=len(self._items),
                             max_bytes=self.max_bytes)

    def __getstate__(self) -> dict:  # a worker process starts with an empty cache and its own lock
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_bytes"])
