"""``python -m corrdiff.cli ...``: the same command line as ``python -m corrdiff`` and ``corrdiff``."""

from corrdiff.cli import run

run()
