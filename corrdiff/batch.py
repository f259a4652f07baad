"""``corrdiff compress`` / ``decompress`` over one or many files: output paths, per-file errors,
progress, threads. The command line (:mod:`corrdiff.cli`) wires these to the codec.

* One input behaves as it always did: ``-o`` names the output file and any error ends the command
  (one line, exit status 2).
* Several inputs share one model load. ``-o`` names a folder (created if missing) that receives
  ``NAME.cdf`` (compress) or ``NAME.png`` (decompress); without ``-o`` each output goes beside its
  input. Every output passes :func:`corrdiff.image_io.check_output` (never an input of the command,
  nor the model file; existing files need ``--force``), and two inputs may not claim one output; an
  ``-o`` with a file's suffix (``.cdf``, ``.png``, ...) is refused. An input that fails, whatever the
  error, prints it with the input's name and the others go on; a summary line ends the run, and the
  exit status is 2 if any input failed.
* On a terminal, an image that takes more than :data:`PROGRESS_DELAY_S` seconds shows a progress bar
  of its sampling steps (tqdm, on stderr).
* ``--threads N`` sets torch's threads; without it small images use one, larger ones what the machine
  can give (:func:`coding_threads`, :func:`corrdiff.threads.default_threads`).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from corrdiff.errors import CorrDiffError
from corrdiff.image_io import check_output

#: seconds an image runs before its progress bar appears (quick images show none)
PROGRESS_DELAY_S = 2.0
#: without --threads, images up to this many pixels are coded on one thread (and models load on one):
#: their operations are too small to gain from more, and on a busy machine threads that wait for each
#: other cost seconds (a 64x64 compress took 5-25 s with two threads, 4.7 s with one, beside two other
#: jobs on 2 cores). Outputs do not depend on the thread count.
SMALL_IMAGE_PIXELS = 256 * 256
EXIT_FAILED = 2  # as for any documented error
EXIT_INTERRUPTED = 130


@dataclass
class Job:
    """One input, where its outputs go, and (several inputs) why it cannot run."""

    input: Path
    output: Path
    reconstruction: Path | None = None  # compress --save-reconstruction
    error: Exception | None = None


@dataclass
class Done:
    """What one job did, for the summary line."""

    bytes: int  # of the .cdf file, written or read
    pixels: int


#: suffixes that make ``-o`` a file name, refused as the folder of several inputs
FILE_SUFFIXES = frozenset({".cdf", ".png", ".jpg", ".jpeg", ".webp", ".avif", ".bmp", ".gif", ".tif", ".tiff",
                           ".ppm", ".pgm"})


def output_folder(path: Path) -> Path:
    """``-o`` for several inputs: a folder, created if missing (its parent must exist)."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; with several inputs, -o names a folder")
    if not path.exists() and path.suffix.lower() in FILE_SUFFIXES:
        raise NotADirectoryError(f"-o {path}: with several inputs, -o names a folder, and {path.name} is a file "
                                 f"name; give a folder (e.g. -o {path.with_suffix('')}/) or one input")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{parent}: no such folder for the output folder {path}")
    path.mkdir(exist_ok=True)
    return path


def output_paths(inputs: list[Path], output: Path | None, beside: Callable[[Path], Path], suffix: str) -> list[Path]:
    """Each input's output: ``output`` itself for one input; for several, ``output`` is a folder
    holding ``STEM + suffix`` per input; without ``output``, ``beside(input)``."""
    if output is None:
        return [beside(path) for path in inputs]
    if len(inputs) == 1:
        return [output]
    folder = output_folder(output)
    return [folder / (path.stem + suffix) for path in inputs]


