"""A different number of epochs for the first (basic) experience (an Avalanche plugin).

Example:
    >>> plugin = BasicEpochsPlugin(basic_epochs=0, later_epochs=4)
    >>> plugin.basic_epochs, plugin.later_epochs
    (0, 4)
"""

from __future__ import annotations

from avalanche.core import SupervisedPlugin

__all__ = ["BasicEpochsPlugin"]


class BasicEpochsPlugin(SupervisedPlugin, supports_distributed=True):
    """Train the first (basic) experience for ``basic_epochs`` epochs and every later
    experience for ``later_epochs``.

    With ``basic_epochs=0`` the first experience is not trained at all, but its callbacks
    still run (a replay buffer is filled from it), as when the student starts as a copy of
    a trained teacher.

    Args:
        basic_epochs: Epochs of the first experience (0: none).
        later_epochs: Epochs of every later experience.
    """

    def __init__(self, *, basic_epochs: int, later_epochs: int) -> None:
        super().__init__()
        if basic_epochs < 0 or later_epochs < 1:
            raise ValueError("basic_epochs must be >= 0 (0: the model starts trained on the basic classes, e.g. a "
                             "copy of the teacher) and later_epochs >= 1")
        self.basic_epochs, self.later_epochs = basic_epochs, later_epochs

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        first = strategy.clock.train_exp_counter == 0
        strategy.train_epochs = self.basic_epochs if first else self.later_epochs
