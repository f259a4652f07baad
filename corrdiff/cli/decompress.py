"""``corrdiff decompress``: .cdf files to PNG images (one model load for all of them), optionally as
another mode or with scaled gammas, and the line each file prints; a plain ``.avif`` file is decoded by the
AVIF-base model (``--strength``, docs/avif_base.md). A folder stands for the ``.cdf`` and ``.avif`` files below
it (:func:`corrdiff.cli.batch.expand_folders`)."""

from __future__ import annotations

import argparse
import time

from corrdiff.bitstream import DECODE_MODES, unpack
from corrdiff.avif_container import is_avif_file
from corrdiff.cli.errors import UsageError
from corrdiff.cli.loading import FileModels, decompress_model_files
from corrdiff.errors import CorrDiffError
from corrdiff.threads import default_threads

#: decode modes that use no gammas, so that --gamma-scale has nothing to scale
MODES_WITHOUT_GAMMAS = tuple(name for name, mode in DECODE_MODES.items() if not mode.corrects)
#: the files that a folder given to decompress stands for
DECODED_SUFFIXES = (".cdf", ".avif")


def decompress_command(args: argparse.Namespace) -> int:
    from corrdiff.cli.batch import Job, check_jobs, expand_folders, output_paths, run_jobs, torch_threads
    from corrdiff.correction import check_gamma_scale

    sources = expand_folders(args.input, DECODED_SUFFIXES, ".cdf or .avif files")
    outputs = output_paths(sources, args.output, lambda p: p.with_suffix(".decoded.png"), ".png")
    jobs = [Job(path, out) for (path, _), out in zip(sources, outputs)]
    check_jobs(jobs, "a .cdf file", decompress_model_files(args.model), args.force)
    try:
        check_gamma_scale(args.gamma_scale)  # before loading the model
    except ValueError as exc:
        raise UsageError(f"--gamma-scale: {exc}") from None
    if not 0.0 <= args.strength <= 1.0:
        raise UsageError(f"--strength must be in [0, 1] (1: diffusion only, 0: the AVIF decode), got {args.strength}")
    if args.gamma_scale != 1.0 and args.mode in MODES_WITHOUT_GAMMAS:
        raise UsageError(f"--gamma-scale scales the gammas of a corrected decode, and --mode {args.mode} uses none; "
                         "drop --gamma-scale, or use --mode corrected")
    machine_threads = default_threads()
    with torch_threads(args.threads or 1):  # loading is many small operations
        models = FileModels(args.model, args.device, jobs)
    return run_jobs("decompress", jobs,
                    lambda job, label: _decompress_one(models, args, machine_threads, job, label))


def _decompress_one(models: FileModels, args: argparse.Namespace, machine_threads: int, job, label: str):
    """Decode one .cdf file with its model, write its PNG, print its line."""
    from corrdiff.cli.batch import Done, coding_threads, step_progress, torch_threads
    from corrdiff.image_io import save_image, to_uint8

    data = job.input.read_bytes()
    if is_avif_file(data):
        return _decode_avif_one(models, args, machine_threads, job, label, data)
    header = unpack(data)  # the image size, for the thread count (a damaged file stops here, as decoding would)
    with torch_threads(args.threads or 1):  # loading is many small operations
        codec = models.for_file(job.input, header.fingerprint)
    if args.gamma_scale != 1.0 and args.mode is None and header.mode in MODES_WITHOUT_GAMMAS:
        raise CorrDiffError(f"{job.input} was coded in mode {header.mode}, without gammas: --gamma-scale does not "
                            "apply to it; drop --gamma-scale for this file")
    threads = coding_threads(header.height * header.width, args.threads, machine_threads)
    start = time.perf_counter()
    with torch_threads(threads), step_progress(label) as on_step:
        image = codec.decompress(header, mode=args.mode, gamma_scale=args.gamma_scale, on_step=on_step)  # parsed once
    seconds = time.perf_counter() - start
    rgb = to_uint8(image)
    if header.gray:  # gray in, gray out: a one-channel PNG
        rgb = rgb[..., 0]
    save_image(job.output, rgb, overwrite=args.force)
    print(f"{job.input} -> {job.output}: {rgb.shape[1]}x{rgb.shape[0]}, {seconds:.2f} s", flush=True)
    return Done(len(data), rgb.shape[0] * rgb.shape[1])


def _decode_avif_one(models: FileModels, args: argparse.Namespace, machine_threads: int, job, label: str,
                     data: bytes):
    """Decode a plain AVIF file with the AVIF-base model (``--model`` or the packaged ``avif``), write its PNG."""
    from corrdiff.avif_container import whole_file_size
    from corrdiff.cli.batch import Done, coding_threads, step_progress, torch_threads
    from corrdiff.image_io import save_image, to_uint8

    if args.mode is not None or args.gamma_scale != 1.0:
        raise CorrDiffError(f"{job.input} is a plain AVIF file, without gammas or modes: drop --mode and "
                            "--gamma-scale (--strength sets how far the decode goes from the AVIF decode)")
    width, height = whole_file_size(data)
    with torch_threads(args.threads or 1):
        codec = models.for_avif()
    threads = coding_threads(height * width, args.threads, machine_threads)
    start = time.perf_counter()
    with torch_threads(threads), step_progress(label) as on_step:
        image = codec.decompress_avif(data, strength=args.strength, on_step=on_step)
    seconds = time.perf_counter() - start
    rgb = to_uint8(image)
    save_image(job.output, rgb, overwrite=args.force)
    print(f"{job.input} -> {job.output}: {width}x{height}, AVIF decoded with diffusion (strength {args.strength:g}), "
          f"{seconds:.2f} s", flush=True)
    return Done(len(data), height * width)