def check_input(path: Path, kind: str) -> None:
    """The input must be an existing file (``kind`` names what it should be, for the message)."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not {kind}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")


def check_jobs(jobs: list[Job], kind: str, protected: list[Path], force: bool) -> None:
    """Check every input and output before any work. With one job an error is raised; with
    several it is recorded in ``job.error`` and reported when the job's turn comes."""
    inputs = [job.input for job in jobs]
    claimed: dict[Path, Path] = {}
    for job in jobs:
        try:
            check_input(job.input, kind)
            for path in (job.output, job.reconstruction):
                if path is None:
                    continue
                check_output(path, [*inputs, *protected], force)
                key = path.resolve()
                if key in claimed:
                    raise FileExistsError(f"{path} would be written for both {claimed[key]} and {job.input}; "
                                          "give inputs distinct names")
                claimed[key] = job.input
        except OSError as exc:
            if len(jobs) == 1:
                raise
            job.error = exc


def run_jobs(command: str, jobs: list[Job], work: Callable[[Job, str], Done]) -> int:
    """``work(job, label)`` for every job; the exit status.

    One job: its errors propagate (the command line prints them), a documented error's message naming
    the input. Several: any error of a job, unexpected ones included, is printed with the input's name
    (:func:`describe`) and the next job runs; a summary line follows, and the status is
    :data:`EXIT_FAILED` if any job failed.
    """
    if len(jobs) == 1:
        try:
            work(jobs[0], jobs[0].input.name)
        except CorrDiffError as exc:
            exc.args = (describe(exc, jobs[0].input),)
            raise
        return 0
    start, done, failed = time.perf_counter(), [], 0
    try:
        for number, job in enumerate(jobs, 1):
            try:
                if job.error is not None:
                    raise job.error
                done.append(work(job, f"[{number}/{len(jobs)}] {job.input.name}"))
            except Exception as exc:  # noqa: BLE001 - one file's failure, whatever it is, must not stop the others
                failed += 1
                print(f"corrdiff {command}: error: {describe(exc, job.input)}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print(f"corrdiff {command}: interrupted after {len(done)} of {len(jobs)} files; those outputs are complete, "
              "no partial file written", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary(command, len(jobs), failed, done, time.perf_counter() - start))
    return EXIT_FAILED if failed else 0


def describe(exc: Exception, path: Path) -> str:
    """The message of a job's error, naming its input ``path`` unless it already does. An error that is
    not a documented one (:class:`CorrDiffError`, ``OSError``) is a bug: its type is named too."""
    text = str(exc)
    if not isinstance(exc, (CorrDiffError, OSError)):
        text = f"unexpected {type(exc).__name__}: {text} (a bug in corrdiff: please report it with this file)"
    return text if str(path) in text else f"{path}: {text}"


def summary(command: str, total: int, failed: int, done: list[Done], seconds: float) -> str:
    """``compressed 3 of 4 files (1 failed): 1234 bytes, 0.3012 bpp overall, 12.3 s``."""
    text = f"{command}ed {len(done)} of {total} files" + (f" ({failed} failed)" if failed else "")
    size, pixels = sum(d.bytes for d in done), sum(d.pixels for d in done)
    if pixels:
        text += f": {size} bytes, {8 * size / pixels:.4f} bpp overall"
    return f"{text}, {seconds:.1f} s"


@contextmanager
def step_progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """An ``on_step(done, steps)`` callback for the codec that draws a tqdm bar of sampling steps on
    stderr once the image has taken :data:`PROGRESS_DELAY_S` seconds; None when stderr is no terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="step", leave=False, delay=PROGRESS_DELAY_S, file=sys.stderr, dynamic_ncols=True)

    def on_step(done: int, steps: int) -> None:
        bar.total = steps
        bar.update(done - bar.n)

    try:
        yield on_step
    finally:
        bar.close()


def coding_threads(pixels: int, requested: int | None, default: int) -> int:
    """Threads for coding an image: ``requested`` (--threads) if given, else 1 for a small image
    (:data:`SMALL_IMAGE_PIXELS`) and ``default`` for a larger one: :func:`corrdiff.threads.default_threads`
    taken when the command starts (later the load average counts the command's own work)."""
    if requested is not None:
        return requested
    return 1 if pixels <= SMALL_IMAGE_PIXELS else default


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """``torch.set_num_threads(count)`` for the block (None: leave it), restored afterwards."""
    if count is None:
        yield
        return
    if count < 1:
        raise ValueError(f"--threads must be >= 1, got {count}")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
