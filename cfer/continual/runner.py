"""Run any Avalanche strategy over a :class:`~cfer.continual.stream.CompoundStream`.

After each training step the strategy is evaluated on the test experiences seen so
far, and the accuracies land in a :class:`~cfer.continual.metrics.ContinualResults`.
An Avalanche benchmark works too (``nc_benchmark``, ``class_incremental_benchmark``,
``benchmark_from_datasets``: anything with ``train_stream`` and ``test_stream``, and
``valid_stream`` to tune on).

Example:
    >>> results = run_stream(strategy, stream)      # doctest: +SKIP
    >>> results.average_accuracy                     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from cfer.continual.metrics import ContinualResults, experience_accuracies

__all__ = ["run_stream"]

logger = logging.getLogger(__name__)


def run_stream(strategy, stream, *, progress: bool = False, desc: str = "steps",  # noqa: ANN001
               evaluate_on: str = "test", results: ContinualResults | None = None,
               after_step: Callable[[int, ContinualResults], None] | None = None,
               num_workers: int = 0) -> ContinualResults:
    """Train ``strategy`` on every experience of ``stream``, evaluating after each.

    Args:
        strategy: An Avalanche strategy whose evaluator reports ``Top1_Acc_Exp``
            (e.g. built by :func:`cfer.continual.factory.make_strategy`).
        stream: The :class:`~cfer.continual.stream.CompoundStream`, or an Avalanche
            benchmark.
        progress: Show a tqdm bar over steps.
        desc: Label of the bar.
        evaluate_on: ``"test"`` (report) or ``"val"`` (choose hyper-parameters; the
            validation subjects are disjoint from both train and test).
        results: Results of the steps already done (a resumed run goes on after them).
        after_step: Called with the step index and the results after each step (e.g. to
            write a checkpoint).
        num_workers: Worker processes of the training data loaders (Avalanche's, the replay
            loader included; 0: load in this process). Avalanche pins memory on CUDA.

    Returns:
        The accuracy matrix and the derived metrics.
    """
    if evaluate_on not in ("test", "val"):
        raise ValueError(f"evaluate_on must be 'test' or 'val', got {evaluate_on!r}")
    val = getattr(stream, "val_stream", None)
    if val is None:  # an Avalanche benchmark names it valid_stream
        val = getattr(stream, "valid_stream", None)
    if evaluate_on == "val" and val is None:
        raise ValueError("this stream has no validation split; build it with val=... (an Avalanche benchmark: "
                         "with a 'valid' stream) to tune on it")
    test = stream.test_stream if evaluate_on == "test" else val
    # Avalanche names metrics after the experiences' stream ("test" -> .../test_stream/...).
    name = f"{getattr(test, 'name', 'test' if evaluate_on == 'test' else 'valid')}_stream"
    if results is None:
        results = ContinualResults(n_test=[len(e.dataset) for e in test])
    start = len(results.matrix)
    steps = list(enumerate(stream.train_stream))[start:]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=start + len(steps), initial=start, desc=desc, unit="step", leave=False)
    for i, experience in steps:
        t0 = time.perf_counter()
        strategy.train(experience, **({"num_workers": num_workers} if num_workers else {}))
        seconds = time.perf_counter() - t0
        metrics = strategy.eval(test[: i + 1])
        accs = _reduced(strategy, n_experiences=i + 1) or experience_accuracies(metrics, n_experiences=i + 1,
                                                                                 stream=name)
        results.add_step(accuracies=accs, seconds=seconds)
        if after_step is not None:
            after_step(i, results)
        logger.info("step %d: seen-class accuracy %.3f (%.1f s)", i, results.seen_accuracy[-1], seconds)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(seen=f"{results.seen_accuracy[-1]:.3f}")
    if bar is not None:
        bar.close()
    return results


def _reduced(strategy, *, n_experiences: int) -> list[float] | None:  # noqa: ANN001
    """Under ``torchrun``, the accuracies summed over the processes' shards by the strategy's
    :class:`~cfer.continual.plugins.ddp.DistributedPlugin` (Avalanche's own metrics then
    cover one shard each); None otherwise."""
    from cfer.distributed import world_size

    if world_size() == 1:
        return None
    from cfer.continual.plugins.ddp import DistributedPlugin

    for plugin in getattr(strategy, "plugins", ()):
        if isinstance(plugin, DistributedPlugin):
            return [plugin.accuracies[j] for j in range(n_experiences)]
    raise RuntimeError("under torchrun the strategy needs cfer.continual.plugins.ddp.DistributedPlugin (it shards "
                       "evaluation and sums it over the processes); add it to the strategy's plugins")
