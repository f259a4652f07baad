"""The ``corrdiff`` command line.

Training and evaluation loops (``fit``, ``validate``, ``test``) are Lightning's
LightningCLI (``corrdiff fit --config experiments/....yaml``); the file tools
(``compress``, ``decompress``, ``export``) are plain argparse. A documented error
(:class:`~corrdiff.errors.CorrDiffError`, a missing file, a refused overwrite) prints
one line to stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from corrdiff import bitstream
from corrdiff.bitstream import DECODE_MODES
from corrdiff.errors import CorrDiffError
from corrdiff.metric_names import ALL_METRICS
from corrdiff.threads import DEFAULT_THREADS_RULE, default_threads
from corrdiff.weights import OFFLINE_ENV

LIGHTNING_COMMANDS = {
    "fit": "train a model (phase 1 ScoreTraining or phase 2 JointTraining) from a YAML config",
    "validate": "run the validation loop of a config/checkpoint",
    "test": "run the test loop (metrics over a dataset, DDP-aware)",
}
DEVICE_HELP = "where the networks run: cpu (default), cuda, cuda:N or mps"
EXIT_USAGE_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report an interrupted command


class UsageError(Exception):
    """An option value the codec rejects; reported like any other documented error."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corrdiff",
        description="CorrDiff: diffusion image compression corrected by a privileged end-to-end decoder.",
    )
    from corrdiff import __version__

    parser.add_argument("--version", action="version", version=f"corrdiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)

    p = sub.add_parser("compress", help="compress images (PNG/JPEG/WebP/...) to .cdf files")
    p.add_argument("input", type=Path, nargs="+", help="image file(s); several share one model load")
    p.add_argument("-o", "--output", type=Path,
                   help="output file (default: INPUT with suffix .cdf); with several inputs, a folder "
                        "(created if missing) that receives NAME.cdf")
    p.add_argument("--model", default="default", help="model file, or a packaged model name (default: default)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own, 4 for the shipped model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (stored in the file)")
    p.add_argument("--mode", choices=tuple(DECODE_MODES), default="corrected",
                   help="corrected: diffusion steered by the sent gammas (default); diffusion: no gammas "
                        "(most texture); e2e: the end-to-end decoder only, no sampling (fastest)")
    _sampler_argument(p)
    p.add_argument("--eta", type=float, default=None, help="DDIM eta in [0, 1] (default 0); short for --sampler NAME,eta=ETA")
    p.add_argument("--save-reconstruction", type=Path, default=None, metavar="PNG",
                   help="also write the reconstruction the decoder will produce (identical to decompress's); "
                        "with several inputs, a folder that receives NAME.png")
    p.add_argument("--gamma", action="append", default=[], metavar="KEY=VALUE",
                   help="how the encoder chooses the gammas (repeatable), e.g. granularity=auto (rate-distortion "
                        "choice of scalar, channel or tile maps), granularity=tile-64, solver=gradient, rho=0.5, "
                        "perceptual=hf, rate_weight=0.016, candidates=scalar,tile-128 (docs/gamma.md)")
    p.add_argument("--sharpen", type=float, default=None, metavar="RHO",
                   help="trade fidelity for sharpness at encode time without LPIPS weights: gammas minimise "
                        "MSE + RHO * (missing high-frequency energy), as smooth 128-pixel maps so that detail goes "
                        "where the original has texture; e.g. 1 (mild) to 3 (strong; grain on some images). Same as "
                        "--gamma solver=gradient --gamma perceptual=hf --gamma rho=RHO --gamma granularity=tile-128-linear "
                        "(a --gamma granularity=... given too wins)")
    _rate_arguments(p)
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    _device_and_threads(p)

    p = sub.add_parser("decompress", help="decode .cdf files to PNG images")
    p.add_argument("input", type=Path, nargs="+", help=".cdf file(s); several share one model load")
    p.add_argument("-o", "--output", type=Path,
                   help="output PNG (default: INPUT with suffix .decoded.png, so a photo.png beside photo.cdf is "
                        "kept); with several inputs, a folder (created if missing) that receives NAME.png")
    p.add_argument("--model", default="default", help="model file, or a packaged model name (default: default)")
    p.add_argument("--mode", choices=tuple(DECODE_MODES), default=None,
                   help="decode as another mode for ablations (default: the file's)")
    p.add_argument("--gamma-scale", type=float, default=1.0,
                   help="scale s in [0, 1] of the received gammas: 1 = as encoded (most faithful), "
                        "0 = plain diffusion (most texture); between: a perception-distortion trade-off")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    _device_and_threads(p)

    p = sub.add_parser("demo", help="compress a bundled photo with the packaged model; compare with JPEG")
    p.add_argument("--model", default="default", help="model file, or a packaged model name (default: default)")
    p.add_argument("--image", default=None, help="another photo to use instead of the bundled one")
    p.add_argument("--out", default="corrdiff-demo", help="output folder (default: corrdiff-demo)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own, 4 for the shipped model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (default: 0)")
    p.add_argument("-f", "--force", action="store_true", help="replace the files of an earlier demo in --out")

    p = sub.add_parser("export", help="turn a training checkpoint into a slim model file for compress/decompress")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="model file to write (e.g. model.pt)")
    p.add_argument("--half", action="store_true", help="store network weights as float16 (half the size)")
    p.add_argument("--steps", type=int, default=None,
                   help="the model's default sampling steps (default: the checkpoint's config)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")

    p = sub.add_parser("eval", help="evaluate models and JPEG/WebP baselines on a folder of images "
                       "(per-image CSV + CompressAI-style JSON per method)")
    p.add_argument("data_dir", type=Path, help="folder of images (searched recursively)")
    p.add_argument("--model", action="append", default=None,
                   help="model file or packaged name; repeat for several RD points (default: default)")
    p.add_argument("--modes", default=",".join(DECODE_MODES), help="CorrDiff modes, comma-separated")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    _sampler_argument(p)
    p.add_argument("--same-file", action="store_true",
                   help="decode every mode from the 'corrected' file (default: one file per mode)")
    p.add_argument("--out", type=Path, default=Path("corrdiff-eval"), help="output folder (default: corrdiff-eval)")
    p.add_argument("--baselines", default=None,
                   help="classical codecs, comma-separated, or 'none' (default: every one Pillow writes)")
    p.add_argument("--qualities", default=",".join(map(str, (5, 10, 20, 30, 50, 75, 90))),
                   help="fixed baseline qualities (default: %(default)s)")
    p.add_argument("--no-matched", action="store_true", help="skip the bpp-matched baselines")
    p.add_argument("--metrics", default="all",
                   help=f"comma-separated subset of {','.join(ALL_METRICS)} (default: all)")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="folder with the LPIPS/DISTS/FID weight files (default: torch hub's cache, where "
                        "missing ones are downloaded)")
    p.add_argument("--offline", action="store_true",
                   help=f"never download weight files (also with the environment variable {OFFLINE_ENV}=1): "
                        "metrics whose files are missing are skipped")
    p.add_argument("--name", default="CorrDiff", help="method name in the JSON files and plots")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--save-images", action="store_true", help="also write every reconstruction as PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-f", "--force", action="store_true", help="overwrite results in --out")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help=f"CPU threads for torch (default: {DEFAULT_THREADS_RULE})")

    p = sub.add_parser("plot", help="RD curves of result JSON files; --bd-rate prints a BD-rate table")
    p.add_argument("results", type=Path, nargs="+",
                   help="result JSON files (ours or CompressAI's; an eval index.json stands for all its methods)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="image to write (default: rd.png, or none with --bd-rate)")
    p.add_argument("-m", "--metric", action="append", default=None,
                   help="metric(s) to plot / tabulate; repeat or comma-separate (default: all in the files)")
    p.add_argument("--bd-rate", action="store_true", help="print BD-rate (%%) of every file against the first")
    p.add_argument("--title", default=None)
    p.add_argument("--full-range", action="store_true",
                   help="show every point (default: the bpp axis fits CorrDiff's points, baselines are clipped)")

    p = sub.add_parser("bench", help="benchmark: encode/decode time and memory vs size and peers, decode "
                       "profile, FLOP/s, training steps, gamma solvers (docs/benchmarks.md)")
    p.add_argument("--model", default=None,
                   help="model file, packaged name, or preset:NAME (untrained; times only) "
                        "(default: default; with --quick: preset:tiny)")
    p.add_argument("--sizes", default=None,
                   help="image sizes WIDTHxHEIGHT, comma-separated "
                        "(default: 256x256,768x512,1920x1080,3840x2160)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per size (default: 3 up to 768x512 pixels, 1 above)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads, here and in the measuring processes "
                        f"(default: {DEFAULT_THREADS_RULE})")
    _sampler_argument(p)
    p.add_argument("--skip", default=None,
                   help="sections to skip, comma-separated: codecs,peers,breakdown,flops,training,gamma")
    p.add_argument("--profile-size", default=None,
                   help="size of the decode breakdown, FLOP/s and gamma sections (default: 768x512)")
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    p.add_argument("--quick", action="store_true",
                   help="seconds instead of minutes: tiny untrained model and sizes, one run (for tests)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing --json file")
    return parser


def _device_and_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help=DEVICE_HELP)
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help="CPU threads for torch (default: one for images up to 256x256 pixels, "
                             f"else {DEFAULT_THREADS_RULE})")


