"""The ``corrdiff`` command line.

Training and evaluation loops (``fit``, ``validate``, ``test``) are Lightning's
LightningCLI (``corrdiff fit --config experiments/....yaml``); the file tools
(``compress``, ``decompress``, ``export``) are plain argparse. A documented error
(:class:`~corrdiff.errors.CorrDiffError`, a missing file, a refused overwrite) prints
one line to stderr and exits with status 2, without a traceback.

One module per job, every name below importable from here; importing them loads no torch (each
command imports what it needs when it runs):

* :mod:`~corrdiff.cli.entry`: :func:`main` (one command, its exit status), :func:`run` (the console
  script), ``COMMANDS``;
* :mod:`~corrdiff.cli.parser`: the subcommands and their options; :mod:`~corrdiff.cli.options`: option
  values (:func:`parse_size`, ...) and the option groups several commands share;
* :mod:`~corrdiff.cli.compress` (with :mod:`~corrdiff.cli.compress_options`, the encoder's options),
  :mod:`~corrdiff.cli.decompress`, :mod:`~corrdiff.cli.export`, :mod:`~corrdiff.cli.demo`,
  :mod:`~corrdiff.cli.reports` (eval, plot, bench): the commands; :mod:`~corrdiff.cli.loading`: the
  model of the file commands;
* :mod:`~corrdiff.cli.interrupts`: signals during a command and what it wrote before one;
  :mod:`~corrdiff.cli.errors`: :class:`UsageError` and the exit status of documented errors.
"""

from __future__ import annotations

from corrdiff.cli.compress import MS_SSIM_MIN_SIDE, auto_choice, quality_figures
from corrdiff.cli.compress_options import SHARPEN_GRANULARITY
from corrdiff.cli.decompress import MODES_WITHOUT_GAMMAS
from corrdiff.cli.entry import COMMANDS, main, run
from corrdiff.cli.errors import EXIT_USAGE_ERROR, UsageError
from corrdiff.cli.interrupts import EXIT_INTERRUPTED, Terminated
from corrdiff.cli.options import DEVICE_HELP, VARIABLE_QUALITIES, parse_size
from corrdiff.cli.parser import LIGHTNING_COMMANDS

__all__ = [
    "COMMANDS", "DEVICE_HELP", "EXIT_INTERRUPTED", "EXIT_USAGE_ERROR", "LIGHTNING_COMMANDS", "MODES_WITHOUT_GAMMAS",
    "MS_SSIM_MIN_SIDE", "SHARPEN_GRANULARITY", "Terminated", "UsageError", "VARIABLE_QUALITIES", "auto_choice",
    "main", "parse_size", "quality_figures", "run",
]
