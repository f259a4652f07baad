"""``corrdiff compress``: images to .cdf files (one model load for all of them), and the line each file
prints (size, bpp, PSNR, MS-SSIM, time; the quality and what ``granularity=auto`` chose, when they apply).
A folder stands for every image below it (:func:`corrdiff.cli.batch.expand_folders`); without ``-o`` each .cdf
goes beside its image, as for a file given. Where the result is not what a user may think they asked for,
a line on stderr says so: a rate target out of the model's reach, a quality whose decodes lose colour."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from corrdiff import bitstream
from corrdiff.cli.compress_options import check_gamma, check_rate, gamma_options, sampler_option
from corrdiff.cli.errors import UsageError
from corrdiff.cli.loading import compress_model, load_for, model_path
from corrdiff.errors import CorrDiffError, ImageReadError
from corrdiff.threads import default_threads

#: qualities below this one of a learned variable-rate model decode with blocks on the latent's grid and mottled
#: colour (the packaged ``variable`` at qualities 1-3, docs/variable_rate.md); an AVIF base's are AVIF's own
LOW_QUALITY = 3


def compress_command(args: argparse.Namespace) -> int:
    from corrdiff.cli.batch import Job, check_jobs, expand_folders, folder_holding, output_paths, run_jobs, torch_threads
    from corrdiff.image_io import IMAGE_SUFFIXES

    args.model = compress_model(args)
    model_file = model_path(args.model)
    sources = expand_folders(args.input, IMAGE_SUFFIXES, "image files")
    folder = folder_holding(args.save_reconstruction, args.input) if args.save_reconstruction is not None else None
    if folder is not None:  # its PNG files would be compressed, and their reconstructions nested, next time
        raise UsageError(f"--save-reconstruction {args.save_reconstruction} is inside the input folder {folder}, "
                         f"where the next `corrdiff compress {folder}` would read its images as inputs; "
                         "choose a folder outside it")
    outputs = output_paths(sources, args.output, lambda p: p.with_suffix(".cdf"), ".cdf")
    recons = [None] * len(sources)
    if args.save_reconstruction is not None:
        if len(sources) == 1 and args.save_reconstruction.resolve() == outputs[0].resolve():
            raise UsageError(f"--save-reconstruction {args.save_reconstruction} is the .cdf output itself; "
                             "choose another file")
        recons = output_paths(sources, args.save_reconstruction, lambda p: p, ".png")
    gamma = gamma_options(args.gamma, args.sharpen)
    jobs = [Job(path, out, rec) for (path, _), out, rec in zip(sources, outputs, recons)]
    check_jobs(jobs, "an image", [model_file], args.force, refuse=_refuse_corrdiff_file)
    machine_threads = default_threads()
    with torch_threads(args.threads or 1):  # loading is many small operations
        codec = load_for(jobs, args.model, args.device)
    check_gamma(codec, gamma)
    check_rate(codec, args)
    _warn_untrained(codec, args.model, args.mode)
    if codec is not None:
        _warn_low_quality(codec, args.quality, "--quality")
    sampler = sampler_option(codec, args) if codec is not None else None
    return run_jobs("compress", jobs,
                    lambda job, label: _compress_one(codec, args, sampler, gamma, machine_threads, job,
                                                     label))


def _compress_one(codec, args: argparse.Namespace, sampler: dict | None, gamma: dict, machine_threads: int,
                  job, label: str):
    """Encode one image, write its .cdf (and reconstruction), print its line."""
    from corrdiff.cli.batch import Done, coding_threads, step_progress, torch_threads
    from corrdiff.files import atomic_write
    from corrdiff.image_io import save_image, to_uint8

    rgb = _load_image_with_notes(job.input)
    threads = coding_threads(rgb.shape[0] * rgb.shape[1], args.threads, machine_threads)
    start = time.perf_counter()
    try:
        with torch_threads(threads), step_progress(label) as on_step:
            result = codec.encode(rgb, steps=args.steps, seed=args.seed, mode=args.mode, sampler=sampler,
                                  gamma=gamma, on_step=on_step, quality=args.quality, bpp=args.bpp,
                                  max_bytes=args.size)
    except CorrDiffError:  # this image's own failure (e.g. a --size it cannot fit): the batch goes on
        raise
    except ValueError as exc:  # option values the codec rejects (steps, eta, seed, sampler, gamma, quality)
        raise UsageError(str(exc)) from None
    seconds = time.perf_counter() - start
    data, decoded = result.data, to_uint8(result.reconstruction)
    h, w = rgb.shape[:2]
    line = (f"{job.input} -> {job.output}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp, {w}x{h}, "
            f"{quality_figures(rgb, decoded)}, {seconds:.2f} s")  # before writing: a failure leaves no file
    quality = result.quality  # the encoder's own record: the file is not parsed again
    if quality is not None:
        line += f", quality {quality:.3g}"
    if codec.correction.replace(gamma).granularity == "auto" and result.gamma_steps:
        line += f", {auto_choice(result.gamma_steps)}"
    atomic_write(job.output, data, overwrite=args.force)
    if job.reconstruction is not None:
        save_image(job.reconstruction, decoded, overwrite=args.force)
    print(line, flush=True)
    if args.size is not None or args.bpp is not None:  # a quality the search chose
        _note_target_out_of_reach(codec, args, job.input, len(data), h * w, quality)
        _warn_low_quality(codec, quality, f"{job.input}: the chosen quality")
    return Done(len(data), h * w)


def _refuse_corrdiff_file(path: Path) -> None:
    """A .cdf file given to compress is a slip for decompress: say so, rather than "not a readable image"."""
    with path.open("rb") as file:
        corrdiff_file = path.suffix.lower() == ".cdf" or file.read(len(bitstream.MAGIC)) == bitstream.MAGIC
    if corrdiff_file:
        raise ImageReadError(f"{path} is a corrdiff file: use corrdiff decompress")


def _note_target_out_of_reach(codec, args: argparse.Namespace, path: Path, size: int, pixels: int,
                              quality: float) -> None:
    """One stderr note when --size or --bpp asked for more bytes than the highest quality gives (or --bpp for
    fewer than the lowest): the search then writes that quality's file, which would otherwise go unexplained."""
    goal = args.size if args.size is not None else args.bpp * pixels / 8
    asked = f"--size {args.size} bytes" if args.size is not None else f"--bpp {args.bpp:g}"
    low, high = codec.quality_range
    if quality >= high and size < goal:
        end = "highest"
    elif quality <= low and size > goal:  # (--size refuses such an image: RateTargetError)
        end = "lowest"
    else:
        return
    print(f"corrdiff compress: note: {path}: {asked} is out of this model's reach: wrote its {end} quality "
          f"({quality:g}), {size} bytes, {8 * size / pixels:.4f} bpp", file=sys.stderr, flush=True)