#: The quality range of the shipped variable-rate model, for --help without loading it (another model's range is
#: named by the error a quality outside it gives; tests/test_variable_rate.py pins this against the shipped file).
VARIABLE_QUALITIES = (1, 9)


def _rate_arguments(parser: argparse.ArgumentParser) -> None:
    """--quality, --bpp and --size: the rate of a variable-rate model (docs/variable_rate.md)."""
    low, high = VARIABLE_QUALITIES
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quality", type=float, default=None, metavar="Q",
                       help=f"rate of a variable-rate model, [{low}, {high}] for --model variable (fractions too; "
                            "higher: more bytes, more detail; default: the model's middle quality)")
    group.add_argument("--bpp", type=_positive_float, default=None, metavar="X",
                       help="a variable-rate model's quality whose file comes closest to X bits per pixel")
    group.add_argument("--size", type=parse_size, default=None, metavar="N[K|KB|B]",
                       help="a variable-rate model's largest quality whose file fits in N bytes (K, KB: 1000 bytes; "
                            "KiB: 1024); an error if even the lowest quality does not fit")


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2}


def parse_size(text: str) -> int:
    """Bytes of ``20KB``, ``20k``, ``1.5MB``, ``800``, ``800B``, ``16KiB`` (K, KB: 1000 bytes; KiB: 1024)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a file size: use e.g. 20KB, 20K, 16KiB, 1.5MB or 800B")
    size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"a file size must be at least 1 byte, got {text!r}")
    return size


def _check_rate(codec, args: argparse.Namespace) -> None:
    """UsageError, before any image, for --quality/--bpp/--size with a fixed-rate model or a quality out of range."""
    given = [f"--{name}" for name in ("quality", "bpp", "size") if getattr(args, name) is not None]
    if codec is None or not given:
        return
    if codec.quality_range is None:
        raise UsageError(f"{given[0]} needs a variable-rate model (e.g. --model variable); {args.model} codes at one "
                         "fixed rate")
    if args.quality is not None:
        try:
            codec.rate_condition(args.quality)
        except ValueError as exc:
            raise UsageError(f"--quality: {exc}") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _sampler_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sampler", type=_sampler_spec, default=None, metavar="NAME[,KEY=VALUE...]",
                        help="sampler and its recorded parameters, e.g. ddim_quadratic or ddim,eta=0.5 "
                             "(ddim, ddim_quadratic, ddpm); default: the model's")


def _sampler_spec(text: str) -> dict:
    from corrdiff.sampling import parse_sampler_spec

    try:
        return parse_sampler_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _export(args: argparse.Namespace) -> None:
    from corrdiff.image_io import check_output
    from corrdiff.model_io import export_checkpoint

    check_output(args.output, [args.checkpoint], args.force)
    codec = export_checkpoint(args.checkpoint, args.output, half=args.half, overwrite=args.force, steps=args.steps)
    size = args.output.stat().st_size
    print(f"{args.checkpoint} -> {args.output}: {size / 1e6:.2f} MB, fingerprint {codec.fingerprint().hex()}")


def _compress(args: argparse.Namespace) -> int:
    from corrdiff.batch import Job, check_jobs, output_paths, run_jobs, torch_threads

    model_path = _model_path(args.model)
    outputs = output_paths(args.input, args.output, lambda p: p.with_suffix(".cdf"), ".cdf")
    recons = [None] * len(args.input)
    if args.save_reconstruction is not None:
        if len(args.input) == 1 and args.save_reconstruction.resolve() == outputs[0].resolve():
            raise UsageError(f"--save-reconstruction {args.save_reconstruction} is the .cdf output itself; "
                             "choose another file")
        recons = output_paths(args.input, args.save_reconstruction, lambda p: p, ".png")
    gamma = _gamma_options(args.gamma, args.sharpen)
    jobs = [Job(path, out, rec) for path, out, rec in zip(args.input, outputs, recons)]
    check_jobs(jobs, "an image", [model_path], args.force)
    machine_threads = default_threads()
    with torch_threads(args.threads or 1):  # loading is many small operations
        codec = _load_for(jobs, args.model, args.device)
    _check_gamma(codec, gamma)
    _check_rate(codec, args)
    _warn_untrained(codec, args.model, args.mode)
    sampler = _sampler_option(codec, args) if codec is not None else None
    return run_jobs("compress", jobs,
                    lambda job, label: _compress_one(codec, args, sampler, gamma, machine_threads, job,
                                                     label))


def _compress_one(codec, args: argparse.Namespace, sampler: dict | None, gamma: dict, machine_threads: int,
                  job, label: str):
    """Encode one image, write its .cdf (and reconstruction), print its line."""
    from corrdiff.batch import Done, coding_threads, step_progress, torch_threads
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
    quality = bitstream.unpack(data).quality
    if quality is not None:
        line += f", quality {quality:.3g}"
    if codec.correction.replace(gamma).granularity == "auto" and result.gamma_steps:
        line += f", {auto_choice(result.gamma_steps)}"
    atomic_write(job.output, data, overwrite=args.force)
    if job.reconstruction is not None:
        save_image(job.reconstruction, decoded, overwrite=args.force)
    print(line, flush=True)
    return Done(len(data), h * w)


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


def _sampler_option(codec, args: argparse.Namespace) -> dict | None:
    """The sampler that --sampler / --eta ask for (None: the model's)."""
    if args.sampler is None and args.eta is None:
        return None
    sampler = dict(args.sampler or codec.config["sampler"])
    if args.eta is not None:
        if args.sampler is not None and args.sampler.get("eta", args.eta) != args.eta:
            raise UsageError(f"--eta {args.eta} contradicts --sampler ...,eta={args.sampler['eta']}; give one")
        sampler["eta"] = args.eta
    return sampler


def _load_for(jobs: list, model: str, device: str):
    """The model, loaded once for all jobs (not at all when every job has already failed)."""
    from corrdiff.model_io import load_model

    return load_model(model, map_location=device) if any(job.error is None for job in jobs) else None


def _decompress(args: argparse.Namespace) -> int:
    from corrdiff.batch import Job, check_jobs, output_paths, run_jobs, torch_threads
    from corrdiff.correction import check_gamma_scale

    outputs = output_paths(args.input, args.output, lambda p: p.with_suffix(".decoded.png"), ".png")
    jobs = [Job(path, out) for path, out in zip(args.input, outputs)]
    check_jobs(jobs, "a .cdf file", [_model_path(args.model)], args.force)
    try:
        check_gamma_scale(args.gamma_scale)  # before loading the model
    except ValueError as exc:
        raise UsageError(f"--gamma-scale: {exc}") from None
    if args.gamma_scale != 1.0 and args.mode in MODES_WITHOUT_GAMMAS:
        raise UsageError(f"--gamma-scale scales the gammas of a corrected decode, and --mode {args.mode} uses none; "
                         "drop --gamma-scale, or use --mode corrected")
    machine_threads = default_threads()
    with torch_threads(args.threads or 1):  # loading is many small operations
        codec = _load_for(jobs, args.model, args.device)
    return run_jobs("decompress", jobs,
                    lambda job, label: _decompress_one(codec, args, machine_threads, job, label))


def _decompress_one(codec, args: argparse.Namespace, machine_threads: int, job, label: str):
    """Decode one .cdf file, write its PNG, print its line."""
    from corrdiff.batch import Done, coding_threads, step_progress, torch_threads
    from corrdiff.bitstream import unpack
    from corrdiff.errors import CorrDiffError
    from corrdiff.image_io import save_image, to_uint8

    data = job.input.read_bytes()
    header = unpack(data)  # the image size, for the thread count (a damaged file stops here, as decoding would)
    if args.gamma_scale != 1.0 and args.mode is None and header.mode in MODES_WITHOUT_GAMMAS:
        raise CorrDiffError(f"{job.input} was coded in mode {header.mode}, without gammas: --gamma-scale does not "
                            "apply to it; drop --gamma-scale for this file")
    threads = coding_threads(header.height * header.width, args.threads, machine_threads)
    start = time.perf_counter()
    with torch_threads(threads), step_progress(label) as on_step:
        image = codec.decompress(data, mode=args.mode, gamma_scale=args.gamma_scale, on_step=on_step)
    seconds = time.perf_counter() - start
    rgb = to_uint8(image)
    if header.gray:  # gray in, gray out: a one-channel PNG
        rgb = rgb[..., 0]
    save_image(job.output, rgb, overwrite=args.force)
    print(f"{job.input} -> {job.output}: {rgb.shape[1]}x{rgb.shape[0]}, {seconds:.2f} s", flush=True)
    return Done(len(data), rgb.shape[0] * rgb.shape[1])


# --sharpen's gamma maps: on the held-out crops, rho = 3 with these maps reached hf-ratio 0.263 at 28.39 dB against
# 28.45 dB at 0.245 with a scalar gamma, and they keep flat regions clean (docs/gamma.md)
SHARPEN_GRANULARITY = "tile-128-linear"
#: decode modes that use no gammas, so that --gamma-scale has nothing to scale
MODES_WITHOUT_GAMMAS = tuple(name for name, mode in DECODE_MODES.items() if not mode.corrects)


def _gamma_options(pairs: list[str], sharpen: float | None) -> dict:
    """``--gamma KEY=VALUE`` pairs (values read as JSON numbers where they are numbers; ``candidates`` as a
    comma-separated list) and ``--sharpen RHO`` as overrides of the model's CorrectionConfig."""
    from corrdiff.correction import CorrectionConfig

    options: dict = {}
    if sharpen is not None:
        options.update(solver="gradient", perceptual={"name": "hf"}, rho=sharpen, granularity=SHARPEN_GRANULARITY)
        try:
            CorrectionConfig().replace(options)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--sharpen {sharpen:g}: {exc}; RHO is the sharpness weight, e.g. 1 (mild) to 3 "
                             "(strong)") from None
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--gamma {pair!r}: expected KEY=VALUE, e.g. granularity=auto")
        if key == "candidates":
            options[key] = [v for v in value.split(",") if v]
        elif key == "perceptual":
            options[key] = {"name": value}
        else:
            try:
                options[key] = json.loads(value)
            except json.JSONDecodeError:
                options[key] = value
    try:
        # names and values checked before the model loads; whether they fit together with the model's own
        # settings (e.g. rho > 0 with its solver) is checked once it is loaded (_check_gamma)
        CorrectionConfig().replace({"solver": "gradient", **options})
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--gamma: {exc}") from None
    return options


