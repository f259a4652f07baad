"""The command line's own error, :class:`UsageError` (an option value the codec rejects), and the exit
status of every documented error (one line on stderr, no traceback)."""

from __future__ import annotations

EXIT_USAGE_ERROR = 2


class UsageError(Exception):
    """An option value the codec rejects; reported like any other documented error."""
