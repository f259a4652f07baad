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
import os
import signal
import sys
import threading
import time
from pathlib import Path

LIGHTNING_COMMANDS = {
    "fit": "train a model (phase 1 ScoreTraining or phase 2 JointTraining) from a YAML config",
    "validate": "run the validation loop of a config/checkpoint",
    "test": "run the test loop (metrics over a dataset, DDP-aware)",
}
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

    p = sub.add_parser("compress", help="compress an image (PNG/JPEG/WebP/...) to a .cdf file")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, help="output file (default: INPUT with suffix .cdf)")
    p.add_argument("--model", default="default", help="model file, or a packaged model name (default: default)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's, 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (stored in the file)")
    p.add_argument("--mode", choices=("corrected", "diffusion", "e2e"), default="corrected")
    p.add_argument("--sampler", default=None, help="sampler name (ddim, ddim_quadratic, ddpm); default: the model's")
    p.add_argument("--eta", type=float, default=None, help="DDIM eta in [0, 1] (default 0)")
    p.add_argument("--save-reconstruction", type=Path, default=None, metavar="PNG",
                   help="also write the reconstruction the decoder will produce (identical to decompress's)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("decompress", help="decode a .cdf file to a PNG image")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path,
                   help="output PNG (default: INPUT with suffix .decoded.png, so a photo.png beside photo.cdf is kept)")
    p.add_argument("--model", default="default", help="model file, or a packaged model name (default: default)")
    p.add_argument("--mode", choices=("corrected", "diffusion", "e2e"), default=None,
                   help="decode as another mode for ablations (default: the file's)")
    p.add_argument("--gamma-scale", type=float, default=1.0,
                   help="scale s in [0, 1] of the received gammas: 1 = as encoded (most faithful), "
                        "0 = plain diffusion (most texture); between: a perception-distortion trade-off")
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
    p.add_argument("--half", action="store_true", help="store network weights as float16 (half the size)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")

    p = sub.add_parser("eval", help="evaluate models and JPEG/WebP baselines on a folder of images "
                       "(per-image CSV + CompressAI-style JSON per method)")
    p.add_argument("data_dir", type=Path, help="folder of images (searched recursively)")
    p.add_argument("--model", action="append", default=None,
                   help="model file or packaged name; repeat for several RD points (default: default)")
    p.add_argument("--modes", default="corrected,diffusion,e2e", help="CorrDiff modes, comma-separated")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--same-file", action="store_true",
                   help="decode every mode from the 'corrected' file (default: one file per mode)")
    p.add_argument("--out", type=Path, default=Path("corrdiff-eval"), help="output folder (default: corrdiff-eval)")
    p.add_argument("--baselines", default=None,
                   help="classical codecs, comma-separated, or 'none' (default: every one Pillow writes)")
    p.add_argument("--qualities", default=",".join(map(str, (5, 10, 20, 30, 50, 75, 90))),
                   help="fixed baseline qualities (default: %(default)s)")
    p.add_argument("--no-matched", action="store_true", help="skip the bpp-matched baselines")
    p.add_argument("--metrics", default="all",
                   help="comma-separated subset of psnr-rgb,ms-ssim-rgb,hf-ratio,colour-error,haarpsi,gmsd,lpips-alex,"
                        "lpips-vgg,dists,fid,kid (default: all)")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="folder with the LPIPS/DISTS/FID weight files (default: torch hub's cache only)")
    p.add_argument("--name", default="CorrDiff", help="method name in the JSON files and plots")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--save-images", action="store_true", help="also write every reconstruction as PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-f", "--force", action="store_true", help="overwrite results in --out")
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("plot", help="RD curves of result JSON files; --bd-rate prints a BD-rate table")
    p.add_argument("results", type=Path, nargs="+",
                   help="result JSON files (ours or CompressAI's; an eval index.json stands for all its methods)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="image to write (default: rd.png, or none with --bd-rate)")
    p.add_argument("-m", "--metric", action="append", default=None,
                   help="metric(s) to plot / tabulate; repeat or comma-separate (default: all in the files)")
    p.add_argument("--bd-rate", action="store_true", help="print BD-rate (%%) of every file against the first")
    p.add_argument("--title", default=None)

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
                   help="torch threads, here and in the measuring processes (default: torch's default)")
    p.add_argument("--skip", default=None,
                   help="sections to skip, comma-separated: codecs,peers,breakdown,flops,training,gamma")
    p.add_argument("--profile-size", default=None,
                   help="size of the decode breakdown, FLOP/s and gamma sections (default: 768x512)")
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    p.add_argument("--quick", action="store_true",
                   help="seconds instead of minutes: tiny untrained model and sizes, one run (for tests)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing --json file")
    return parser


def _export(args: argparse.Namespace) -> None:
    from corrdiff.image_io import check_output
    from corrdiff.model_io import export_checkpoint

    check_output(args.output, [args.checkpoint], args.force)
    codec = export_checkpoint(args.checkpoint, args.output, half=args.half, overwrite=args.force)
    size = args.output.stat().st_size
    print(f"{args.checkpoint} -> {args.output}: {size / 1e6:.2f} MB, fingerprint {codec.fingerprint().hex()}")


