"""A supervised contrastive term on the student's features (an Avalanche plugin).

cfer's preset predicts by the nearest class mean of the L2-normalised pre-logit features
(:mod:`cfer.continual.plugins.ncm`), but trains those features through a linear head's
cross-entropy and distillation. The supervised contrastive loss (SupCon, Khosla et al.
2020; used with a nearest-class-mean classifier by supervised contrastive replay, Mai et
al. 2021) shapes the normalised features themselves: within each training mini-batch,
every face is pulled towards the other faces of its class and pushed from the rest,

    L = mean over anchors i with a positive of
        -1/|P(i)| * sum_{p in P(i)} log( exp(z_i . z_p / tau) / sum_{a != i} exp(z_i . z_a / tau) )

with ``z`` the normalised features and ``P(i)`` the other faces of ``i``'s class in the
batch (new data and memory items alike). :class:`SupConPlugin` adds ``weight * L`` to the
strategy's loss in ``before_backward``, reading the features of the very forward that
made the logits (a :class:`~cfer.models.features.FeatureTap`; no second pass). A face
with no other face of its class in the batch is no anchor. Under ``torchrun`` each
process uses its own share of the batch.

Example:
    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> together = supcon_loss(z, torch.tensor([0, 0, 1, 1]))
    >>> apart = supcon_loss(z, torch.tensor([0, 1, 0, 1]))
    >>> bool(together < apart)
    True
"""

from __future__ import annotations

import logging

import torch
from avalanche.core import SupervisedPlugin
from torch.nn import functional

from cfer.models.features import FeatureSide, FeatureTap, find_feature_layer

__all__ = ["SupConPlugin", "supcon_loss"]

logger = logging.getLogger(__name__)


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, *, temperature: float = 0.1) -> torch.Tensor:
    """The supervised contrastive loss of a batch (see the module for the formula).

    Args:
        features: ``(B, D)`` features (normalised here).
        labels: ``(B,)`` class indices.
        temperature: ``tau`` (> 0).

    Returns:
        A scalar; zero (still attached to ``features``) when no face has another of its class.

    Raises:
        ValueError: On a non-positive temperature or mismatched shapes.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"expected features (B, D) and labels (B,), got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    z = functional.normalize(features.float(), dim=1)
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(eye, -1e4)  # a face is not its own contrast
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    count = positive.sum(1)
    anchors = count > 0
    if not bool(anchors.any()):
        return features.sum() * 0.0
    mean_log = log_prob.masked_fill(~positive, 0.0).sum(1)[anchors] / count[anchors]
    return -mean_log.mean()


class SupConPlugin(SupervisedPlugin):
    """Adds ``weight * supcon_loss(features, labels)`` to every training mini-batch's loss.

    Args:
        weight: Weight of the term against the strategy's loss (> 0).
        temperature: ``tau`` of :func:`supcon_loss`.
        feature_layer: Module whose input (or output) are the features (default: found by
            :func:`~cfer.models.features.find_feature_layer`, the classifier's input).
        feature_from: ``"input"`` or ``"output"`` of ``feature_layer``.

    Attributes:
        last: The last mini-batch's term (``{"supcon": value, "anchors": n}``).

    Example:
        >>> SupConPlugin(weight=0.1).temperature
        0.1
    """

    def __init__(self, *, weight: float = 0.1, temperature: float = 0.1, feature_layer: str | None = None,
                 feature_from: FeatureSide = "input") -> None:
        super().__init__()
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}; leave the plugin out to turn the term off")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.weight, self.temperature = float(weight), float(temperature)
        self.feature_layer, self.feature_from = feature_layer, feature_from
        self._layer: tuple[str, str] | None = None
        self._tap: FeatureTap | None = None
        self.last: dict[str, float] = {}

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        # Resolved by name at each step: the head may have grown since the last one.
        self._layer = find_feature_layer(strategy.model, feature_layer=self.feature_layer,
                                         feature_from=self.feature_from)

    def before_forward(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        # The hook lives from here to before_backward only, so no copy of the model made by
        # another plugin (a frozen previous student, say) ever carries it.
        self._release()
        if self._layer is not None:
            self._tap = FeatureTap(strategy.model, layer=self._layer[0], side=self._layer[1])

    def before_backward(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if self._tap is None:
            return
        feats = self._tap.features
        layer = self._tap.layer
        self._release()
        if feats is None or feats.shape[0] != strategy.mb_y.shape[0]:
            raise RuntimeError(f"SupConPlugin found no features of this mini-batch's forward pass: the feature layer "
                               f"{layer!r} did not run; pass feature_layer=")
        labels = strategy.mb_y.to(feats.device)
        term = supcon_loss(feats, labels, temperature=self.temperature)
        strategy.loss = strategy.loss + self.weight * term
        counts = torch.bincount(labels)
        self.last = {"supcon": float(term.detach()), "anchors": int(counts[labels].gt(1).sum())}

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._release()
        self._layer = None

    def _release(self) -> None:
        if self._tap is not None:
            self._tap.remove()
        self._tap = None
