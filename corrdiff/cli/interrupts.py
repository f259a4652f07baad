"""What happens around a command when a signal comes: SIGINT, SIGTERM and SIGHUP unwind it like Ctrl-C
(atomic writes remove their temporary files), and the one line that ends it says which outputs were
completed before it stopped."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report an interrupted command


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised so that the command unwinds like on Ctrl-C (temporary files removed)."""


class Signals:
    """SIGINT raises KeyboardInterrupt and SIGTERM/SIGHUP raise :class:`Terminated` while a command runs.

    Each signal is also recorded in :attr:`received`: CPython cannot raise from a handler that runs
    inside a callback (a weakref's, a ``__del__``, an import lock's), prints "Exception ignored" and
    goes on, so :func:`~corrdiff.cli.entry.main` raises it again when the command returns (and such
    reports are silenced). Once :attr:`over` is set, signals are ignored: the command's status
    stands. Signals that are ignored already (SIG_IGN, e.g. SIGHUP under nohup) stay ignored; only
    the main thread handles any.
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self):
        self.received: list[int] = []
        self.over = False

    def handle(self, signum, frame) -> None:
        if self.over:
            return
        self.received.append(signum)
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)

    def ignore_from_now(self) -> None:
        """The process is ending with its status decided: ignore the signals at the OS level (SIG_IGN), which
        the interpreter's teardown keeps (it resets Python handlers to the default action, ending by the signal)."""
        self.over = True
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                sig = getattr(signal, name, None)
                if sig is not None and signal.getsignal(sig) == self.handle:
                    signal.signal(sig, signal.SIG_IGN)

    @contextlib.contextmanager
    def installed(self, restore: bool = True):
        """Handle the signals in the block; ``restore=False`` keeps the handler after it (the process is ending)."""
        previous, hook = {}, sys.unraisablehook

        def unraisable(info):
            if not isinstance(info.exc_value, (KeyboardInterrupt, Terminated)):
                hook(info)

        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                sig = getattr(signal, name, None)
                if sig is not None and signal.getsignal(sig) not in (signal.SIG_IGN, None):
                    previous[sig] = signal.signal(sig, self.handle)
            sys.unraisablehook = unraisable
        try:
            yield self
        finally:
            if restore:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                sys.unraisablehook = hook


def what_was_written(since: int) -> str:
    """The truth about outputs when a command is interrupted: those it completed, or none."""
    from corrdiff.files import committed_outputs

    done = [str(p) for p in committed_outputs[since:]]
    if not done:
        return "no output written"
    more = f" (+{len(done) - 3} more)" if len(done) > 3 else ""
    return f"wrote {', '.join(done[:3])}{more} before stopping; nothing else was written"
