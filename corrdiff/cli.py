"""The ``corrdiff`` command line.

Training and evaluation loops (``fit``, ``validate``, ``test``) are Lightning's
LightningCLI (``corrdiff fit --config experiments/....yaml``); the file tools
(``compress``, ``decompress``, ``export``) are plain argparse. A documented error
(:class:`~corrdiff.errors.CorrDiffError`, a missing file, a refused overwrite) prints
one line to stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

LIGHTNING_COMMANDS = {
    "fit": "train a model (phase 1 ScoreTraining or phase 2 JointTraining) from a YAML config",
    "validate": "run the validation loop of a config/checkpoint",
    "test": "run the test loop (metrics over a dataset, DDP-aware)",
}
EXIT_USAGE_ERROR = 2


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

    p = sub.add_parser("compress", help="compress an image (PNG/JPEG/WebP/...) to a .cdf file")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, help="output file (default: INPUT with suffix .cdf)")
    p.add_argument("--model", default="default", help="model file, or a packaged model name (default: default)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's, 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (stored in the file)")
    p.add_argument("--mode", choices=("corrected", "diffusion", "e2e"), default="corrected")
    p.add_argument("--sampler", default=None, help="sampler name (ddim, ddpm); default: the model's")
    p.add_argument("--eta", type=float, default=None, help="DDIM eta in [0, 1] (default 0)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("decompress", help="decode a .cdf file to a PNG image")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, help="output PNG (default: INPUT with suffix .png)")
    p.add_argument("--model", default="default", help="model file, or a packaged model name (default: default)")
    p.add_argument("--mode", choices=("corrected", "diffusion", "e2e"), default=None,
                   help="decode as another mode for ablations (default: the file's)")
    p.add_argument("--gamma-scale", type=float, default=1.0,
                   help="scale s of the received gammas: 1 = as encoded, 0 = plain diffusion")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("demo", help="compress a bundled photo with the packaged model; compare with JPEG")
    p.add_argument("--model", default="default", help="model file, or a packaged model name (default: default)")
    p.add_argument("--image", default=None, help="another photo to use instead of the bundled one")
    p.add_argument("--out", default="corrdiff-demo", help="output folder (default: corrdiff-demo)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("export", help="turn a training checkpoint into a slim model file for compress/decompress")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="model file to write (e.g. model.pt)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    return parser


def _export(args: argparse.Namespace) -> None:
    from corrdiff.model_io import export_checkpoint

    if args.output.exists() and not args.force:
        raise FileExistsError(f"{args.output} exists; pass --force to overwrite")
    codec = export_checkpoint(args.checkpoint, args.output)
    size = args.output.stat().st_size
    print(f"{args.checkpoint} -> {args.output}: {size / 1e6:.2f} MB, fingerprint {codec.fingerprint().hex()}")


def _compress(args: argparse.Namespace) -> None:
    import torch

    from corrdiff.image_io import atomic_write, load_image
    from corrdiff.model_io import load_model

    output = args.output or args.input.with_suffix(".cdf")
    if output.exists() and not args.force:
        raise FileExistsError(f"{output} exists; pass --force to overwrite")
    rgb = load_image(args.input)
    codec = load_model(args.model, map_location=args.device)
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255
    sampler = None
    if args.sampler or args.eta is not None:
        sampler = dict(codec.config["sampler"])
        if args.sampler:
            sampler = {"name": args.sampler}
        if args.eta is not None:
            sampler["eta"] = args.eta
    start = time.perf_counter()
    try:
        data = codec.compress(image, steps=args.steps, seed=args.seed, mode=args.mode, sampler=sampler)
    except ValueError as exc:  # option values the codec rejects (steps, eta, seed, sampler)
        raise UsageError(str(exc)) from None
    seconds = time.perf_counter() - start
    atomic_write(output, data, overwrite=args.force)
    h, w = rgb.shape[:2]
    print(f"{args.input} -> {output}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp, {w}x{h}, {seconds:.2f} s")


def _decompress(args: argparse.Namespace) -> None:
    from corrdiff.image_io import save_image
    from corrdiff.model_io import load_model

    output = args.output or args.input.with_suffix(".png")
    if output.exists() and not args.force:
        raise FileExistsError(f"{output} exists; pass --force to overwrite")
    if not args.input.is_file():
        raise FileNotFoundError(f"{args.input}: no such file")
    data = args.input.read_bytes()
    codec = load_model(args.model, map_location=args.device)
    start = time.perf_counter()
    image = codec.decompress(data, mode=args.mode, gamma_scale=args.gamma_scale)
    seconds = time.perf_counter() - start
    rgb = (image[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()
    save_image(output, rgb, overwrite=args.force)
    print(f"{args.input} -> {output}: {rgb.shape[1]}x{rgb.shape[0]}, {seconds:.2f} s")


def _demo(args: argparse.Namespace) -> None:
    from corrdiff.demo import run_demo

    run_demo(model=args.model, image=args.image, out=args.out, steps=args.steps, seed=args.seed)


COMMANDS = {"compress": _compress, "decompress": _decompress, "export": _export, "demo": _demo}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from corrdiff.training.cli import run_lightning_cli

        run_lightning_cli(argv)
        return 0
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_USAGE_ERROR
    from corrdiff.errors import CorrDiffError

    from corrdiff.registry import UnknownComponentError

    try:
        COMMANDS[args.command](args)
    except (CorrDiffError, UsageError, UnknownComponentError, FileExistsError, FileNotFoundError, IsADirectoryError,
            PermissionError) as exc:
        print(f"corrdiff {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
