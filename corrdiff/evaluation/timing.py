"""Seconds per stage of one evaluation, for the printed summary and ``index.json``."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

#: the stages, in the order they are reported
STAGES = ("setup", "reading", "corrdiff encode", "corrdiff decode", "baselines", "metrics", "writing")


class StageTimes:
    """Seconds spent in each of :data:`STAGES`, summed over images, and the time since creation.

    ``setup`` loads the models and the metrics' networks; ``reading`` the images; ``baselines`` codes the
    classical files (in worker threads, beside the other stages: the stages may add up to more than the
    total); ``metrics`` computes the per-image metrics, the FID features and FID/KID; ``writing`` writes
    the CSV, the JSON files and the saved reconstructions. Safe to add to from several threads.
    """

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.started = time.perf_counter()
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        """Count ``seconds`` in ``stage``."""
        with self._lock:
            self.seconds[stage] += seconds

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Count the time spent in the ``with`` block in ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def run(self, stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
        """``fn(*args, **kwargs)`` counted in ``stage``: (its result, its seconds)."""
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
        self.add(stage, seconds)
        return result, seconds

    def summary(self) -> dict[str, float]:
        """Seconds per stage and ``total`` (since creation), rounded to microseconds (a stage that ran on tiny
        inputs, e.g. the metrics of a few small crops, can take well under a millisecond and must not read as 0)."""
        with self._lock:
            seconds = dict(self.seconds)
        return {**{k: round(v, 6) for k, v in seconds.items()}, "total": round(time.perf_counter() - self.started, 6)}
