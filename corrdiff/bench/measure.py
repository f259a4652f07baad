"""The benchmark's meters: wall time (:func:`time_call`, :class:`Meter`), resident memory, fresh
measuring processes and this machine's dense FLOP/s references.

Every time of ``corrdiff bench`` is CPU wall time read from ``time.perf_counter``.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from corrdiff.bench.settings import BenchmarkError

MIB = 2**20


# ---------------------------------------------------------------------------------------- time
@dataclass
class Timing:
    """Wall times of the counted runs of one measurement (warm-up runs excluded)."""

    times: list[float]
    warmup: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def to_json(self) -> dict[str, Any]:
        return {"median_s": self.median, "times_s": self.times, "warmup": self.warmup}


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 0) -> tuple[Timing, list[Any]]:
    """Run ``fn`` ``warmup`` times uncounted, then ``repeats`` times timed: (timing, timed runs' results)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times, results = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        results.append(fn())
        times.append(time.perf_counter() - start)
    return Timing(times, warmup), results


class Meter:
    """Sums a reading (a clock, a FLOP counter) over the calls of named modules and methods.

    Modules are measured by forward pre/post hooks, methods by an instance attribute that wraps
    them; everything is removed on exit. A part called inside another is counted in both.
    """

    def __init__(self, reading: Callable[[], float] = time.perf_counter):
        self.reading = reading
        self.totals: dict[str, float] = {}
        self._undo: list[Callable[[], None]] = []

    def _add(self, name: str, amount: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + amount

    def module(self, name: str, module: torch.nn.Module) -> None:
        """Add the reading's change over every forward of ``module`` to ``name``."""
        starts: list[float] = []
        pre = module.register_forward_pre_hook(lambda mod, args: starts.append(self.reading()))
        post = module.register_forward_hook(
            lambda mod, args, out: self._add(name, self.reading() - starts.pop()))
        self._undo += [pre.remove, post.remove]

    def method(self, name: str, owner: Any, attr: str) -> None:
        """Add the reading's change over every call of ``owner.attr`` to ``name``."""
        original = getattr(owner, attr)
        shadowed = attr in vars(owner)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            start = self.reading()
            try:
                return original(*args, **kwargs)
            finally:
                self._add(name, self.reading() - start)

        setattr(owner, attr, wrapped)
        self._undo.append(lambda: setattr(owner, attr, original) if shadowed else delattr(owner, attr))

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *exc: Any) -> None:
        while self._undo:
            self._undo.pop()()


# ---------------------------------------------------------------------------------------- memory
def _proc_status_bytes(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status in bytes (None off Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss() -> int | None:
    """Resident set size now, in bytes (VmRSS, else psutil, else None)."""
    rss = _proc_status_bytes("VmRSS")
    if rss is None:
        try:
            import psutil

            rss = psutil.Process().memory_info().rss
        except ImportError:
            pass
    return rss


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0: ``5`` into /proc/self/clear_refs).

    False where that is impossible (not Linux, no permission).
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """Peak RSS in bytes: VmHWM (resettable), else ``ru_maxrss`` since the process started."""
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def mib(value: int | None) -> float | None:
    """Bytes in MiB (None stays None)."""
    return None if value is None else value / MIB


# ---------------------------------------------------------------------------------------- processes
def _process_context(preload: Sequence[str]) -> multiprocessing.context.BaseContext:
    """``forkserver`` preloading ``preload`` (children start in ~0.1 s, fresh), else ``spawn``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(preload))
        return context
    return multiprocessing.get_context("spawn")


def in_fresh_process(fn: Callable[..., Any], *args: Any, preload: Sequence[str] = ()) -> Any:
    """``fn(*args)`` in a new process (picklable ``fn``, arguments, result); its exceptions re-raised here.

    ``preload``: modules the process server imports once, so that each process starts with them loaded.
    """
    try:
        context = _process_context([fn.__module__, *preload])
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        raise BenchmarkError(
            f"the measuring process died ({getattr(fn, '__name__', fn)}{args[:2]}); out of memory? "
            "Try smaller --sizes or skip that section"
        ) from None


# ---------------------------------------------------------------------------------------- machine speed
def reference_flops(n: int, repeats: int = 5, warmup: int = 1) -> dict[str, Any]:
    """This machine's dense fp32 FLOP/s at the current thread count, as two references of 2 n^3 FLOPs.

    ``matmul``: ``torch.mm`` of two n x n matrices (BLAS). ``conv1x1``: the same product as a 1x1
    convolution of an n-channel (n/32) x 32 image (the convolution library the networks use; on
    some CPUs it outruns the BLAS). FLOP/s of the median run; n must be a multiple of 32.
    """
    if n < 32 or n % 32:
        raise ValueError(f"the reference size must be a multiple of 32, got {n}")
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=generator), torch.randn(n, n, generator=generator)
    image, weight = a.reshape(1, n, n // 32, 32), b.reshape(n, n, 1, 1)
    out: dict[str, Any] = {"n": n}
    for name, fn in (("matmul", lambda: torch.mm(a, b)), ("conv1x1", lambda: F.conv2d(image, weight))):
        timing, _ = time_call(fn, repeats, warmup)
        out[name] = {"flops": 2.0 * n**3 / timing.median, "timing": timing.to_json()}
    return out


def speed_drift(start: dict[str, Any], end: dict[str, Any]) -> float:
    """Largest relative change of the reference FLOP/s between two :func:`reference_flops` results."""
    return max(abs(end[k]["flops"] / start[k]["flops"] - 1) for k in ("matmul", "conv1x1"))
