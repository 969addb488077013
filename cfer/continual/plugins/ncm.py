"""Nearest-class-mean prediction over the replay memory (an Avalanche plugin).

A linear head trained on a stream learns the stream's class prior: the newest classes
fill half of every replay mini-batch and win most predictions. A nearest-class-mean
classifier (Mensink et al. 2013; the evaluation rule of iCaRL, Rebuffi et al. 2017) has no
such prior: after each experience the plugin computes, per class, the mean of the
student's L2-normalised pre-logit features over that class's items in the replay memory
(and, with ``source="memory+new"``, over every training item of the classes the
experience brought), and from then on the model predicts

    logit_c(x) = scale * cos(f(x), mu_c)

for classes with a mean (the others get a score far below any cosine). With
``head_weight=w > 0`` the two classifiers vote: the model predicts
``log_softmax(scale * cos) + w * log_softmax(head logits)``, the class means' posterior
times the (logit-adjusted) head's to the power ``w``. With
``mirror=True`` each item also counts with its horizontally flipped copy (as iCaRL's own
implementation computes its means): a face and its mirror image show the same
expression, and the mean moves less with where a memory item happens to look. The model is left
untouched: a forward hook on it replaces its output, only in eval mode and only between
experiences, so training, the replay policy's scoring at the end of the next experience
and the loss never see it; ``plugin.active`` says whether it is on. Any model works whose
pre-logit features :func:`cfer.models.features.find_feature_layer` finds.

Example:
    >>> from cfer.continual.plugins.ncm import NearestMeanPlugin
    >>> plugin = NearestMeanPlugin(source="memory")
    >>> plugin.active
    False
"""

from __future__ import annotations

import logging
import weakref
from typing import Literal

import torch
from avalanche.core import SupervisedPlugin
from torch import nn
from torch.utils.data import DataLoader

from cfer.models.features import FeatureTap, find_feature_layer

__all__ = ["NearestMeanPlugin", "class_means", "normalised_features", "attach_class_means", "attached_class_means"]

logger = logging.getLogger(__name__)

_ABSENT = -1e4
"""The score of a class without a mean (below any ``scale * cosine``)."""

_ATTACHED: "weakref.WeakKeyDictionary[nn.Module, NearestMeanPlugin]" = weakref.WeakKeyDictionary()
"""Which plugin predicts for which model (what :func:`attached_class_means` reads)."""


