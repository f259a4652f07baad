"""Gamma maps and the sharpness objective (issue 15): what they buy, per bit and per second.

    python experiments/default_model/gamma_study.py data/default_model/heldout --out docs/gamma
    python experiments/default_model/gamma_study.py DIR --out runs/gamma-train --no-crops   # design set

For every image of ``DIR`` (all from one file per setting, the packaged model unless ``--model``):

* **granularity**: files encoded with scalar gammas (the paper's), ``auto`` (the rate-distortion
  choice), channel gammas and tile maps at every step; bpp from the file's bytes (gamma bytes
  included), PSNR, gamma bytes, encode time; and the PSNR gain at *equal file size*, the gain minus
  the bits' worth on the scalar rate-distortion curve (its local slope, from the ladder models
  ``--ladder`` encoded with scalar gammas on the same images);
* **sharpness**: the scalar file decoded with ``--gamma-scale`` s (the decode-time knob) against
  files encoded with the weight-free objective MSE + rho * hf (``perceptual: hf``) with scalar
  gammas and with smooth 128-pixel tile maps, PSNR and hf-ratio (and bpp: the maps cost bits);
* **time**: encode and decode of the scalar and auto files; ``--timing N`` instead times only the
  encodes of scalar, auto and tile-map files against the decode, N interleaved rounds (the issue's
  1.3x budget at 768x512).

Writes ``gamma_study.json``, ``gamma_study.md`` and (unless ``--no-crops``) ``crops.png``:
per image a 160x160 crop (the window of the original with the most Laplacian energy, chosen
without looking at any decode), shown 2x: original and the settings of :data:`CROP_PANELS`.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from corrdiff import bitstream
from corrdiff.demo import side_by_side
from corrdiff.image_io import load_image
from corrdiff.metrics import high_frequency_ratio, laplacian, psnr, to_tensor, to_uint8
from corrdiff.model_io import load_model
from corrdiff.image_io import find_images

GRANULARITIES = {"scalar": {}, "auto": {"granularity": "auto"}, "channel": {"granularity": "channel"},
                 "tile-128 (every step)": {"granularity": "tile-128"},
                 "tile-64-linear (every step)": {"granularity": "tile-64-linear"}}
SHARPEN = {"hf rho=1": ("scalar", 1.0), "hf rho=3": ("scalar", 3.0), "hf tile-128-linear rho=0.3": ("tile-128-linear", 0.3),
           "hf tile-128-linear rho=1": ("tile-128-linear", 1.0), "hf tile-128-linear rho=3": ("tile-128-linear", 3.0)}
SCALES = (0.75, 0.5, 0.25, 0.0)
CROP = 160
CROP_PANELS = ("scalar", "gamma-scale 0", "hf rho=3", "hf tile-128-linear rho=1", "hf tile-128-linear rho=3")


def hf_objective(granularity: str, rho: float) -> dict:
    return {"solver": "gradient", "rho": rho, "perceptual": {"name": "hf"}, "granularity": granularity}


def measure(reference: np.ndarray, decoded: torch.Tensor, data: bytes) -> dict[str, float]:
    h, w = reference.shape[:2]
    test = to_uint8(decoded)
    return {"bpp": 8 * len(data) / (h * w), "psnr": psnr(reference, test), "hf": high_frequency_ratio(reference, test)}


def gamma_bytes(data: bytes) -> float:
    return sum(bitstream.step_bits(s) for s in bitstream.unpack(data).gamma_steps) / 8


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def study_image(codec, ladder, rgb: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
    image = to_tensor(rgb)
    rows: dict[str, dict] = {}
    pictures: dict[str, np.ndarray] = {}
    for name, gamma in GRANULARITIES.items():
        result, seconds = timed(codec.encode, image, gamma=gamma)
        rows[name] = {**measure(rgb, result.reconstruction, result.data), "gamma_bytes": gamma_bytes(result.data),
                      "encode_s": seconds, "steps": list(bitstream.unpack(result.data).granularities)}
        if name in ("scalar", "auto"):
            _, rows[name]["decode_s"] = timed(codec.decompress, result.data)
        if name == "scalar":
            scalar_data = result.data
            pictures["scalar"] = to_uint8(result.reconstruction)
    for s in SCALES:
        decoded = codec.decompress(scalar_data, gamma_scale=s)
        rows[f"gamma-scale {s}"] = measure(rgb, decoded, scalar_data)
        if s == 0.0:
            pictures["gamma-scale 0"] = to_uint8(decoded)
    for name, (granularity, rho) in SHARPEN.items():
        result, seconds = timed(codec.encode, image, gamma=hf_objective(granularity, rho))
        rows[name] = {**measure(rgb, result.reconstruction, result.data), "gamma_bytes": gamma_bytes(result.data),
                      "encode_s": seconds}
        pictures[name] = to_uint8(result.reconstruction)
    for i, model in enumerate(ladder):
        result = model.encode(image)
        rows[f"ladder {i}"] = measure(rgb, result.reconstruction, result.data)
    return rows, pictures


TIMED = {"encode scalar": {}, "encode auto": {"granularity": "auto"}, "encode tile-128 (every step)":
         {"granularity": "tile-128"}, "encode tile-128-linear (every step)": {"granularity": "tile-128-linear"}}


def timing(codec, rgb: np.ndarray, repeats: int) -> dict[str, float]:
    """Median seconds of each encode of :data:`TIMED` and of the scalar file's decode, interleaved
    round by round (so that load on a shared machine hits all alike), and their ratio to the decode."""
    image = to_tensor(rgb)
    data = codec.encode(image).data
    codec.decompress(data)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in [*TIMED, "decode"]}
    for _ in range(repeats):
        for name, gamma in TIMED.items():
            samples[name].append(timed(codec.encode, image, gamma=gamma)[1])
        samples["decode"].append(timed(codec.decompress, data)[1])
    medians = {name: float(np.median(v)) for name, v in samples.items()}
    return {**medians, **{f"{name} / decode": medians[name] / medians["decode"] for name in TIMED}}


def local_slope(rows: dict) -> float:
    """dB per bpp of the scalar rate-distortion curve around the model's point (ladder points and it)."""
    points = sorted((r["bpp"], r["psnr"]) for k, r in rows.items() if k.startswith("ladder") or k == "scalar")
    bpp, db = np.array(points).T
    return float(np.polyfit(bpp, db, 1)[0]) if len(points) >= 2 else float("nan")


