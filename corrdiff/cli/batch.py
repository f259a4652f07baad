"""``corrdiff compress`` / ``decompress`` over one or many files: output paths, per-file errors,
progress, threads. The command line (:mod:`corrdiff.cli`) wires these to the codec.

* One input behaves as it always did: ``-o`` names the output file and any error ends the command
  (one line, exit status 2).
* Several inputs share one model load. ``-o`` names a folder (created if missing) that receives
  ``NAME.cdf`` (compress) or ``NAME.png`` (decompress); without ``-o`` each output goes beside its
  input.
* A folder stands for every file below it that the command reads (:func:`expand_folders`: images for
  compress, as ``corrdiff eval`` finds them; ``.cdf`` and ``.avif`` files for decompress): it counts as
  several inputs, and under ``-o`` the outputs mirror the folder's layout (``photos/trip/a.png`` ->
  ``OUT/trip/a.cdf``). Every output passes :func:`corrdiff.image_io.check_output` (never an input of the command,
  nor the model file; existing files need ``--force``), and two inputs may not claim one output; an
  ``-o`` with a file's suffix (``.cdf``, ``.png``, ...) is refused. An input that fails, whatever the
  error, prints it with the input's name and the others go on; a summary line ends the run, and the
  exit status is 2 if any input failed.
* On a terminal, an image that takes more than :data:`PROGRESS_DELAY_S` seconds shows a progress bar
  of its sampling steps (tqdm, on stderr); elsewhere (a log, a pipe) a plain line every
  :data:`PLAIN_PROGRESS_S` seconds, so that a long run never looks hung.
* Ctrl-C ends the run with the one line of :func:`corrdiff.cli.entry.main`, which names the outputs that
  were completed.
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

from corrdiff.cli.errors import EXIT_USAGE_ERROR
from corrdiff.errors import CorrDiffError
from corrdiff.image_io import check_output, find_images

#: seconds an image runs before its progress bar appears (quick images show none)
PROGRESS_DELAY_S = 2.0
#: without a terminal, seconds between plain progress lines (and before the first: quick images print none)
PLAIN_PROGRESS_S = 5.0
#: without --threads, images up to this many pixels are coded on one thread (and models load on one):
#: their operations are too small to gain from more, and on a busy machine threads that wait for each
#: other cost seconds (a 64x64 compress took 5-25 s with two threads, 4.7 s with one, beside two other
#: jobs on 2 cores). Outputs do not depend on the thread count.
SMALL_IMAGE_PIXELS = 256 * 256


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


def expand_folders(paths: list[Path], suffixes: tuple[str, ...], what: str) -> list[tuple[Path, Path | None]]:
    """Each input file with its path under the folder it was found in: a folder given stands for every file
    below it with one of ``suffixes`` (``what`` names them), sorted (:func:`corrdiff.image_io.find_images`);
    any other path for itself, with None. FileNotFoundError for a folder without any."""
    sources: list[tuple[Path, Path | None]] = []
    for path in paths:
        if not path.is_dir():
            sources.append((path, None))
            continue
        found = find_images(path, suffixes)
        if not found:
            raise FileNotFoundError(f"{path}: no {what} in this folder or below")
        sources += [(file, file.relative_to(path)) for file in found]
    return sources


def output_paths(sources: list[tuple[Path, Path | None]], output: Path | None, beside: Callable[[Path], Path],
                 suffix: str) -> list[Path]:
    """Each input's output (``sources`` from :func:`expand_folders`): ``output`` itself for one file given;
    else ``output`` is a folder holding ``STEM + suffix`` per file given and the same path under it, with
    ``suffix``, per file found in a folder (subfolders created); without ``output``, ``beside(input)``."""
    if output is None:
        return [beside(path) for path, _ in sources]
    if len(sources) == 1 and sources[0][1] is None:
        return [output]
    folder = output_folder(output)
    paths = [folder / (found.with_suffix(suffix) if found is not None else path.stem + suffix)
             for path, found in sources]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    return paths


def folder_holding(path: Path, inputs: list[Path]) -> Path | None:
    """The input folder that ``path`` is or lies in, if any (a later run on that folder would read what is
    written there)."""
    target = path.resolve()
    for folder in inputs:
        if folder.is_dir() and (target == folder.resolve() or folder.resolve() in target.parents):
            return folder
    return None


def check_input(path: Path, kind: str) -> None:
    """The input must be an existing file (``kind`` names what it should be, for the message)."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not {kind}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")