@torch.no_grad()
def normalised_features(model: nn.Module, data, *, layer: tuple[str, str], device: torch.device | str = "cpu",  # noqa: ANN001
                        batch_size: int = 256, mirror: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The L2-normalised pre-logit features of every item of ``data`` (eval mode) and its labels;
    with ``mirror=True``, then those of every item flipped left to right (twice the rows)."""
    was = model.training
    model.eval()
    feats, labels, flipped = [], [], []
    try:
        with FeatureTap(model, layer=layer[0], side=layer[1]) as tap:
            for x, y, *_ in DataLoader(data, batch_size=batch_size, shuffle=False):  # the data read once
                for out, batch in ((feats, x), (flipped, torch.flip(x, [-1]))) if mirror else ((feats, x),):
                    model(batch.to(device))
                    out.append(nn.functional.normalize(tap.features.float(), dim=1).cpu())
                labels.append(torch.as_tensor(y))
    finally:
        model.train(was)
    return torch.cat(feats + flipped), torch.cat(labels * 2 if mirror else labels)


def class_means(model: nn.Module, data, *, layer: tuple[str, str], device: torch.device | str = "cpu",  # noqa: ANN001
                batch_size: int = 256, mirror: bool = False) -> dict[int, tuple[torch.Tensor, int]]:
    """Per class of ``data``, the sum of the L2-normalised features and the item count.

    Args:
        model: The classifier.
        data: A dataset of ``(x, y, ...)`` items.
        layer: ``(module name, side)`` of the pre-logit features.
        device: Where the model runs.
        batch_size: Items per forward pass.
        mirror: Also count every item flipped left to right (the count doubles).

    Returns:
        ``{class: (feature sum, count)}`` (sums, so sources can be pooled).
    """
    f, y = normalised_features(model, data, layer=layer, device=device, batch_size=batch_size, mirror=mirror)
    return {int(c): (f[y == c].sum(0), int((y == c).sum())) for c in torch.unique(y).tolist()}


class NearestMeanPlugin(SupervisedPlugin, supports_distributed=True):
    """Predict by the nearest class mean of the memory's features (see the module docstring).

    Args:
        source: ``"memory"`` (the replay memory's items, as iCaRL) or ``"memory+new"``
            (also every training item of the experience's own classes).
        scale: Multiplies the cosine similarities (the logits' temperature; argmax and
            accuracy do not depend on it).
        feature_layer: The module whose input (or output) holds the pre-logit features
            (default: found).
        feature_from: ``"input"`` or ``"output"`` of ``feature_layer``.
        mirror: Count every item and its left-right mirror image in the means.
        head_weight: Weight of the model's own head's log-probabilities added to the
            class means' (0: the class means alone).

    Raises:
        ValueError: For an unknown ``source``, a ``scale`` that is not positive or a
            negative ``head_weight``.
    """

    def __init__(self, *, source: Literal["memory", "memory+new"] = "memory", scale: float = 16.0,
                 feature_layer: str | None = None, feature_from: Literal["input", "output"] = "input",
                 mirror: bool = False, head_weight: float = 0.0) -> None:
        super().__init__()
        if source not in ("memory", "memory+new"):
            raise ValueError(f"source must be 'memory' or 'memory+new', got {source!r}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if not head_weight >= 0:
            raise ValueError(f"head_weight must be >= 0 (0: the class means alone), got {head_weight}")
        self.source, self.scale, self.mirror = source, float(scale), bool(mirror)
        self.head_weight = float(head_weight)
        self.feature_layer, self.feature_from = feature_layer, feature_from
        self.means: torch.Tensor | None = None  # (classes, features); NaN rows: no mean
        self._model: nn.Module | None = None
        self._handles: list = []
        self._tap: FeatureTap | None = None

    @property
    def active(self) -> bool:
        """Whether the model now predicts by nearest class mean (between experiences)."""
        return bool(self._handles)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The class means (what a resumed run needs to predict as before)."""
        return {} if self.means is None else {"means": self.means.clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; the means apply once :meth:`attach` is called."""
        self.means = state.get("means")

    # -- the hook -----------------------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        """Make ``model`` predict by nearest class mean in eval mode (idempotent)."""
        self.detach()
        if self.means is None:
            return
        layer, side = find_feature_layer(model, feature_layer=self.feature_layer, feature_from=self.feature_from)
        self._model = model
        self._tap = FeatureTap(model, layer=layer, side=side)
        self._handles = [model.register_forward_hook(self._predict)]
        _ATTACHED[model] = self

    def detach(self) -> None:
        """Give the model back its own head's predictions."""
        for h in self._handles:
            h.remove()
        if self._tap is not None:
            self._tap.remove()
        if self._model is not None and _ATTACHED.get(self._model) is self:
            del _ATTACHED[self._model]
        self._handles, self._tap, self._model = [], None, None

    def _predict(self, module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if module.training or self._tap is None or self._tap.features is None or not torch.is_tensor(output):
            return None
        f = nn.functional.normalize(self._tap.features.float(), dim=1)
        means = self.means.to(f.device)
        known = ~torch.isnan(means[:, 0])
        sim = f @ torch.nan_to_num(means).T * self.scale
        sim = torch.where(known[None], sim, torch.full_like(sim, _ABSENT))
        width = output.shape[1]
        if sim.shape[1] < width:
            sim = nn.functional.pad(sim, (0, width - sim.shape[1]), value=_ABSENT)
        sim = sim[:, :width]
        if self.head_weight > 0:
            sim = torch.log_softmax(sim, 1) + self.head_weight * torch.log_softmax(output.float(), 1)
        return sim.to(output.dtype)

    # -- callbacks ----------------------------------------------------------------------------
    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self.detach()

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        model = strategy.model
        layer = find_feature_layer(model, feature_layer=self.feature_layer, feature_from=self.feature_from)
        memory = _memory_of(strategy)
        sums = (class_means(model, memory, layer=layer, device=strategy.device, mirror=self.mirror)
                if memory is not None else {})
        if self.source == "memory+new":
            data = strategy.experience.dataset
            data = data.eval() if hasattr(data, "eval") else data
            new = class_means(model, data, layer=layer, device=strategy.device, mirror=self.mirror)
            for c, (s, n) in new.items():  # the experience's own classes: all their items
                sums[c] = (s, n)
        if not sums:
            logger.warning("nearest-class-mean: no memory items and no new items; the model keeps its head")
            self.means = None
            return
        width = max(max(sums) + 1, _width(model))
        dim = next(iter(sums.values()))[0].shape[0]
        means = torch.full((width, dim), float("nan"))
        for c, (s, n) in sums.items():
            if n:
                means[c] = nn.functional.normalize(s / n, dim=0)
        self.means = means
        self.attach(model)
        logger.debug("nearest-class-mean: %d class means", int((~torch.isnan(means[:, 0])).sum()))


def attached_class_means(model: nn.Module) -> dict:
    """``{"class_means": (classes, features), "class_means_scale": s}`` when ``model``
    predicts by nearest class mean, else ``{}``: what a saved model file keeps
    (``save_model(..., extra=...)``) so :func:`cfer.continual.growing.load_model` predicts
    the same way."""
    plugin = _ATTACHED.get(model)
    if plugin is None or plugin.means is None:
        return {}
    return {"class_means": plugin.means.clone(), "class_means_scale": plugin.scale}


def attach_class_means(model: nn.Module, means: torch.Tensor, *, scale: float = 16.0) -> NearestMeanPlugin:
    """Make ``model`` predict by nearest class mean with the given (normalised) ``means``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)).eval()
        >>> plugin = attach_class_means(net, torch.eye(2, 3))
        >>> plugin.active, net(torch.rand(1, 4)).shape
        (True, torch.Size([1, 2]))
    """
    plugin = NearestMeanPlugin(scale=scale)
    plugin.load_state_dict({"means": torch.as_tensor(means).float()})
    plugin.attach(model)
    return plugin


def _memory_of(strategy):  # noqa: ANN001, ANN202
    """The replay memory of the strategy's replay plugin (None without one)."""
    for plugin in getattr(strategy, "plugins", ()):
        policy = getattr(plugin, "storage_policy", None)
        if policy is not None:
            buffer = policy.buffer
            return buffer.eval() if hasattr(buffer, "eval") else buffer
    return None


def _width(model: nn.Module) -> int:
    head = getattr(model, "head", None)
    classifier = getattr(head, "classifier", None)
    return int(classifier.out_features) if isinstance(classifier, nn.Linear) else 0
