"""Many processes for one command: ``cfer ... --nproc N`` and ``torchrun ... -m cfer ...``.

* :func:`launch` is what ``--nproc N`` does: it starts the same command under PyTorch's own
  launcher (``torch.distributed.run``, i.e. ``torchrun --standalone --nproc-per-node N -m
  cfer ...``) and returns the exit status. Users of clusters call ``torchrun``
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
import sys
import time
from typing import Sequence

from cfer.distributed import is_distributed, is_main, launched_by_torchrun, resolve_device, world_size

__all__ = ["join", "launch", "local_threads", "resume_hint", "say", "without_nproc"]

logger = logging.getLogger(__name__)

SAY_GRACE_S = 2.0
"""How long a rank other than 0 waits after meeting an error before it exits: torchrun stops
every process once one has failed, and rank 0 must have said the error by then."""


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
    0, or the exit status of the first process that failed.

    torchrun's own launcher (``torch.distributed.run``) starts and watches the processes. A
    failure ends with one line naming the failed ranks and their exit status, after the error
    itself (printed once, by rank 0: :func:`say`), instead of the launcher's traceback. Ctrl-C
    stops every process.

    Raises:
        ValueError: If ``nproc`` < 1.
        KeyboardInterrupt: After the processes were stopped.
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    rest = without_nproc(argv)
    print(f"cfer: {nproc} processes (torchrun --standalone --nproc-per-node {nproc} -m cfer {' '.join(rest)})",
          file=sys.stderr)
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "cfer", *rest]))
    except ChildFailedError as exc:
        # A process that failed by itself exits > 0; the others torchrun then stopped (signal: < 0).
        failed = sorted((r, f.exitcode) for r, f in exc.failures.items()
                        if isinstance(f.exitcode, int) and f.exitcode > 0)
        stopped = nproc - len(failed)
        codes = ", ".join(f"rank {rank}: exit code {code}" for rank, code in failed) or "killed by a signal"
        print(f"cfer: {len(failed) or len(exc.failures)} of {nproc} processes failed ({codes})"
              + (f"; {stopped} stopped" if failed and stopped else ""), file=sys.stderr)
        return failed[0][1] if failed and failed[0][1] < 256 else 1
    except SignalException as exc:  # torchrun turns SIGINT / SIGTERM into this after stopping the processes
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        return 128 + int(exc.sigval)
    return 0


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


def say(message: str) -> None:
    """Print ``message`` to stderr once: under torchrun every process meets the same error or
    interruption, and rank 0 says it (``RANK`` from torchrun's environment, so this holds before
    the process group exists too). Another rank waits :data:`SAY_GRACE_S` instead: if it
    exited first, torchrun would stop rank 0 before rank 0 had said it."""
    if not launched_by_torchrun() or os.environ.get("RANK") == "0":
        print(message, file=sys.stderr, flush=True)
    else:
        time.sleep(SAY_GRACE_S)


def resume_hint(command: str, out: object) -> str:
    """``cfer COMMAND --resume OUT``, with ``--nproc N`` when N processes ran it."""
    n = world_size()
    return f"cfer {command} --resume {out}" + (f" --nproc {n}" if n > 1 else "")
