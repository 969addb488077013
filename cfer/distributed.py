"""Where a process stands in a ``torchrun`` job, and the few collectives cfer's loops need.

cfer trains with PyTorch's own distributed engine: ``torchrun --nproc_per_node N -m cfer
...`` (or ``cfer ... --nproc N``, which launches it) starts N processes, the app joins them
into one process group (gloo on CPU, NCCL on CUDA; :func:`cfer.app.distributed.setup`) and
every training loop shards each **global** mini-batch over the processes, which
``DistributedDataParallel`` averages. Outside such a job every function here is the identity:
``rank() == 0``, ``world_size() == 1``, the collectives return their input, so the loops are
the same code with and without DDP.

The rules every loop follows:

* **the global batch stays the configured one:** with N processes each takes every N-th item
  of the global batch (:func:`shard`), so the N shards together are exactly the batch a
  single process would take, and the learning rate is unchanged (no scaling rule to apply:
  the optimiser sees the same gradient, the mean over the global batch);
* **every rank draws the same shuffles** (same seeds), and per-rank randomness (masking,
  augmentation) is seeded from ``(seed, rank)``;
* **only rank 0 writes files** (:func:`is_main`); the others wait at :func:`barrier` where
  they then read them.

Example:
    >>> import torch
    >>> rank(), world_size(), is_main()
    (0, 1, True)
    >>> shard(torch.arange(6))
    tensor([0, 1, 2, 3, 4, 5])
    >>> all_reduce_sum(torch.tensor([3.0]))
    tensor([3.])
"""

from __future__ import annotations

import logging
import os
from typing import Any, TypeVar

import torch

