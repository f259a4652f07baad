"""The entry point: :func:`main` runs one command (a Lightning command through LightningCLI, a file command
with signal handling around it) and maps documented errors to one line on stderr and exit status 2;
:func:`run` is the console script and ``python -m corrdiff``."""

from __future__ import annotations

import os
import signal
import sys

from corrdiff.cli.compress import compress_command
from corrdiff.cli.decompress import decompress_command
from corrdiff.cli.demo import demo_command
from corrdiff.cli.errors import EXIT_USAGE_ERROR, UsageError
from corrdiff.cli.export import export_command
from corrdiff.cli.interrupts import EXIT_INTERRUPTED, Signals, Terminated, what_was_written
from corrdiff.cli.parser import LIGHTNING_COMMANDS, build_parser
from corrdiff.cli.reports import bench_command, eval_command, plot_command
from corrdiff.errors import CorrDiffError
from corrdiff.registry import UnknownComponentError

COMMANDS = {"compress": compress_command, "decompress": decompress_command, "export": export_command,
            "demo": demo_command, "eval": eval_command, "plot": plot_command, "bench": bench_command}


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status (0, 2 for a documented error, 128 + N after signal N).

    Called as the program (``argv`` None), the status is final once the command is over: signals
    that arrive while the interpreter tears down (seconds with torch loaded) are ignored instead of
    ending the process by the signal, and an interrupted command ends the process at once
    (``os._exit`` after flushing), since CPython would otherwise end it by SIGINT when the interrupt
    landed in code that C runs through ``PyRun_*`` (an import of torch), whatever main returned.
    """
    entry = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from corrdiff.training.cli import run_lightning_cli

        run_lightning_cli(argv)
        return 0
    name = argv[0] if argv and argv[0] in COMMANDS else "command"
    since, signals = 0, Signals()
    try:  # everything, imports included: a Ctrl-C at any point is one line and exit 130
        from corrdiff.files import committed_outputs

        since = len(committed_outputs)
        with signals.installed(restore=not entry):
            try:
                code = _run(argv)
            except Exception:  # noqa: BLE001 - after a signal, the signal's own exception turned into another
                if not signals.received:  # (an extension module's import reports it as ImportError)
                    raise
            if signals.received:  # a signal whose exception a callback swallowed or another exception replaced
                raise KeyboardInterrupt if signals.received[0] == signal.SIGINT else Terminated(signals.received[0])
            signals.over = True
            if entry:
                signals.ignore_from_now()
        return code
    except KeyboardInterrupt:
        signals.over = True
        print(f"corrdiff {name}: interrupted; {what_was_written(since)}", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Terminated as exc:
        signals.over = True
        signum = exc.args[0]
        print(f"corrdiff {name}: terminated by {signal.Signals(signum).name}; {what_was_written(since)}",
              file=sys.stderr)
        code = 128 + signum
    if entry:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(argv: list[str]) -> int:
    """Parse ``argv`` and run the file command: 0, or 2 with one line on stderr for a documented error."""
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return EXIT_USAGE_ERROR
    try:
        code = COMMANDS[args.command](args)
    except (CorrDiffError, UsageError, UnknownComponentError, OSError) as exc:
        # OSError: missing file, directory, permission denied, disk full, ... (atomic writes leave nothing behind)
        print(f"corrdiff {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    except MemoryError:
        print(f"corrdiff {args.command}: error: out of memory", file=sys.stderr)
        return EXIT_USAGE_ERROR
    return code or 0


def run() -> None:
    """The console entry point (``corrdiff``, ``python -m corrdiff``): :func:`main`, then the exit.

    ``gc.freeze()`` first: at exit the interpreter would otherwise walk every object that torch and
    its friends created (about a second of a 3-second ``corrdiff compress``, benchmarks/startup.py);
    frozen objects are left to the operating system. Files are closed and synced by then.
    """
    import gc

    code = main()
    gc.freeze()
    sys.exit(code)
