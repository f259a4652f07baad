"""The default number of torch threads of ``corrdiff compress``, ``decompress``, ``eval`` and ``bench``
(when ``--threads`` is not given): what the machine can give now.

torch's own default is one thread per core; on a busy machine threads that wait for each other's
turn on a core cost more than they bring (docs/benchmarks.md, "Threads on a busy machine": a 768x512
compress on 2 busy cores took 2-3x longer with two threads than with one).
"""

from __future__ import annotations

import os

#: the rule of :func:`default_threads`, for the ``--help`` texts
DEFAULT_THREADS_RULE = "the cores this process may use minus the 1-minute load average, at least 1"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads() -> int:
    """:func:`available_cores` minus the 1-minute load average (rounded), between 1 and the cores."""
    cores = available_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows; or the load cannot be read
        return cores
    return max(1, min(cores, cores - round(load)))
