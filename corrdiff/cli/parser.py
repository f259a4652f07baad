"""The ``corrdiff`` argument parser: every subcommand and its options (the Lightning commands are listed for
``--help`` only; their own parser is LightningCLI's)."""

from __future__ import annotations

import argparse
from pathlib import Path

from corrdiff.bitstream import DECODE_MODES
from corrdiff.cli.loading import DEFAULT_MODEL
from corrdiff.cli.options import (DEVICE_HELP, VARIABLE_QUALITIES, add_device_and_threads, add_rate_arguments,
                                  add_sampler_argument, positive_int)
from corrdiff.metric_names import ALL_METRICS
from corrdiff.threads import DEFAULT_THREADS_RULE
from corrdiff.weights import OFFLINE_ENV

LIGHTNING_COMMANDS = {
    "fit": "train a model from a YAML config (ScoreTraining, JointTraining, AdversarialTraining, BaseScoreTraining, "
           "RateDistortionTraining; docs/training.md); corrdiff fit --help lists its options",
    "validate": "run the validation loop of a config/checkpoint over data.val_dirs (no train_dirs needed)",
    "test": "run the test loop of a config and --ckpt_path: metrics over data.test_dirs (default val_dirs; "
            "no train_dirs needed; DDP-aware; docs/training.md)",
}


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("input", type=Path, nargs="+",
                   help="image file(s) or folders (every image below, recursively); several share one model load")
    p.add_argument("-o", "--output", type=Path,
                   help="output file (default: INPUT with suffix .cdf, beside it); with several inputs or a folder, a "
                        "folder (created if missing) that receives NAME.cdf, mirroring the input folder's layout")
    p.add_argument("--model", default=None,
                   help=f"model file, or a packaged model name (default: {DEFAULT_MODEL}, CorrDiff on an AVIF base; the "
                        "learned models: default, smooth, variable; variable-v1, the first variable, decodes its files)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own: 2 for avif, 4 for default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (stored in the file)")
    p.add_argument("--mode", choices=tuple(DECODE_MODES), default="corrected",
                   help="corrected: diffusion steered by the sent gammas (default); diffusion: no gammas "
                        "(most texture); e2e: the end-to-end decoder only, no sampling (fastest)")
    add_sampler_argument(p)
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
    add_rate_arguments(p)
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    add_device_and_threads(p)

    p = sub.add_parser("decompress", help="decode .cdf files (and plain .avif files) to PNG images")
    p.add_argument("input", type=Path, nargs="+",
                   help=".cdf file(s), plain .avif files (decoded by the AVIF-base model, --model avif: diffusion "
                        "drawn over the AVIF decode), or folders of them (recursively); several share one model load")
    p.add_argument("-o", "--output", type=Path,
                   help="output PNG (default: INPUT with suffix .decoded.png, so a photo.png beside photo.cdf is "
                        "kept); with several inputs or a folder, a folder (created if missing) that receives NAME.png, "
                        "mirroring the input folder's layout")
    p.add_argument("--model", default=None,
                   help="model file, or a packaged model name (default: the packaged model the file was coded with)")
    p.add_argument("--mode", choices=tuple(DECODE_MODES), default=None,
                   help="decode as another mode for ablations (default: the file's)")
    p.add_argument("--gamma-scale", type=float, default=1.0,
                   help="scale s in [0, 1] of the received gammas: 1 = as encoded (most faithful), "
                        "0 = plain diffusion (most texture); between: a perception-distortion trade-off")
    p.add_argument("--strength", type=float, default=1.0, metavar="S",
                   help="plain .avif inputs only: how far the decode goes from the AVIF decode towards the diffusion "
                        "model's, in [0, 1] (1, the default: diffusion only, most texture; 0: the AVIF decode itself)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    add_device_and_threads(p)

    p = sub.add_parser("demo", help="compress a bundled photo with the packaged model; compare with AVIF, WebP and JPEG "
                                            "at the same file size")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model file, or a packaged model name (default: {DEFAULT_MODEL})")
    p.add_argument("--image", default=None, help="another photo to use instead of the bundled one")
    p.add_argument("--out", default="corrdiff-demo", help="output folder (default: corrdiff-demo)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own: 2 for avif, 4 for default)")
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
                   help="model file or packaged name; repeat for several RD points (default: default); fixed-rate "
                        "models form one curve per mode, a variable-rate model a curve of its own")
    low, high = VARIABLE_QUALITIES
    p.add_argument("--quality", default=None, metavar="Q[,Q...]",
                   help=f"qualities of the variable-rate models, comma-separated, e.g. 1,3,5,7,9 ([{low}, {high}] for "
                        "--model variable): one RD point each (default: each model's default quality)")
    p.add_argument("--modes", default=",".join(DECODE_MODES), help="CorrDiff modes, comma-separated")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    add_sampler_argument(p)
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
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help=f"CPU threads for torch, and at most as many threads coding the baselines (default: "
                        f"{DEFAULT_THREADS_RULE})")

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
    add_sampler_argument(p)
    p.add_argument("--skip", default=None,
                   help="sections to skip, comma-separated: codecs,peers,breakdown,flops,training,gamma")
    p.add_argument("--profile-size", default=None,
                   help="size of the decode breakdown, FLOP/s and gamma sections (default: 768x512)")
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    p.add_argument("--quick", action="store_true",
                   help="seconds instead of minutes: tiny untrained model and sizes, one run (for tests)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing --json file")
    return parser
