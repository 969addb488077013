"""Early stopping within each experience, on validation subjects (an Avalanche plugin).

A fixed number of epochs a step is a guess: a step that brings one compound class with a
few dozen faces may be learnt in two epochs and over-fitted in six. After every training
epoch the plugin scores the student on the validation items of every class seen so far
(the validation experiences ``0 .. i`` at step ``i``, other people than the training
ones) by **balanced accuracy** (the mean of the per-class recalls, so the many old classes
do not hide the new one), of the model's own output (``predictor="model"``) or, for a
strategy that predicts by nearest class mean, of the nearest mean of the student's
normalised features over the step's training items and the replay memory
(``predictor="class_means"``). It keeps the best epoch's
weights, stops the step when ``patience`` epochs in a row did not beat the best by more
than ``min_delta``, and at the end of the step (stopped or not) puts the best weights
back, before any other plugin's ``after_training_exp`` sees the model (the replay
memory, the class means and the frozen previous student all see the restored model).
The step's epoch count is then the maximum: set it as usual (``train_epochs``,
:class:`~cfer.continual.plugins.epochs.BasicEpochsPlugin`).

Avalanche's own ``EarlyStoppingPlugin`` reads a metric from periodic evaluation
(``eval_every``), which runs every plugin's evaluation callbacks mid-step and restores
the best weights only when it stops early; this one scores the model directly, draws no
number from torch's global random stream (so the run's shuffles are the same with and
without it) and always ends the step on the best epoch. ``history`` records, per step,
the scores, the epochs run and the epoch kept.

Example:
    >>> from cfer.continual.plugins.early_stopping import StepEarlyStoppingPlugin
    >>> plugin = StepEarlyStoppingPlugin(val_stream=[], patience=2)
    >>> plugin.patience, plugin.history
    (2, [])
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Literal

import torch
from avalanche.core import SupervisedPlugin
from torch.utils.data import ConcatDataset, DataLoader

from cfer.continual.plugins.ncm import _memory_of, class_means, normalised_features
from cfer.models.features import find_feature_layer

__all__ = ["StepEarlyStoppingPlugin", "balanced_accuracy", "class_mean_balanced_accuracy"]

PREDICTORS = ("model", "class_means")

logger = logging.getLogger(__name__)


@torch.no_grad()
def balanced_accuracy(model: torch.nn.Module, data, *, batch_size: int = 256,  # noqa: ANN001
                      device: torch.device | str = "cpu") -> float:
    """The mean over the classes present in ``data`` of the share of their items that
    ``model`` (in eval mode; its mode is restored) predicts right.

    ``data`` yields ``(x, y, ...)``. Reading it draws nothing from torch's global random
    generator (the loader has a generator of its own).

    Raises:
        ValueError: If ``data`` is empty.
    """
    if len(data) == 0:
        raise ValueError("no validation items to score; give the plugin the validation experiences of the stream")
    was = model.training
    model.eval()
    preds, labels = [], []
    try:
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, generator=torch.Generator())
        for x, y, *_ in loader:
            preds.append(model(x.to(device)).argmax(1).cpu())
            labels.append(torch.as_tensor(y))
    finally:
        model.train(was)
    return _balanced(torch.cat(preds), torch.cat(labels))


def class_mean_balanced_accuracy(model: torch.nn.Module, data, *, reference, batch_size: int = 256,  # noqa: ANN001
                                 device: torch.device | str = "cpu") -> float:
    """Balanced accuracy on ``data`` of the nearest class mean (cosine) of ``model``'s
    L2-normalised pre-logit features, the means taken over ``reference`` (items of the
    classes to tell apart, e.g. the step's training items and the replay memory).

    Raises:
        ValueError: If ``data`` is empty or ``reference`` has no item of a class in ``data``.
    """
    if len(data) == 0:
        raise ValueError("no validation items to score; give the plugin the validation experiences of the stream")
    layer = find_feature_layer(model)
    sums = class_means(model, reference, layer=layer, device=device, batch_size=batch_size)
    feats, labels = normalised_features(model, data, layer=layer, device=device, batch_size=batch_size)
    missing = sorted(set(labels.tolist()) - set(sums))
    if missing:
        raise ValueError(f"classes {missing} have validation items but no training or memory item to take a mean over")
    classes = torch.tensor(sorted(sums))
    means = torch.nn.functional.normalize(torch.stack([sums[int(c)][0] / sums[int(c)][1] for c in classes]), dim=1)
    return _balanced(classes[(feats @ means.T).argmax(1)], labels)


def _balanced(pred: torch.Tensor, labels: torch.Tensor) -> float:
    recalls = [float((pred[labels == c] == c).float().mean()) for c in labels.unique().tolist()]
    return sum(recalls) / len(recalls)


class StepEarlyStoppingPlugin(SupervisedPlugin):
    """Stop each experience's training when the validation score stops improving and keep
    its best epoch (see the module docstring).

    Args:
        val_stream: The validation experiences, one per training experience and in the
            same order and label ids (``CompoundStream.val_stream``, an Avalanche
            benchmark's ``valid_stream``), or plain datasets yielding ``(x, y, ...)``.
            Step ``i`` is scored on experiences ``0 .. i`` together.
        patience: Epochs without improvement before the step stops (>= 1).
        min_delta: The improvement over the best score that counts as one (>= 0).
        restore_best: Put the best epoch's weights back at the end of each step.
        predictor: What is scored: ``"model"``, the model's own output (its head), or
            ``"class_means"``, the nearest class mean of its features over the step's
            training items and the replay memory (for strategies that predict so).
        batch_size: Evaluation batch size.

    Raises:
        ValueError: On a patience below 1, a negative ``min_delta`` or an unknown predictor.
    """

    def __init__(self, *, val_stream: Sequence, patience: int = 2, min_delta: float = 0.0,
                 restore_best: bool = True, predictor: Literal["model", "class_means"] = "model",
                 batch_size: int = 256) -> None:
        super().__init__()
        if int(patience) < 1:
            raise ValueError(f"patience must be >= 1 epoch, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        if predictor not in PREDICTORS:
            raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
        self.predictor = predictor
        self.val_stream = val_stream
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.restore_best, self.batch_size = restore_best, batch_size
        self.history: list[dict] = []
        self._reset()

    def _reset(self) -> None:
        self._best: float | None = None
        self._best_epoch = 0
        self._best_state: dict | None = None
        self._scores: list[float] = []
        self._data = None
        self._done = False

    def _step_data(self, index: int):  # noqa: ANN202
        if index >= len(self.val_stream):
            raise ValueError(f"experience {index} has no validation experience (the plugin was given "
                             f"{len(self.val_stream)}); pass the stream's val_stream")
        parts = [getattr(e, "dataset", e) for e in list(self.val_stream)[: index + 1]]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._reset()
        self._data = self._step_data(strategy.experience.current_experience)

    def _score(self, strategy) -> float:  # noqa: ANN001
        with torch.random.fork_rng(devices=[]):  # reading data may draw (augmentation): the run's stream is kept
            if self.predictor == "model":
                return balanced_accuracy(strategy.model, self._data, batch_size=self.batch_size,
                                         device=strategy.device)
            data = strategy.experience.dataset
            data = data.eval() if hasattr(data, "eval") else data
            memory = _memory_of(strategy)
            reference = data if memory is None or len(memory) == 0 else ConcatDataset([data, memory])
            return class_mean_balanced_accuracy(strategy.model, self._data, reference=reference,
                                                batch_size=self.batch_size, device=strategy.device)

    def after_training_epoch(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        score = self._score(strategy)
        self._scores.append(score)
        epoch = len(self._scores)
        if self._best is None or score > self._best + self.min_delta:
            self._best, self._best_epoch = score, epoch
            if self.restore_best:
                self._best_state = copy.deepcopy(strategy.model.state_dict())
        stop = epoch - self._best_epoch >= self.patience
        if stop or epoch >= strategy.train_epochs:
            self._finish(strategy)
            if stop and epoch < strategy.train_epochs:
                strategy.stop_training()

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._finish(strategy)  # a step whose training another plugin ended

    def _finish(self, strategy) -> None:  # noqa: ANN001
        if self._done or not self._scores:
            return
        self._done = True
        restored = self.restore_best and self._best_state is not None and self._best_epoch < len(self._scores)
        if restored:
            strategy.model.load_state_dict(self._best_state)
        self._best_state = None
        step = strategy.experience.current_experience
        self.history.append({"step": step, "scores": list(self._scores), "epochs_run": len(self._scores),
                             "best_epoch": self._best_epoch, "restored": restored})
        logger.info("early stopping, step %d: %d epoch(s) run, epoch %d kept (validation balanced accuracy %.3f)",
                    step, len(self._scores), self._best_epoch, self._best)
