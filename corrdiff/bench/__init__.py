"""``corrdiff bench``: speed, memory and efficiency figures of a model, side by side with its peers.

Sections (each can be skipped with ``--skip``; docs/benchmarks.md explains every figure), one module each:

``codecs`` and ``peers`` (:mod:`~corrdiff.bench.codecs`)
    Encode and decode time (median over repeats), bpp and peak memory of the model and of its peers
    (compressai's mean-scale hyperprior of the same widths, untrained; JPEG and WebP at the model's
    bpp) at several image sizes, every (codec, size) in a fresh process; the log-log exponent of
    time against pixel count; ratios ours / peer.
``breakdown`` and ``flops`` (:mod:`~corrdiff.bench.profile`)
    Where decoding time goes (the networks, entropy decoding, the rest) at one size, and the FLOP/s
    the networks reach against this machine's dense fp32 ``torch.mm`` and 1x1 convolution.
``training`` (:mod:`~corrdiff.bench.training`)
    One optimisation step of phase 1 (ScoreTraining) and phase 2 (JointTraining) of the model's
    architecture at several batch sizes, run by a ``lightning.Trainer`` on the module itself.
``gamma`` (:mod:`~corrdiff.bench.gamma`)
    The two gamma solvers (closed form, gradient descent): time and agreement of the transmitted gamma.

The meters are in :mod:`~corrdiff.bench.measure`, the inputs in :mod:`~corrdiff.bench.inputs`, the
markdown in :mod:`~corrdiff.bench.report`, the driver in :mod:`~corrdiff.bench.run`.
"""

from typing import Any

from corrdiff.bench.settings import (SECTIONS, BenchmarkError, BenchSettings, parse_size, parse_sizes, parse_skip,
                                     quick_settings)


def __getattr__(name: str) -> Any:
    """``run_benchmark`` on first use: the measuring processes import the section modules through this
    package, and must not inherit the driver's imports (Lightning) in their resident memory."""
    if name == "run_benchmark":
        from corrdiff.bench.run import run_benchmark

        return run_benchmark
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SECTIONS", "BenchSettings", "BenchmarkError", "parse_size", "parse_sizes", "parse_skip",
           "quick_settings", "run_benchmark"]
