"""The run folder's guards: one run at a time, and never someone else's folder.

:func:`claim_run_folder` is what :func:`cfer.app.pipeline.run_pipeline` holds while it
works:

* **refusals before anything is written:** ``--out`` that is a file, a folder that is not
  empty and is not a cfer run (a user's own ``report.html`` would be overwritten), a new
  run into a folder that already holds one, a resume of a folder that holds none;
* **an exclusive lock:** the file ``RUN/.cfer.lock`` is locked with ``fcntl.flock``
  for as long as the run works (the kernel drops the lock when the process dies, so a
  killed run never leaves the folder blocked); a second ``cfer run`` or ``--resume`` on
  the same folder is refused while the first holds it, naming its process id;
* **no half-initialised folder:** if a new run fails before it writes its config (the
  data checks), :meth:`RunFolder.abandon` removes what the claim created, so the same
  command can be run again once the data is fixed.

Example:
    >>> import tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with claim_run_folder(run, resume=False) as folder:
    ...     (run / "config.yaml").write_text("seed: 0\\n") and None
    >>> sorted(p.name for p in run.iterdir())
    ['.cfer.lock', 'config.yaml']
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

__all__ = ["LOCK_NAME", "RunExistsError", "RunFolder", "RunFolderError", "RunLockedError", "claim_run_folder",
           "hold_lock"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".cfer.lock"
"""The lock file in every run folder (locked with ``fcntl.flock`` while a run works)."""


class RunFolderError(ValueError):
    """The output folder cannot be used for this run; the message says which to choose."""


class RunExistsError(RunFolderError):
    """The output folder already holds a run (and ``resume`` was not asked for)."""


class RunLockedError(RunFolderError):
    """Another process is running in this folder now."""


@dataclass
class RunFolder:
    """A claimed run folder.

    Attributes:
        path: The folder.
        created: Whether the claim created it (then :meth:`abandon` removes it).
    """

    path: Path
    created: bool

    def abandon(self) -> None:
        """Remove what the claim created (the lock file; the folder if the claim made it
        and nothing else was written), after a new run failed before writing its config."""
        try:
            (self.path / LOCK_NAME).unlink()
        except FileNotFoundError:
            pass
        if self.created:
            try:
                self.path.rmdir()
            except OSError:  # something else was written there: keep it
                logger.info("kept %s: it holds files", self.path)


def _is_run(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != LOCK_NAME)


def _refuse_foreign(path: Path, *, resume: bool) -> None:
    """Refusals that hold whoever else is running: a file, someone else's folder, no run to resume."""
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path} is a file, not a folder; give --out a folder path (new or empty)")
    if resume:
        if not path.is_dir() or not _is_run(path):
            raise RunFolderError(f"{path} is not a cfer run folder (no config.yaml); give the folder a run wrote")
        return
    found = _entries(path) if path.is_dir() and not _is_run(path) else []
    if found:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise RunFolderError(f"{path} is not empty and is not a cfer run folder ({len(found)} entries: {shown}); "
                             "cfer would overwrite them: choose a new or empty folder for --out")


@contextmanager
def claim_run_folder(path: str | os.PathLike, *, resume: bool) -> Iterator[RunFolder]:
    """Check, create and lock a run folder for the duration of the ``with`` block.

    Args:
        path: The run folder.
        resume: Go on with the run the folder holds (else the folder must be new or empty).

    Yields:
        The :class:`RunFolder`.

    Raises:
        RunFolderError: If ``path`` is a file, or a non-empty folder that is not a run.
        RunExistsError: If a new run is asked for in a folder that holds one.
        RunLockedError: If another process holds the folder's lock.
        OSError: If the folder cannot be created or written (read-only, full disk).
    """
    path = Path(path)
    _refuse_foreign(path, resume=resume)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(path=path, created=created)
    with hold_lock(path):
        if not resume and _is_run(path):
            raise RunExistsError(f"{path} already holds a run; resume it with `cfer run --resume {path}` or "
                                 "choose another --out")
        _refuse_foreign(path, resume=resume)  # what another process may have written before we locked
        yield folder


@contextmanager
def hold_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive lock ``path/.cfer.lock`` (``fcntl.flock``) for the ``with`` block.

    The kernel drops the lock when the process dies, so a killed job never leaves the folder
    blocked. Used for run folders (:func:`claim_run_folder`) and ``cfer pretrain`` folders.

    Raises:
        RunLockedError: If another process holds it (the message names its process id).
    """
    path = Path(path)
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunLockedError(f"another cfer process (pid {holder}) is running in {path}; wait for it to "
                                 "finish, or choose another --out") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
