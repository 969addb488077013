"""Any Avalanche strategy under ``torchrun``: DDP training, sharded and reduced evaluation.

Avalanche 0.6 shards the training data itself once a process group exists (its data loaders
put a ``DistributedSampler`` under every batch, the replay loader included); it leaves the
model, the strategy's extra parameters and the evaluation to the user.
:class:`DistributedPlugin` fills those gaps with Avalanche's own
``DistributedHelper``:

* **training:** the model is wrapped in ``DistributedDataParallel``
  (``DistributedHelper.wrap_model``) for each training epoch and unwrapped after it, so
  everything between epochs (growing the head, the optimiser, the replay selection,
  checkpoints, a frozen copy for distillation) sees the plain model; parameters the
  optimiser trains outside the model (the feature-distillation projection) get their
  gradients averaged over the processes after every backward pass;
* **evaluation:** each process evaluates every ``world_size``-th item of an experience
  (each item once: Avalanche's own evaluation loader pads the shards with repeats) and the
  correct counts are summed, so every process gets the accuracy of the whole
  experience (:attr:`DistributedPlugin.accuracies`; :func:`cfer.continual.runner.run_stream`
  reads them instead of the per-process metrics of Avalanche's evaluator).

With ``world_size() == 1`` it does nothing, so a strategy built with it runs unchanged
outside ``torchrun``. The strategy's ``train_mb_size`` is **per process**: pass the global
batch divided by the number of processes (:func:`per_process_batch`).

Example:
    >>> plugin = DistributedPlugin()
    >>> plugin.accuracies
    {}
    >>> per_process_batch(32, world=2)
    16
"""

from __future__ import annotations

import logging

import torch
from avalanche.core import SupervisedPlugin

from cfer.distributed import all_reduce_sum, quiet_stride_notice, shard, sync_buffers, world_size

__all__ = ["DistributedPlugin", "per_process_batch"]

logger = logging.getLogger(__name__)


def per_process_batch(global_batch: int, *, world: int | None = None) -> int:
    """The mini-batch each of ``world`` processes takes so that together they take
    ``global_batch`` (which must divide evenly: the learning rate is set for it).

    Raises:
        ValueError: If ``global_batch`` is not a multiple of the number of processes.
    """
    world = world_size() if world is None else world
    if global_batch % world:
        raise ValueError(f"the batch size {global_batch} does not divide over {world} processes; choose a multiple "
                         f"of {world} (each process takes batch / {world} items of every global batch)")
    return global_batch // world


class DistributedPlugin(SupervisedPlugin, supports_distributed=True):
    """DDP training and sharded, reduced evaluation for an Avalanche strategy (see the module).

    Attributes:
        accuracies: Accuracy of each experience of the last ``eval`` call, over all processes,
            by experience id.
    """

    def __init__(self) -> None:
        super().__init__()
        self.accuracies: dict[int, float] = {}
        self._counts = torch.zeros(2, dtype=torch.long)

    @staticmethod
    def _active() -> bool:
        return world_size() > 1

    # -- training ------------------------------------------------------------------------------
    def before_training_epoch(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if self._active():
            from avalanche.distributed import DistributedHelper

            quiet_stride_notice()
            strategy.model = DistributedHelper.wrap_model(strategy.model)

    def after_training_epoch(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if self._active():
            from avalanche.distributed import DistributedHelper

            strategy.model = DistributedHelper.unwrap_model(strategy.model)
            sync_buffers(strategy.model)  # rank 0's BatchNorm statistics on every replica

    def after_backward(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        """Average the gradients of the optimiser's parameters that DDP does not own."""
        if not self._active():
            return
        own = {id(p) for p in strategy.model.parameters()}
        world = world_size()
        for group in strategy.optimizer.param_groups:
            for p in group["params"]:
                if id(p) not in own and p.grad is not None:
                    torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
                    p.grad.div_(world)

    # -- evaluation ----------------------------------------------------------------------------
    def before_eval(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self.accuracies = {}

    def before_eval_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._counts = torch.zeros(2, dtype=torch.long)
        if self._active():
            # Avalanche's own evaluation loader is sharded too, but pads the shards with repeated
            # items (DistributedSampler); every item exactly once is what a reduced accuracy needs.
            from avalanche.benchmarks.utils.data_loader import SingleDatasetDataLoader

            data = strategy.adapted_dataset
            strategy.dataloader = SingleDatasetDataLoader(
                data.subset(shard(list(range(len(data))))), batch_size=strategy.eval_mb_size, shuffle=False,
                distributed_sampling=False, pin_memory=strategy.device.type == "cuda")

    def after_eval_iteration(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if not self._active():  # one process: Avalanche's own metrics cover the whole experience
            return
        pred = strategy.mb_output.argmax(1).cpu()
        self._counts += torch.tensor([int((pred == strategy.mb_y.cpu()).sum()), len(pred)])

    def after_eval_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if not self._active():
            return
        correct, total = (int(v) for v in all_reduce_sum(self._counts))
        self.accuracies[int(strategy.experience.current_experience)] = correct / max(total, 1)
