"""Rate, PSNR and texture statistics of CorrDiff models on the held-out crops (real bytes, eval mode).

    python experiments/learned_base/compare_codecs.py runs/learned_base/a.pt runs/learned_base/b.pt
    python experiments/learned_base/compare_codecs.py variable-v1 runs/learned_base/variable_codec.pt \
        --qualities 1,2,3,4,5,6,7,8,9 --json experiments/learned_base/logs/variable_codec_heldout.json
    python experiments/learned_base/compare_codecs.py variable-v1 runs/learned_base/variable_steps/step-*.pt \
        --qualities 1,2,3,4,5,6,7,8,9 --images data/corpus/train --every 3   # the curve against steps
    python experiments/learned_base/compare_codecs.py variable runs/variable_rate/score.pt --mode corrected \
        --qualities 1,3,5,7,9 --images data/corpus/train --every 3   # score networks on one frozen codec

For each model (a file or a packaged name): the mean bpp (whole files; ``--mode e2e``, the default: the base codec
alone; ``corrected`` or ``diffusion``: the sampled decodes at the model's steps) and, of the decodes of
data/default_model/heldout (never trained on; ``--images`` for other folders), the mean PSNR and the mean band-pass
distance to the original (texture statistics, lower is better; :func:`corrdiff.metrics.bandpass_distance`).
Models with one codec and different score networks write the same bytes at a quality: their decodes compare at
equal bpp exactly.

* A fixed-rate model against a first model's curve: its PSNR minus the curve's at its bpp (linear in ln bpp).
* Fixed-rate models (one point each): each model's bits at the first model's PSNR are estimated along an
  assumed slope of 6.02 dB per doubling of the rate (high-rate theory; learned codecs at low rates are flatter,
  so the estimate is rough and says so).
* Variable-rate models with ``--qualities``: one point per quality, and against the first model's curve the
  Bjøntegaard deltas (corrdiff/plotting.py): BD-PSNR over ``--window`` (bpp, default 0.1-0.4) and BD-rate over
  the curves' overlap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from corrdiff.image_io import find_images, load_image, to_uint8
from corrdiff.metrics import bandpass_distance, psnr
from corrdiff.model_io import load_model
from corrdiff.plotting import bd_metric, bd_rate

SLOPE_DB_PER_DOUBLING = 6.02  # high-rate theory: 1 bit per sample more, 6 dB more
HELDOUT = "data/default_model/heldout"


def photos(folders: list[str], every: int = 1) -> list[np.ndarray]:
    """Every ``every``-th image of ``folders`` (sorted), read once for all the models."""
    return [load_image(path) for path in [path for folder in folders for path in find_images(folder)][::every]]


def rd_curve(model: str, qualities: list[float] | None, images: list[np.ndarray],
             mode: str = "e2e") -> dict[str, list[float]]:
    """Mean bpp, PSNR and band-pass distance of the ``mode`` decodes of ``images``, per quality (one point: the
    model's own rate). The encoder's reconstruction is the decode (encoding.EncodeResult)."""
    codec = load_model(model)
    points = qualities if qualities and codec.rate_control is not None else [None]
    curve: dict[str, list[float]] = {"quality": [], "bpp": [], "psnr": [], "bandpass": []}
    for quality in points:
        results = [codec.encode(rgb, mode=mode, quality=quality) for rgb in images]
        decodes = [to_uint8(r.reconstruction) for r in results]
        curve["quality"].append(quality if quality is not None else float("nan"))
        curve["bpp"].append(float(np.mean([r.bpp() for r in results])))
        curve["psnr"].append(float(np.mean([psnr(rgb, out) for rgb, out in zip(images, decodes)])))
        curve["bandpass"].append(float(np.mean([bandpass_distance(rgb, out) for rgb, out in zip(images, decodes)])))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--qualities", type=lambda s: [float(q) for q in s.split(",")], default=None,
                        help="qualities of variable-rate models (comma-separated)")
    parser.add_argument("--window", type=lambda s: tuple(float(b) for b in s.split(",")), default=(0.1, 0.4),
                        help="bpp range of the BD-PSNR (low,high)")
    parser.add_argument("--images", nargs="+", default=[HELDOUT],
                        help="image folders (default: the held-out crops; training photos for a curve against "
                             "training steps, which the held-out crops must not steer)")
    parser.add_argument("--every", type=int, default=1, help="every k-th image of the folders (sorted)")
    parser.add_argument("--mode", choices=("e2e", "corrected", "diffusion"), default="e2e",
                        help="the decode measured (default e2e: the base codec alone)")
    parser.add_argument("--json", type=Path, default=None, help="write the curves and deltas here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = photos(args.images, args.every)
    curves = {model: rd_curve(model, args.qualities, images, args.mode) for model in args.models}
    reference, *_ = curves.values()
    report = {"images": args.images, "every": args.every, "mode": args.mode, "window_bpp": list(args.window),
              "models": {}}
    for model, curve in curves.items():
        for q, bpp, value, texture in zip(curve["quality"], curve["bpp"], curve["psnr"], curve["bandpass"]):
            print(f"{model} quality {q:g}: {bpp:.4f} bpp, {value:.2f} dB, band-pass distance {texture:.4f}")
        entry = dict(curve)
        if len(curve["bpp"]) > 1 and len(reference["bpp"]) > 1:
            entry["bd_psnr_db"] = bd_metric(reference["bpp"], reference["psnr"], curve["bpp"], curve["psnr"],
                                            rate_range=args.window)
            entry["bd_rate_percent"] = bd_rate(reference["bpp"], reference["psnr"], curve["bpp"], curve["psnr"])
            print(f"{model} against {args.models[0]}: BD-PSNR {entry['bd_psnr_db']:+.3f} dB over "
                  f"{args.window[0]}-{args.window[1]} bpp, BD-rate {entry['bd_rate_percent']:+.2f}% (overlap)")
        elif len(reference["bpp"]) > 1:  # one point against a curve: PSNR gap at its bpp (linear in ln bpp)
            at_bpp = float(np.interp(np.log(curve["bpp"][0]), np.log(reference["bpp"]), reference["psnr"]))
            entry["psnr_gap_at_its_bpp_db"] = curve["psnr"][0] - at_bpp
            print(f"{model}: {entry['psnr_gap_at_its_bpp_db']:+.2f} dB against {args.models[0]} at its bpp")
        else:  # one point each: bits at the first model's PSNR, moving along a curve of the assumed slope
            at_equal_psnr = curve["bpp"][0] * 2 ** ((reference["psnr"][0] - curve["psnr"][0]) / SLOPE_DB_PER_DOUBLING)
            entry["bits_at_reference_psnr_percent"] = 100 * (at_equal_psnr / reference["bpp"][0] - 1)
            print(f"{model}: at the first model's PSNR about {at_equal_psnr:.4f} bpp "
                  f"({entry['bits_at_reference_psnr_percent']:+.1f}% bits; slope {SLOPE_DB_PER_DOUBLING} dB per "
                  "doubling assumed)")
        report["models"][model] = entry
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
