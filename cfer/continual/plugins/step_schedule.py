"""A cosine learning-rate decay within each experience (an Avalanche plugin).

A continual strategy trains each experience from the optimiser's learning rate again. With
a constant rate the student ends every step as noisily as it started it; decaying the rate
to a small fraction over the step's mini-batches lets it settle before its class means
are taken and before the next step. :class:`StepCosinePlugin` sets every parameter
group's rate at each iteration from :func:`cfer.schedule.lr_at` (optional linear warm-up,
then cosine decay) over the experience's ``train_epochs × len(dataloader)`` iterations, and
starts over at the next experience. Avalanche's ``LRSchedulerPlugin`` steps a torch
scheduler whose length is fixed when it is built; the length here is each experience's
own, which changes when the first experience trains more epochs
(:class:`~cfer.continual.plugins.epochs.BasicEpochsPlugin`) or the memory grows.

Measured with cfer's preset and with iCaRL on validation subjects, it loses average
accuracy at 4 epochs a step (``docs/benchmarks.md``): an option, not part of a preset.

Example:
    >>> import torch
    >>> from avalanche.training.supervised import Naive
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> plugin = StepCosinePlugin(min_fraction=0.0)
    >>> strategy = Naive(model=model, optimizer=opt, train_epochs=1, plugins=[plugin])
    >>> plugin.lr_for(strategy, iteration=0, total=10), round(plugin.lr_for(strategy, iteration=5, total=10), 3)
    (0.1, 0.05)
"""

from __future__ import annotations

from avalanche.core import SupervisedPlugin

from cfer.schedule import lr_at

__all__ = ["StepCosinePlugin"]


class StepCosinePlugin(SupervisedPlugin, supports_distributed=True):
    """Cosine decay of the learning rate over each experience's iterations.

    The peak rate of each parameter group is its rate when the plugin first sees the
    optimiser (the rate the user built it with); each experience starts from it again.
    The number of iterations is read when the experience's first epoch starts, after
    every ``before_training_exp`` hook (so :class:`~cfer.continual.plugins.epochs.BasicEpochsPlugin`
    has set that experience's epochs). Early stopping that ends a step sooner leaves the
    rate where it was; the next step starts from the peak again.

    Args:
        min_fraction: Rate at the end of each experience, as a fraction of the peak (0–1).
        warmup_epochs: Epochs of linear warm-up at the start of each experience (0: none).

    Raises:
        ValueError: If ``min_fraction`` is outside [0, 1] or ``warmup_epochs`` is negative.
    """

    def __init__(self, *, min_fraction: float = 0.01, warmup_epochs: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= min_fraction <= 1.0:
            raise ValueError(f"min_fraction is the final rate over the peak, in [0, 1]; got {min_fraction}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0 (0: no warm-up), got {warmup_epochs}")
        self.min_fraction, self.warmup_epochs = float(min_fraction), float(warmup_epochs)
        self._peaks: list[float] | None = None
        self._optimizer = None
        self._total = self._warmup = 0
        self._iteration = 0
        self._plan = False

    def lr_for(self, strategy, *, iteration: int, total: int, warmup: int = 0, peak: float | None = None) -> float:  # noqa: ANN001
        """The rate of iteration ``iteration`` of ``total`` for a group whose peak is ``peak``
        (default: the optimiser's first group's rate)."""
        peak = strategy.optimizer.param_groups[0]["lr"] if peak is None else peak
        return lr_at(iteration, total=total, warmup=warmup, lr=peak, min_lr=self.min_fraction * peak)

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if self._peaks is None or strategy.optimizer is not self._optimizer:
            self._optimizer = strategy.optimizer
            self._peaks = [g.get("initial_lr", g["lr"]) for g in strategy.optimizer.param_groups]
        self._plan = True  # the iteration count is read at the first epoch, after every plugin's hook

    def before_training_epoch(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if not self._plan:
            return
        self._plan = False
        per_epoch = max(1, len(strategy.dataloader))
        self._total = max(1, int(strategy.train_epochs) * per_epoch)
        self._warmup = int(round(self.warmup_epochs * per_epoch))
        self._iteration = 0

    def before_training_iteration(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        groups = strategy.optimizer.param_groups
        if len(groups) != len(self._peaks):  # groups added since (e.g. a new head): they take the first peak
            self._peaks += [self._peaks[0]] * (len(groups) - len(self._peaks))
        for group, peak in zip(groups, self._peaks):
            group["lr"] = self.lr_for(strategy, iteration=self._iteration, total=self._total, warmup=self._warmup,
                                      peak=peak)
        self._iteration += 1

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        for group, peak in zip(strategy.optimizer.param_groups, self._peaks):  # as the user built it
            group["lr"] = peak
