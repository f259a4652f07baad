"""``python -m corrdiff ...``: the ``corrdiff`` command line (corrdiff.cli)."""

import sys

from corrdiff.cli import main

sys.exit(main())