def _compress(args: argparse.Namespace) -> None:
    from corrdiff.image_io import atomic_write, check_output, load_image, save_image
    from corrdiff.metrics import ms_ssim, psnr, to_uint8
    from corrdiff.model_io import load_model

    model_path = _model_path(args.model)
    output = check_output(args.output or args.input.with_suffix(".cdf"), [args.input, model_path], args.force)
    if args.save_reconstruction is not None:
        if args.save_reconstruction.resolve() == output.resolve():
            raise UsageError(f"--save-reconstruction {args.save_reconstruction} is the .cdf output itself; choose another file")
        check_output(args.save_reconstruction, [args.input, model_path], args.force)
    rgb = load_image(args.input)
    codec = load_model(args.model, map_location=args.device)
    sampler = None
    if args.sampler or args.eta is not None:
        sampler = dict(codec.config["sampler"])
        if args.sampler:
            sampler = {"name": args.sampler}
        if args.eta is not None:
            sampler["eta"] = args.eta
    start = time.perf_counter()
    try:
        result = codec.encode(rgb, steps=args.steps, seed=args.seed, mode=args.mode, sampler=sampler)
    except ValueError as exc:  # option values the codec rejects (steps, eta, seed, sampler)
        raise UsageError(str(exc)) from None
    seconds = time.perf_counter() - start
    data, decoded = result.data, to_uint8(result.reconstruction)
    atomic_write(output, data, overwrite=args.force)
    if args.save_reconstruction is not None:
        save_image(args.save_reconstruction, decoded, overwrite=args.force)
    h, w = rgb.shape[:2]
    print(f"{args.input} -> {output}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp, {w}x{h}, "
          f"PSNR {psnr(rgb, decoded):.2f} dB, MS-SSIM {ms_ssim(rgb, decoded):.4f}, {seconds:.2f} s")


def _decompress(args: argparse.Namespace) -> None:
    from corrdiff.codec import check_gamma_scale
    from corrdiff.image_io import check_output, save_image
    from corrdiff.model_io import load_model

    output = check_output(args.output or args.input.with_suffix(".decoded.png"), [args.input, _model_path(args.model)],
                          args.force)
    try:
        check_gamma_scale(args.gamma_scale)  # before loading the model
    except ValueError as exc:
        raise UsageError(f"--gamma-scale: {exc}") from None
    if args.input.is_dir():
        raise IsADirectoryError(f"{args.input}: is a directory, not a .cdf file")
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


def _model_path(model: str) -> Path:
    """The file behind ``--model``: a packaged model's asset, or the path given."""
    from corrdiff.model_io import model_path

    return model_path(model)


def _demo(args: argparse.Namespace) -> None:
    from corrdiff.demo import run_demo

    run_demo(model=args.model, image=args.image, out=args.out, steps=args.steps, seed=args.seed)


def _eval(args: argparse.Namespace) -> None:
    from corrdiff.evaluation import run_eval

    try:
        run_eval(
            args.data_dir, models=args.model or ["default"], out=args.out, modes=args.modes, steps=args.steps,
            seed=args.seed, same_file=args.same_file, baselines=args.baselines, qualities=args.qualities,
            matched=not args.no_matched, metrics=args.metrics, weights_dir=args.weights_dir, name=args.name,
            limit=args.limit, save_images=args.save_images, device=args.device, force=args.force,
            progress=not args.no_progress,
        )
    except ValueError as exc:  # option values rejected before any work
        raise UsageError(str(exc)) from None


def _plot(args: argparse.Namespace) -> None:
    from corrdiff.plotting import bd_rate_table, expand_paths, load_results, plot_rd

    metrics = [m.strip() for item in (args.metric or []) for m in item.split(",") if m.strip()] or None
    try:
        files = [load_results(path) for path in expand_paths(args.results)]
        if args.bd_rate:
            print(bd_rate_table(files, metrics))
        if args.output or not args.bd_rate:
            output = plot_rd(files, args.output or Path("rd.png"), metrics, title=args.title)
            print(f"wrote {output}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _bench(args: argparse.Namespace) -> None:
    import json

    from corrdiff.benchmark import (BenchSettings, parse_size, parse_sizes, parse_skip, quick_settings,
                                    run_benchmark)
    from corrdiff.image_io import atomic_write, check_output

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
    from corrdiff.image_io import committed_outputs

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
        from corrdiff.image_io import committed_outputs

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
        COMMANDS[args.command](args)
    except (CorrDiffError, UsageError, UnknownComponentError, OSError) as exc:
        # OSError: missing file, directory, permission denied, disk full, ... (atomic writes leave nothing behind)
        print(f"corrdiff {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    except MemoryError:
        print(f"corrdiff {args.command}: error: out of memory", file=sys.stderr)
        return EXIT_USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
