"""Option values and the option groups several commands share: what ``--size``, ``--threads``,
``--sampler``, ``--bpp`` accept (argparse types, so a bad value is a usage error before any work),
and the ``--device``/``--threads``, ``--sampler`` and ``--quality``/``--bpp``/``--size`` groups."""

from __future__ import annotations

import argparse
import re

from corrdiff.threads import DEFAULT_THREADS_RULE

DEVICE_HELP = "where the networks run: cpu (default), cuda, cuda:N or mps"

#: The quality range of the shipped variable-rate model, for --help without loading it (another model's range is
#: named by the error a quality outside it gives; tests/test_variable_rate.py pins this against the shipped file).
VARIABLE_QUALITIES = (1, 9)
#: The same for the shipped AVIF-base model (docs/avif_base.md; tests/test_avif_base.py pins them).
AVIF_QUALITIES = (0, 90)
AVIF_DEFAULT_QUALITY = 45


def add_device_and_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help=DEVICE_HELP)
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for torch (default: one for images up to 256x256 pixels, "
                             f"else {DEFAULT_THREADS_RULE})")


def add_rate_arguments(parser: argparse.ArgumentParser) -> None:
    """--quality, --bpp and --size: the rate of a variable-rate model (docs/variable_rate.md)."""
    low, high = VARIABLE_QUALITIES
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quality", type=float, default=None, metavar="Q",
                       help=f"rate of a variable-rate model, [{low}, {high}] for --model variable (fractions too; "
                            "higher: more bytes, more detail; default: the model's default quality, 6 for variable); "
                            f"AVIF's own integer quality for --model avif, [{AVIF_QUALITIES[0]}, {AVIF_QUALITIES[1]}] "
                            f"(default {AVIF_DEFAULT_QUALITY})")
    group.add_argument("--bpp", type=positive_float, default=None, metavar="X",
                       help="a variable-rate model's quality whose file comes closest to X bits per pixel")
    group.add_argument("--size", type=parse_size, default=None, metavar="N[K|KB|B]",
                       help="a variable-rate model's largest quality whose file fits in N bytes (K, KB: 1000 bytes; "
                            "KiB: 1024); an error if even the lowest quality does not fit")


def add_sampler_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sampler", type=sampler_spec, default=None, metavar="NAME[,KEY=VALUE...]",
                        help="sampler and its recorded parameters, e.g. ddim_quadratic or ddim,eta=0.5 "
                             "(ddim, ddim_quadratic, ddpm); default: the model's")


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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def sampler_spec(text: str) -> dict:
    from corrdiff.sampling import parse_sampler_spec

    try:
        return parse_sampler_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
