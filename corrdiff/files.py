"""Writing files atomically, exclusively and past interruptions: the one home of every file corrdiff writes
(compressed files, images, model files, JSON and CSV reports); docs/reliability.md has the promises."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

#: Every output this process has completed, in order: an interrupted command reads it to say truthfully
#: which of its outputs were written (the interruption may land just after a rename).
committed_outputs: list[Path] = []

_STARTED = time.time()  # temporary files last modified before this are not this process's
_HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def atomic_write(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsynced, then committed.

    * ``overwrite=True``: the temporary file replaces ``path`` atomically (``os.replace``): an
      interrupted write keeps the old file.
    * ``overwrite=False``: the final name is created exclusively (``os.link`` of the temporary
      file, which fails if the name exists, even as a dangling link): of two concurrent writers,
      the second gets FileExistsError and the first one's file is kept. On a file system without
      hard links an empty placeholder is created with ``O_EXCL`` and then replaced.

    Never a partial file at ``path``. The temporary file (``.NAME.PID.XXXXXXXX.tmp``) is removed on
    any exception, SIGINT included, and on SIGTERM/SIGHUP where the command line turns them into
    exceptions; only SIGKILL (or a power cut) leaves it, and the next write of the same output
    removes it (:func:`remove_stale_temp_files`). Signals that arrive during the commit are held
    until it is recorded in :data:`committed_outputs`, then delivered.
    """
    path = Path(path)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(f"{path} exists (pass --force / overwrite=True to replace it)")
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the output a normal file's mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with held_signals():
            _commit(tmp, path, overwrite)
            committed_outputs.append(path)
            Path(tmp).unlink(missing_ok=True)  # os.link leaves the temporary name behind
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _commit(tmp: str, path: Path, overwrite: bool) -> None:
    """Give the complete temporary file its final name (see :func:`atomic_write`)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} was created by another writer while this one was writing; "
                              "kept it (pass --force to replace it)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        try:  # no hard links here (FAT, some network shares): reserve the name, then replace it
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise FileExistsError(f"{path} was created by another writer while this one was writing; "
                                  "kept it (pass --force to replace it)") from None
        os.replace(tmp, path)


@contextlib.contextmanager
def held_signals() -> "Iterator[None]":
    """Hold SIGINT, SIGTERM and SIGHUP while the block runs, then deliver them to their handlers.

    Used around a commit and its bookkeeping, so that an interruption lands before or after the
    two, never between them. Only the main thread runs Python signal handlers, so elsewhere
    (and for a handler not installed from Python) nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for sig in _HELD_SIGNALS:
        handler = signal.getsignal(sig)
        if handler is not None:
            previous[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)


def _temp_name_pattern(name: str) -> "re.Pattern[str]":
    """Temporary names of :func:`atomic_write` for an output called ``name`` (the PID is absent in
    names written by earlier versions)."""
    return re.compile(rf"\.{re.escape(name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp")


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``path`` that a killed writer left behind; return them.

    Only names of :func:`atomic_write`'s pattern for this output (``.NAME.PID.XXXXXXXX.tmp``), last
    modified before this process started, whose writing process no longer runs (a name without a
    PID, from an older corrdiff, only by its age): a concurrent writer's file is never touched.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = _temp_name_pattern(path.name)
    removed = []
    try:
        entries = [e for e in os.scandir(folder) if pattern.fullmatch(e.name)]
    except OSError:
        return removed
    for entry in entries:
        pid = pattern.fullmatch(entry.name).group(1)
        try:
            stale = entry.stat(follow_symlinks=False).st_mtime < _STARTED and not (pid and _running(int(pid)))
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _running(pid: int) -> bool:
    """Whether a process with this id exists (another user's counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, OSError):  # another user's process (EPERM), or not a PID: leave its file alone
        return True
    return True
