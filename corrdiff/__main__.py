"""``python -m corrdiff ...``: the ``corrdiff`` command line (corrdiff.cli)."""

from corrdiff.cli import run

run()