def _check_gamma(codec, options: dict) -> None:
    """UsageError unless the --gamma options fit the loaded model's own correction settings."""
    if codec is None or not options:
        return
    try:
        codec.correction.replace(options)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--gamma: {exc} (this model's settings: {codec.correction.stored()})") from None


def _model_path(model: str) -> Path:
    """The file behind ``--model``: a packaged model's asset, or the path given."""
    from corrdiff.model_io import model_path

    return model_path(model)


def _demo(args: argparse.Namespace) -> None:
    from corrdiff.demo import run_demo

    run_demo(model=args.model, image=args.image, out=args.out, steps=args.steps, seed=args.seed,
             force=args.force)


def _eval(args: argparse.Namespace) -> None:
    from corrdiff.batch import torch_threads
    from corrdiff.evaluation import run_eval

    try:
        with torch_threads(args.threads or default_threads()):
            run_eval(
                args.data_dir, models=args.model or ["default"], out=args.out, modes=args.modes,
                steps=args.steps, seed=args.seed, sampler=args.sampler, same_file=args.same_file,
                baselines=args.baselines, qualities=args.qualities, matched=not args.no_matched,
                metrics=args.metrics, weights_dir=args.weights_dir, offline=args.offline, name=args.name,
                limit=args.limit, save_images=args.save_images, device=args.device, force=args.force,
                progress=not args.no_progress,
            )
    except ValueError as exc:  # option values rejected before any work
        raise UsageError(str(exc)) from None


def _plot(args: argparse.Namespace) -> None:
    from corrdiff.plotting import (bd_rate_table, expand_paths, load_results, metrics_in, plot_rd,
                                   single_point_methods, single_point_note)

    metrics = [m.strip() for item in (args.metric or []) for m in item.split(",") if m.strip()] or None
    try:
        files = [load_results(path) for path in expand_paths(args.results)]
        if args.bd_rate:
            print(bd_rate_table(files, metrics))
        if args.output or not args.bd_rate:
            output = plot_rd(files, args.output or Path("rd.png"), metrics, title=args.title,
                             full_range=args.full_range)
            print(f"wrote {output}")
            single = single_point_methods(files, metrics or metrics_in(files))
            if single:
                print(f"note: {single_point_note(single)}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _bench(args: argparse.Namespace) -> None:
    import json

    from corrdiff.bench import (BenchSettings, parse_size, parse_sizes, parse_skip, quick_settings,
                                run_benchmark)
    from corrdiff.files import atomic_write
    from corrdiff.image_io import check_output

    if args.json is not None:  # refuse before minutes of work, not after
        check_output(args.json, [], args.force)
    try:
        options = {"skip": parse_skip(args.skip)}
        if args.model is not None:
            options["model"] = args.model
        if args.sizes is not None:
            options["sizes"] = parse_sizes(args.sizes)
        if args.profile_size is not None:
            options["profile_size"] = parse_size(args.profile_size)
        if args.sampler is not None:
            options["sampler"] = args.sampler
        for name in ("repeats", "threads"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
            if value is not None:
                options[name] = value
        settings = quick_settings(**options) if args.quick else BenchSettings(**options)
    except ValueError as exc:  # option values rejected before any work (sizes, sections, counts)
        raise UsageError(str(exc)) from None
    results = run_benchmark(settings, emit=lambda text: print(text, flush=True))  # BenchmarkError: exit 2
    if args.json is not None:
        atomic_write(args.json, json.dumps(results, indent=2).encode(), overwrite=args.force)
        print(f"wrote {args.json}")


COMMANDS = {"compress": _compress, "decompress": _decompress, "export": _export, "demo": _demo, "eval": _eval,
            "plot": _plot, "bench": _bench}


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised so that the command unwinds like on Ctrl-C (temporary files removed)."""


class _Signals:
    """SIGINT raises KeyboardInterrupt and SIGTERM/SIGHUP raise :class:`Terminated` while a command runs.

    Each signal is also recorded in :attr:`received`: CPython cannot raise from a handler that runs
    inside a callback (a weakref's, a ``__del__``, an import lock's), prints "Exception ignored" and
    goes on, so :func:`main` raises it again when the command returns (and such reports are
    silenced). Once :attr:`over` is set, signals are ignored: the command's status stands. Signals
    that are ignored already (SIG_IGN, e.g. SIGHUP under nohup) stay ignored; only the main thread
    handles any.
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


def _what_was_written(since: int) -> str:
    """The truth about outputs when a command is interrupted: those it completed, or none."""
    from corrdiff.files import committed_outputs

    done = [str(p) for p in committed_outputs[since:]]
    if not done:
        return "no output written"
    more = f" (+{len(done) - 3} more)" if len(done) > 3 else ""
    return f"wrote {', '.join(done[:3])}{more} before stopping; nothing else was written"


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
    since, signals = 0, _Signals()
    try:  # everything, imports included: a Ctrl-C at any point is one line and exit 130
        from corrdiff.files import committed_outputs

        since = len(committed_outputs)
        with signals.installed(restore=not entry):
            code = _run(argv)
            if signals.received:  # a signal whose exception a callback swallowed
                raise KeyboardInterrupt if signals.received[0] == signal.SIGINT else Terminated(signals.received[0])
            signals.over = True
            if entry:
                signals.ignore_from_now()
        return code
    except KeyboardInterrupt:
        signals.over = True
        print(f"corrdiff {name}: interrupted; {_what_was_written(since)}", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Terminated as exc:
        signals.over = True
        signum = exc.args[0]
        print(f"corrdiff {name}: terminated by {signal.Signals(signum).name}; {_what_was_written(since)}",
              file=sys.stderr)
        code = 128 + signum
    if entry:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(argv: list[str]) -> int:
    """Parse ``argv`` and run the file command: 0, or 2 with one line on stderr for a documented error."""
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_USAGE_ERROR
    from corrdiff.errors import CorrDiffError

    from corrdiff.registry import UnknownComponentError

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


if __name__ == "__main__":
    run()
