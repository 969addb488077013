"""What a measurement ran on: the processor, its vector instructions, torch's threads, the library versions.

Training on the CPU repeats itself to the last digit on one machine, but another processor
(other vector kernels), another torch build or another number of threads (torch splits its
sums over the threads, so their order changes) may round differently, and over a continual
stream of 16 steps one class order's final accuracy can then move by several points
(``docs/benchmarks.md``, "The baselines run again on one machine"). Benchmarks record
:func:`describe` next to their figures so that runs of two machines are not paired
unawares; :func:`differences` says what two records disagree on.

Example:
    >>> record = describe()
    >>> sorted(record)[:3]
    ['avalanche', 'cores', 'cpu']
    >>> differences(record, dict(record))
    {}
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

__all__ = ["describe", "differences", "mixed_machines", "machines_note", "record_of", "with_threads", "COMPARED"]

COMPARED = ("cpu", "cpu_capability", "threads", "torch", "numpy", "avalanche", "timm")
"""The keys whose values change the figures (the core count and Python's version do not
change a run's arithmetic; torch's thread count does)."""


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, str | int]:
    """The machine this process runs on, as plain values for a JSON file.

    Returns:
        ``cpu`` (the processor's model name), ``cpu_capability`` (the vector instructions
        torch's CPU kernels use, e.g. ``AVX2`` or ``AVX512``), ``cores``, ``threads`` (torch's
        intra-op threads now: call it after ``torch.set_num_threads``), and the versions of
        ``python``, ``torch``, ``numpy``, ``avalanche`` and ``timm``.
    """
    import numpy
    import torch

    return {
        "cpu": _cpu_model(),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "cores": os.cpu_count() or 0,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "avalanche": _version("avalanche-lib"),
        "timm": _version("timm"),
    }


def differences(a: dict | None, b: dict | None) -> dict[str, tuple[object, object]]:
    """The keys of :data:`COMPARED` on which two :func:`describe` records disagree, with both
    values; a missing record (a file written before records were kept) disagrees on every
    key, as ``None``.

    Example:
        >>> differences({"cpu": "x", "torch": "2.1"}, {"cpu": "y", "torch": "2.1"})
        {'cpu': ('x', 'y')}
    """
    if a is None or b is None:
        return {} if a is None and b is None else {k: ((a or {}).get(k), (b or {}).get(k)) for k in COMPARED}
    return {k: (a.get(k), b.get(k)) for k in COMPARED if a.get(k) != b.get(k) and (k in a or k in b)}


def mixed_machines(records: dict[str, dict | None], *, what: str = "files") -> str | None:
    """A warning for results read from several files (``{file: its describe() record or
    None}``) when they ran on different machines or some record no machine; ``None`` when
    every file ran on the same one (or there is one file). ``what`` names the files in the
    text (``"runs"`` for run folders).

    Example:
        >>> mixed_machines({"a.json": {"cpu": "x"}, "b.json": {"cpu": "x"}}) is None
        True
        >>> text = mixed_machines({"a.json": {"cpu": "x"}, "b.json": {"cpu": "y"}})
        >>> text.startswith("note: the files ran on 2 machines (cpu: 'x' in a.json, 'y' in b.json)")
        True
    """
    if len(records) < 2:
        return None
    missing = [name for name, record in records.items() if record is None]
    known = {name: record for name, record in records.items() if record is not None}
    notes = []
    if missing:
        notes.append(f"{len(missing)} of the {len(records)} {what} record no machine ({', '.join(missing)}), so "
                     "whether they share a machine cannot be checked")
    if known:
        first = next(iter(known.values()))
        keys = sorted({k for record in known.values() for k in differences(first, record)})
        if keys:
            distinct = {tuple(record.get(k) for k in COMPARED) for record in known.values()}
            shown = "; ".join(f"{k}: " + ", ".join(f"{record.get(k)!r} in {name}" for name, record in known.items())
                              for k in keys)
            kind = ("thread counts" if keys == ["threads"] else
                    "machines or thread counts" if "threads" in keys else "machines")
            notes.append(f"the {what} ran on {len(distinct)} {kind} ({shown})")
    if not notes:
        return None
    return ("note: " + "; ".join(notes) + ". Runs of two machines or thread counts may differ by several points: "
            "pair runs of one machine and one thread count")


def with_threads(record: dict | None, threads: int | None) -> dict | None:
    """``record`` with ``threads`` filled in where it has none (a record written before
    ``threads`` joined :func:`describe`; ``threads`` is what the run asked for), so that a run
    of one thread and a run of two are not taken for one set-up.

    Example:
        >>> with_threads({"cpu": "x"}, 1)
        {'cpu': 'x', 'threads': 1}
        >>> with_threads({"cpu": "x", "threads": 2}, 1)["threads"], with_threads(None, 1)
        (2, None)
    """
    if record is None or threads is None or "threads" in record:
        return record
    return {**record, "threads": threads}


def record_of(data: dict) -> dict | None:
    """The ``"machine"`` record of a benchmark's JSON (``data``), or ``None`` where it has none;
    an older record takes its thread count from the run's ``args["threads"]`` (the benchmarks'
    ``--threads``; :func:`with_threads`).

    Example:
        >>> record_of({"machine": {"cpu": "x"}, "args": {"threads": 1}})
        {'cpu': 'x', 'threads': 1}
        >>> record_of({"args": {"threads": 1}}) is None
        True
    """
    return with_threads(data.get("machine"), (data.get("args") or {}).get("threads"))


def machines_note(paths: list[str | os.PathLike]) -> str | None:
    """:func:`mixed_machines` over benchmark JSON files, each read for its machine record
    (:func:`record_of`)."""
    return mixed_machines({str(p): record_of(json.loads(Path(p).read_text())) for p in paths})