def summarise(per_image: dict[str, dict]) -> dict:
    names = list(next(iter(per_image.values())))
    mean = {n: {k: float(np.mean([rows[n][k] for rows in per_image.values()]))
                for k, v in next(iter(per_image.values()))[n].items() if isinstance(v, (int, float))} for n in names}
    slopes = {img: local_slope(rows) for img, rows in per_image.items()}
    for n in GRANULARITIES:
        gains = [rows[n]["psnr"] - rows["scalar"]["psnr"] - slopes[img] * (rows[n]["bpp"] - rows["scalar"]["bpp"])
                 for img, rows in per_image.items()]
        mean[n]["gain_equal_size_db"] = float(np.mean(gains))
        mean[n]["worst_gain_equal_size_db"] = float(np.min(gains))
    mean["slope_db_per_bpp"] = {"mean": float(np.mean(list(slopes.values())))}
    return mean


def markdown(summary: dict, command: str) -> str:
    lines = [f"`{command}`", "", "| setting | bpp | PSNR dB | hf-ratio | gamma bytes | gain at equal size dB (worst image) "
             "| encode s | decode s |", "|---|---|---|---|---|---|---|---|"]
    for name, row in summary.items():
        if name.startswith("ladder") or name == "slope_db_per_bpp":
            continue
        gain = (f"{row['gain_equal_size_db']:+.3f} ({row['worst_gain_equal_size_db']:+.3f})"
                if "gain_equal_size_db" in row else "")
        fmt = lambda k, f: format(row[k], f) if k in row else ""  # noqa: E731
        lines.append(f"| {name} | {row['bpp']:.4f} | {row['psnr']:.2f} | {row['hf']:.3f} | {fmt('gamma_bytes', '.1f')} "
                     f"| {gain} | {fmt('encode_s', '.1f')} | {fmt('decode_s', '.1f')} |")
    lines.append("")
    lines.append(f"Local slope of the scalar RD curve: {summary['slope_db_per_bpp']['mean']:.1f} dB per bpp (mean).")
    return "\n".join(lines) + "\n"


def crop_window(rgb: np.ndarray, size: int = CROP) -> tuple[int, int]:
    """Top-left corner of the size x size window with the most Laplacian energy (original only)."""
    energy = laplacian(to_tensor(rgb), padding=1).pow(2).sum(1, keepdim=True)
    pooled = F.avg_pool2d(energy, size, stride=16)
    index = int(pooled.flatten().argmax())
    return (index // pooled.shape[-1]) * 16, (index % pooled.shape[-1]) * 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--model", default="default")
    parser.add_argument("--ladder", nargs="*", default=["experiments/default_model/models/default-l2.pt",
                                                        "experiments/default_model/models/default-l0.5.pt"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-crops", action="store_true")
    parser.add_argument("--timing", type=int, default=None, metavar="N",
                        help="only time encodes against the decode (N interleaved rounds per image; writes timing.json)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    codec = load_model(args.model)
    if args.timing:
        times = {path.name: timing(codec, load_image(path), args.timing) for path in find_images(args.data_dir)}
        command = "python " + " ".join(__import__("sys").argv)
        (args.out / "timing.json").write_text(json.dumps({"command": command, "threads": torch.get_num_threads(),
                                                          "per_image": times}, indent=1) + "\n")
        print(json.dumps(times, indent=1))
        return
    ladder = [load_model(p) for p in args.ladder]
    per_image, strips = {}, []
    for path in find_images(args.data_dir):
        rgb = load_image(path)
        rows, pictures = study_image(codec, ladder, rgb)
        per_image[path.name] = rows
        print(path.name, json.dumps({k: {m: round(v, 4) for m, v in r.items() if isinstance(v, float)}
                                     for k, r in rows.items()}), flush=True)
        top, left = crop_window(rgb)
        window = lambda a: np.repeat(np.repeat(a[top:top + CROP, left:left + CROP], 2, 0), 2, 1)  # noqa: E731
        strips.append([(window(rgb), "original")] + [(window(v), k) for k, v in pictures.items()
                                                     if k in CROP_PANELS])
    summary = summarise(per_image)
    command = "python " + " ".join(__import__("sys").argv)
    (args.out / "gamma_study.json").write_text(json.dumps({"command": command, "summary": summary,
                                                           "per_image": per_image}, indent=1) + "\n")
    (args.out / "gamma_study.md").write_text(markdown(summary, command))
    print(markdown(summary, command))
    if not args.no_crops:
        from PIL import Image

        rows = [np.asarray(Image.open(io.BytesIO(side_by_side(strip))).convert("RGB")) for strip in strips]
        width = max(r.shape[1] for r in rows)
        stacked = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                                  for r in rows])
        Image.fromarray(stacked).save(args.out / "crops.png")


if __name__ == "__main__":
    main()