def _warn_low_quality(codec, quality: float | None, what: str) -> None:
    """One stderr line when a learned variable-rate model codes below :data:`LOW_QUALITY` (not an AVIF base,
    ``codec.base``, whose qualities are AVIF's)."""
    if quality is None or codec.quality_range is None or codec.base is not None or quality >= LOW_QUALITY:
        return
    print(f"corrdiff compress: warning: {what} {quality:.3g} is below {LOW_QUALITY}, where this model's decodes show "
          f"blocks and shifted colours (docs/variable_rate.md); use quality {LOW_QUALITY} or more for photographs",
          file=sys.stderr, flush=True)


def _load_image_with_notes(path: Path):
    """:func:`~corrdiff.image_io.load_image`, its warnings (an alpha channel dropped) printed as one
    ``corrdiff compress: note: ...`` line each on stderr instead of Python's warning with a source line."""
    import warnings

    from corrdiff.image_io import load_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rgb = load_image(path)
    for warning in caught:
        print(f"corrdiff compress: note: {warning.message}", file=sys.stderr, flush=True)
    return rgb


def quality_figures(reference, decoded) -> str:
    """``PSNR 31.20 dB, MS-SSIM 0.9712`` of a reconstruction, for the per-file line. MS-SSIM needs
    sides of :data:`MS_SSIM_MIN_SIDE` pixels (its 11-pixel window, reflection-padded); smaller images
    print ``MS-SSIM n/a`` (docs/reliability.md, "Any image size")."""
    from corrdiff.metrics import ms_ssim, psnr

    text = f"PSNR {psnr(reference, decoded):.2f} dB"
    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return f"{text}, MS-SSIM n/a (sides under {MS_SSIM_MIN_SIDE} pixels)"
    return f"{text}, MS-SSIM {ms_ssim(reference, decoded):.4f}"


#: the smallest image side MS-SSIM is defined for: its window reaches 5 pixels each way, and reflection
#: padding by 5 needs 6 pixels (corrdiff.losses.distortion.SSIM_WINDOW = 11)
MS_SSIM_MIN_SIDE = 6


def auto_choice(steps) -> str:
    """What ``granularity=auto`` chose over the sampling steps: ``auto chose scalar x7, tile-128 x1``."""
    from collections import Counter

    from corrdiff.correction import step_granularity

    counts = Counter(step_granularity(step).spec for step in steps)
    return "auto chose " + ", ".join(f"{spec} x{count}" for spec, count in counts.items())


def _warn_untrained(codec, model: str, mode: str) -> None:
    """One stderr line when ``mode`` uses the end-to-end decoder of a model that never trained it
    (an export of a phase-1 checkpoint: its metadata lists the decoder as untrained)."""
    if mode in ("corrected", "e2e") and "decoder" in getattr(codec, "metadata", {}).get("untrained", []):
        print(f"corrdiff compress: warning: {model} is a phase-1 export: its end-to-end decoder was never trained, "
              f"and mode {mode!r} uses it; train phase 2 (JointTraining) on it, or pass --mode diffusion",
              file=sys.stderr)