def check_jobs(jobs: list[Job], kind: str, protected: list[Path], force: bool,
               refuse: Callable[[Path], None] | None = None) -> None:
    """Check every input and output before any work (``refuse(input)`` raises for an input the command
    does not take, e.g. a .cdf given to compress). With one job an error is raised; with several it is
    recorded in ``job.error`` and reported when the job's turn comes."""
    inputs = [job.input for job in jobs]
    claimed: dict[Path, Path] = {}
    for job in jobs:
        try:
            check_input(job.input, kind)
            if refuse is not None:
                refuse(job.input)
            for path in (job.output, job.reconstruction):
                if path is None:
                    continue
                check_output(path, [*inputs, *protected], force)
                key = path.resolve()
                if key in claimed:
                    raise FileExistsError(f"{path} would be written for both {claimed[key]} and {job.input}; "
                                          "give inputs distinct names")
                claimed[key] = job.input
        except (OSError, CorrDiffError) as exc:
            if len(jobs) == 1:
                raise
            job.error = exc


def run_jobs(command: str, jobs: list[Job], work: Callable[[Job, str], Done]) -> int:
    """``work(job, label)`` for every job; the exit status.

    One job: its errors propagate (the command line prints them), a documented error's message naming
    the input. Several: any error of a job, unexpected ones included, is printed with the input's name
    (:func:`describe`) and the next job runs; a summary line follows, and the status is
    :data:`~corrdiff.cli.errors.EXIT_USAGE_ERROR` (any documented error's) if any job failed. Ctrl-C is
    left to :func:`corrdiff.cli.entry.main`, whose one line names the outputs completed before it.
    """
    if len(jobs) == 1:
        try:
            work(jobs[0], jobs[0].input.name)
        except CorrDiffError as exc:
            exc.args = (describe(exc, jobs[0].input),)
            raise
        return 0
    start, done, failed = time.perf_counter(), [], 0
    for number, job in enumerate(jobs, 1):
        try:
            if job.error is not None:
                raise job.error
            done.append(work(job, f"[{number}/{len(jobs)}] {job.input.name}"))
        except Exception as exc:  # noqa: BLE001 - one file's failure, whatever it is, must not stop the others
            failed += 1
            print(f"corrdiff {command}: error: {describe(exc, job.input)}", file=sys.stderr, flush=True)
    print(summary(command, len(jobs), failed, done, time.perf_counter() - start))
    return EXIT_USAGE_ERROR if failed else 0


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
def step_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """An ``on_step(done, steps)`` callback for the codec that draws a tqdm bar of sampling steps on
    stderr once the image has taken :data:`PROGRESS_DELAY_S` seconds; when stderr is no terminal (a bar
    would fill a log with carriage returns), :func:`plain_progress`'s lines instead."""
    if not sys.stderr.isatty():
        yield plain_progress(label)
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


def plain_progress(label: str, clock: Callable[[], float] = time.monotonic) -> Callable[[int, int], None]:
    """An ``on_step(done, steps)`` callback that prints ``LABEL: step 3/8, 12 s`` on stderr once the image
    has taken :data:`PLAIN_PROGRESS_S` seconds, then at most once per that many seconds."""
    start = last = clock()

    def on_step(done: int, steps: int) -> None:
        nonlocal last
        now = clock()
        if now - last >= PLAIN_PROGRESS_S:
            last = now
            print(f"{label}: step {done}/{steps}, {now - start:.0f} s", file=sys.stderr, flush=True)

    return on_step


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