__all__ = ["CPU_BUCKET_MB", "DEVICES", "PRECISIONS", "all_gather_objects", "all_reduce_sum", "autocast", "barrier",
           "check_precision",
           "broadcast_object", "gather_shards", "is_distributed", "is_main", "launched_by_torchrun",
           "model_device", "quiet_stride_notice", "rank", "resolve_device", "shard", "sync_buffers", "world_size",
           "wrap_ddp"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEVICES = ("auto", "cpu", "cuda")
"""Device spellings (and ``cuda:N``)."""

PRECISIONS = ("fp32", "bf16", "fp16")
"""Mixed-precision options: ``fp32`` (none), ``bf16`` (CPU and CUDA), ``fp16`` (CUDA only)."""


def is_distributed() -> bool:
    """Whether this process is part of an initialised process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank (0 outside a distributed job)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 outside a distributed job)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this is rank 0, the one process that writes files and reports."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` started this process (its environment names a rank and a world)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def barrier() -> None:
    """Wait until every process reaches this point (no-op outside a distributed job)."""
    if is_distributed():
        torch.distributed.barrier()


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (a picklable object)."""
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` outside a distributed job)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over the ranks (a new tensor; the input is unchanged)."""
    out = tensor.clone()
    if not is_distributed():
        return out
    if torch.distributed.get_backend() == "nccl" and out.device.type != "cuda":  # NCCL reduces GPU tensors only
        moved = out.to(torch.device("cuda", torch.cuda.current_device()))
        torch.distributed.all_reduce(moved, op=torch.distributed.ReduceOp.SUM)
        return moved.to(tensor.device)
    torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
    return out


def shard(items: torch.Tensor | list, *, of: int | None = None, at: int | None = None):  # noqa: ANN201
    """This rank's share of ``items``: every ``world_size()``-th item from position ``rank()``.

    The shards of all ranks are disjoint and together are ``items``; applied to each global
    mini-batch, they reproduce it exactly. ``of``/``at`` override the world size and rank.

    Example:
        >>> shard(list(range(7)), of=2, at=1)
        [1, 3, 5]
    """
    n, r = (world_size() if of is None else of), (rank() if at is None else at)
    return items[r::n]


def gather_shards(values: torch.Tensor, *, total: int) -> torch.Tensor:
    """Reassemble per-rank results of :func:`shard`-ed items (rows of ``values``) in the
    items' original order: the inverse of ``shard`` over all ranks.

    Example:
        >>> gather_shards(torch.tensor([5.0, 6.0]), total=2)
        tensor([5., 6.])
    """
    if not is_distributed():
        return values
    parts = all_gather_objects(values.detach().cpu())
    out = torch.empty((total, *values.shape[1:]), dtype=values.dtype)
    for r, part in enumerate(parts):
        out[r::len(parts)] = part
    return out


CPU_BUCKET_MB = 1.0
"""DDP's gradient bucket size on the CPU (gloo), in MiB: see :func:`wrap_ddp`."""


def wrap_ddp(model: torch.nn.Module, *, device: torch.device | str = "cpu",
             static_graph: bool = True, bucket_cap_mb: float | None = None) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` (on ``device``'s GPU for CUDA) in a distributed
    job; ``model`` itself otherwise.

    Set for cfer's training loops, which use every trainable parameter in every step: the
    gradients live in DDP's buckets (``gradient_as_bucket_view``, one copy fewer a step), the
    graph is declared static (``static_graph``: DDP skips its per-step search for ready
    buckets; measured on the 2-core CPU, the MAE step under DDP fell from about 226 to 202 ms)
    and buffers are not broadcast before every forward (``forward_sync_buffers=False``;
    ``broadcast_buffers=False`` before torch 2.13): the loops call :func:`sync_buffers` after
    every epoch instead, and training itself normalises with batch statistics.

    ``bucket_cap_mb`` (MiB) sets DDP's gradient buckets; ``None`` takes :data:`CPU_BUCKET_MB`
    (1 MiB) on the CPU and DDP's own default on GPUs (25 MiB, the first bucket 1 MiB). Small
    buckets let gloo's all-reduce start while the backward pass is still running: for the
    ``resemotenet_slim`` teacher (5 MB of gradients) at a global batch of 64 on 2 CPU cores,
    2 processes ran 1.52-1.56x as fast as one with 1 MiB buckets against 1.34-1.36x with
    DDP's defaults, alternating in one session (docs/benchmarks.md, "Scaling out").

    DDP's notice that a gradient's strides differ from its bucket's is silenced: cfer's
    one-channel stems (grey faces) give weights with a dimension of size 1, whose strides
    differ without any copy or cost.
    """
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    quiet_stride_notice()
    device = torch.device(device)
    # torch >= 2.13 names the option forward_sync_buffers (and warns on the old name); its one
    # extra broadcast of the buffers at wrap time is harmless: every rank built the same model
    import inspect

    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(
        DistributedDataParallel).parameters else {"broadcast_buffers": False})
    if bucket_cap_mb is None and device.type == "cpu":
        bucket_cap_mb = CPU_BUCKET_MB
    if bucket_cap_mb is not None and not bucket_cap_mb > 0:
        raise ValueError(f"bucket_cap_mb must be > 0 (MiB), got {bucket_cap_mb}")
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                   gradient_as_bucket_view=True, static_graph=static_graph, bucket_cap_mb=bucket_cap_mb,
                                   **no_sync)


def sync_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts them at the start of each forward pass, so after the last training step
    every process holds the statistics of its own last shard; call this after a training
    epoch so that evaluation, checkpoints and the next epoch see one model everywhere.
    """
    if not is_distributed():
        return
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer.data, src=0)


def quiet_stride_notice() -> None:
    """Silence DDP's "Grad strides do not match bucket view strides" notice (see :func:`wrap_ddp`)."""
    import warnings

    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")


def model_device(model: torch.nn.Module, default: torch.device | None = torch.device("cpu")) -> torch.device | None:
    """Where ``model`` computes: the device of its first parameter (else buffer); ``default``
    for a model with neither. Functions that take a user's model move their inputs there.

    Example:
        >>> model_device(torch.nn.Linear(2, 2))
        device(type='cpu')
    """
    return next((t.device for t in (*model.parameters(), *model.buffers())), default)


def resolve_device(spec: str = "auto") -> torch.device:
    """The device a spelling names: ``auto`` (this rank's GPU if CUDA works, else the CPU),
    ``cpu``, ``cuda`` (this rank's GPU: ``LOCAL_RANK`` under ``torchrun``) or ``cuda:N``.

    Raises:
        ValueError: For another spelling, or ``cuda`` on a machine without a working GPU
            (the message says to use ``--device cpu``).

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if not isinstance(spec, str) or not (spec in DEVICES or (spec.startswith("cuda:") and spec[5:].isdigit())):
        raise ValueError(f"device must be one of {list(DEVICES)} or cuda:N, got {spec!r}")
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} asked for a GPU but CUDA is not available here "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    index = int(spec[5:]) if spec.startswith("cuda:") else int(os.environ.get("LOCAL_RANK", 0))
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {spec!r}: this machine has {torch.cuda.device_count()} GPU(s), cuda:0 to "
                         f"cuda:{torch.cuda.device_count() - 1}")
    return torch.device("cuda", index)


def check_precision(precision: str, device: torch.device | str | None = "cpu") -> None:
    """Refuse an unknown mixed-precision option, or one ``device`` cannot run (``fp16`` needs
    CUDA; ``device=None`` checks the spelling alone)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if device is not None and precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA device; on the CPU use 'bf16' (or 'fp32')")


def autocast(device: torch.device | str, precision: str = "fp32"):  # noqa: ANN201
    """A ``torch.autocast`` context for ``precision`` on ``device`` (disabled for ``fp32``).

    Example:
        >>> with autocast("cpu", "bf16"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    check_precision(precision, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=precision != "fp32")
