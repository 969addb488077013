"""A frozen model's outputs, computed once per distinct input and reused (the distillation teacher's).

Within a training step the distillation plugin shows the frozen teacher (and the frozen
previous student) the same faces every epoch: without augmentation their logits and
features are the same each time. :class:`OutputCache` keys each input row by its bytes,
runs the frozen model only on the rows it has not seen, and returns the stored outputs of
the others, so a step of ``E`` epochs costs one teacher forward per training item instead
of ``E``. It is exact: a frozen model in evaluation mode gives each row the same output
whatever else is in its batch (up to float rounding of batched kernels, below 1e-5).

Mirror images in training (``MirrorAugmentPlugin``) give each face two forms; the cache
keeps both, so the second epoch of a step finds about half of its rows, the third about
three quarters, the fourth seven in eight. Augmentation whose inputs never repeat (random
shifts, crops) the cache notices: an epoch after the first whose lookups hit less than a
quarter of the time switches it off for the rest of the step and frees what it held, so
memory stays at most about two epochs' outputs, and ``max_items`` caps it in any case.

Example:
    >>> import torch
    >>> teacher = torch.nn.Linear(4, 3).eval()
    >>> cache = OutputCache(teacher)
    >>> x = torch.rand(5, 4)
    >>> a, _ = cache(x)
    >>> b, _ = cache(x[[4, 0]])            # both rows seen: no forward
    >>> cache.forwards, cache.hits, torch.allclose(b, a[[4, 0]])
    (1, 2, True)
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from cfer.models.features import FeatureTap

__all__ = ["OutputCache"]

logger = logging.getLogger(__name__)


class OutputCache:
    """Logits (and tapped features) of a frozen model, by input content.

    Args:
        model: The frozen model (kept in evaluation mode; it is called under ``no_grad``).
        tap: A :class:`~cfer.models.features.FeatureTap` on ``model`` whose features are
            cached with the logits (``None``: logits only).
        max_items: The most outputs kept; past it new rows are computed and not stored.
        min_hit_rate: An epoch after the first with fewer hits than this switches the cache
            off until :meth:`clear` (inputs that never repeat: augmentation). The default,
            0.25, keeps it on for mirror images (about 0.5 in the second epoch).

    Attributes:
        hits, misses: Rows served from the cache and rows computed.
        forwards: Calls of ``model``.
        active: False once switched off.
    """

    def __init__(self, model: nn.Module, *, tap: FeatureTap | None = None, max_items: int = 200_000,
                 min_hit_rate: float = 0.25) -> None:
        if max_items < 0:
            raise ValueError(f"max_items must be >= 0, got {max_items}")
        if not 0 <= min_hit_rate <= 1:
            raise ValueError(f"min_hit_rate must lie in [0, 1], got {min_hit_rate}")
        self.model, self.tap, self.max_items, self.min_hit_rate = model, tap, int(max_items), float(min_hit_rate)
        self.hits = self.misses = self.forwards = 0
        self.active = True
        self._store: dict[bytes, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._epochs = 0
        self._epoch_hits = self._epoch_lookups = 0

    def __len__(self) -> int:
        return len(self._store)

    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.forwards += 1
        if self.tap is not None:
            self.tap.clear()
        logits = self.model(x)
        feats = None
        if self.tap is not None:
            feats = self.tap.features
            if feats is None or feats.shape[0] != x.shape[0]:
                raise RuntimeError(f"the model's feature layer {self.tap.layer!r} did not run in its forward pass")
        return logits, feats

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, features)`` of the rows of ``x``; ``features`` is ``None`` without a tap."""
        if not self.active:
            return self._forward(x)
        rows = x.detach().reshape(len(x), -1).cpu().contiguous().numpy()
        keys = [r.tobytes() for r in rows]
        miss = [i for i, k in enumerate(keys) if k not in self._store]
        n_hit = len(keys) - len(miss)
        self.hits, self.misses = self.hits + n_hit, self.misses + len(miss)
        self._epoch_hits, self._epoch_lookups = self._epoch_hits + n_hit, self._epoch_lookups + len(keys)
        if miss:
            new_logits, new_feats = self._forward(x[miss] if n_hit else x)
            for j, i in enumerate(miss):
                if len(self._store) >= self.max_items:
                    break
                self._store[keys[i]] = (new_logits[j], None if new_feats is None else new_feats[j])
            if not n_hit:
                return new_logits, new_feats
        got = {i: self._store[k] for i, k in enumerate(keys) if k in self._store}
        for j, i in enumerate(miss):  # rows past max_items were computed but not stored
            got.setdefault(i, (new_logits[j], None if new_feats is None else new_feats[j]))
        logits = torch.stack([got[i][0] for i in range(len(keys))])
        feats = None if self.tap is None else torch.stack([got[i][1] for i in range(len(keys))])
        return logits, feats

    def end_epoch(self) -> None:
        """Close an epoch: after the first, too few hits switch the cache off (and free it)."""
        self._epochs += 1
        if self.active and self._epochs > 1 and self._epoch_lookups:
            rate = self._epoch_hits / self._epoch_lookups
            if rate < self.min_hit_rate:
                logger.info("output cache off for this step: %.0f%% of an epoch's inputs were seen before (the "
                            "inputs change between epochs, e.g. augmentation)", 100 * rate)
                self.active = False
                self._store.clear()
        self._epoch_hits = self._epoch_lookups = 0

    def clear(self) -> None:
        """Forget every output and switch the cache back on (a new step, or a new model)."""
        self._store.clear()
        self.active, self._epochs, self._epoch_hits, self._epoch_lookups = True, 0, 0, 0
