"""Many processes for one command: ``cfer ... --nproc N`` and ``torchrun ... -m cfer ...``.

* :func:`launch` is what ``--nproc N`` does: it starts the same command under PyTorch's own
  launcher (``python -m torch.distributed.run --standalone --nproc_per_node N -m cfer ...``,
  i.e. ``torchrun``) and returns its exit status. Users of clusters call ``torchrun``
  themselves with their own rendezvous options.
* :func:`join` is what every command that trains does first: when ``torchrun`` started the
  process it joins the process group through Avalanche's ``DistributedHelper`` (gloo on the
  CPU, NCCL on CUDA, each rank on its own GPU), seeds every rank the same way and silences
  the standard output of every rank but 0, so the command prints its summary once.

Outside ``torchrun`` both are no-ops and the command runs in one process.

Example:
    >>> without_nproc(["run", "--nproc", "2", "--epochs", "1"])
    ['run', '--epochs', '1']
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
from typing import Sequence

from cfer.distributed import is_distributed, is_main, launched_by_torchrun, resolve_device, world_size

__all__ = ["join", "launch", "local_threads", "without_nproc"]

logger = logging.getLogger(__name__)


def without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (what the launched processes run)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch(argv: Sequence[str], *, nproc: int) -> int:
    """Run ``cfer argv`` in ``nproc`` processes under ``torchrun`` on this machine; returns
    the exit status (the first failing process's, as torchrun reports it).

    Raises:
        ValueError: If ``nproc`` < 1.
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "cfer", *without_nproc(argv)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    print("launching: " + " ".join(cmd[1:]), file=sys.stderr)
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # torchrun stops its workers on SIGINT (a terminal's Ctrl-C reaches it too): let it,
        # rather than killing it and leaving them behind.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def join(*, device: str, seed: int) -> None:
    """Join the ``torchrun`` job this process belongs to (no-op outside one, or if joined).

    Args:
        device: The command's ``--device``: CUDA devices use NCCL (each rank on the GPU
            ``LOCAL_RANK``), the CPU gloo.
        seed: Seed every rank's generators with (Avalanche's ``RNGManager``).
    """
    if not launched_by_torchrun() or is_distributed():
        return
    from avalanche.distributed import DistributedHelper

    cuda = resolve_device(device).type == "cuda"
    DistributedHelper.init_distributed(random_seed=seed, backend="nccl" if cuda else "gloo", use_cuda=cuda)
    atexit.register(_leave)
    prefix = logging.Formatter(f"%(levelname)s [rank {DistributedHelper.rank}] %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the command's log lines say which process wrote them
        handler.setFormatter(prefix)
    logger.info("rank %d of %d joined (%s)", DistributedHelper.rank, world_size(), "nccl" if cuda else "gloo")
    if not is_main():  # one summary on the terminal: rank 0's (errors still reach stderr from every rank)
        sys.stdout = open(os.devnull, "w")


def _leave() -> None:
    import torch

    if is_distributed():
        torch.distributed.destroy_process_group()


def local_threads(threads: int) -> int:
    """``threads`` capped so that the processes ``torchrun`` started on this machine do not
    ask for more threads than it has cores (one process: ``threads`` unchanged)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if launched_by_torchrun() else 1
    cap = max(1, (os.cpu_count() or 1) // local)
    if threads > cap:
        logger.warning("%d threads per process for %d processes on %d cores: using %d", threads, local,
                       os.cpu_count(), cap)
    return min(threads, cap)
