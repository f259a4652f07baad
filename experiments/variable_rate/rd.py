"""Rate-distortion study of a variable-rate model against the fixed-rate ladder, WebP and AVIF, and its rate control.

    python experiments/variable_rate/rd.py --model variable --out docs/variable_rate

On the held-out photos (data/default_model/heldout, never trained on), writes ``rd.json`` and ``rd.md``:

* the model at every integer quality (and the fixed-rate ladder: ``--ladder`` files), corrected decodes at
  the model's steps: mean bpp (from the files' bytes), PSNR of the corrected and of the end-to-end decode
  (the same file decoded ``--mode e2e``);
* WebP and AVIF at each quality's bpp, per image (:func:`corrdiff.baselines.encode_at_bpp`);
* BD-rate (corrected PSNR) of the model against the ladder over their overlapping range, and against WebP/AVIF;
  the model's PSNR at the bpp of the ladder's middle model (interpolated in log bpp);
* ``crops.png``: per photo its most detailed 192x192 window (quality.py's choice, from the original alone),
  shown 2x in two rows: original | the model at qualities 1, 3, 6 and 9 | the fixed-rate default | AVIF at
  quality 6's bpp;
* rate control on 12 crops (three 256x256 windows of each photo at fixed positions) and three budgets:
  each ``max_bytes`` file's size against its budget; ``bpp`` targets' error; the encode time with a target
  against a plain encode at the same quality (medians, side by side in one run, one thread).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from corrdiff import bitstream
from corrdiff.baselines import available_formats, encode_at_bpp
from corrdiff.demo import side_by_side
from corrdiff.image_io import find_images, load_image, to_uint8
from corrdiff.metrics import psnr
from corrdiff.model_io import load_model
from corrdiff.plotting import bd_rate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "default_model"))
from quality import CROP as WINDOW, detailed_window, stacked  # noqa: E402 (the crop window and sheet of quality.py)

LADDER = ("experiments/default_model/models/default-l2.pt", "default", "experiments/default_model/models/default-l0.5.pt")
CROP = 256
BUDGETS = (1000, 2000, 3000)  # bytes of a 256x256 crop: about 0.12, 0.24 and 0.37 bpp
BPP_TARGETS = (0.1, 0.2, 0.3)


def crops(images: list[np.ndarray]) -> list[np.ndarray]:
    """Three CROP x CROP windows of each image: top left, centre, bottom right (fixed, not chosen by content)."""
    out = []
    for rgb in images:
        h, w = rgb.shape[:2]
        for i, j in ((0, 0), ((h - CROP) // 2, (w - CROP) // 2), (h - CROP, w - CROP)):
            out.append(np.ascontiguousarray(rgb[i : i + CROP, j : j + CROP]))
    return out


def point(codec, images: list[np.ndarray], quality: float | None) -> dict[str, object]:
    """Mean bpp and PSNRs of ``codec`` (at ``quality``) over ``images``, the per-image bpp and corrected decodes."""
    bpps, corrected, e2e, decoded = [], [], [], []
    for rgb in images:
        result = codec.encode(rgb, quality=quality)
        bpps.append(result.bpp())
        decoded.append(to_uint8(result.reconstruction))
        corrected.append(psnr(rgb, decoded[-1]))
        e2e.append(psnr(rgb, to_uint8(codec.decompress(result.data, mode="e2e"))))
    return {"bpp": statistics.mean(bpps), "psnr": statistics.mean(corrected), "psnr_e2e": statistics.mean(e2e),
            "bpp_per_image": bpps, "decoded": decoded}


def classical(images: list[np.ndarray], bpps: list[float], fmt: str) -> dict[str, object]:
    results = [encode_at_bpp(rgb, fmt, b) for rgb, b in zip(images, bpps)]
    return {"bpp": statistics.mean(r.bpp for r in results),
            "psnr": statistics.mean(psnr(rgb, r.decoded) for rgb, r in zip(images, results)),
            "decoded": [r.decoded for r in results]}


def crop_sheet(images: list[np.ndarray], variable: list[dict], fixed: dict, avif: dict | None) -> Image.Image:
    """Per image its most detailed window, 2x: original | qualities 1, 3, 6, 9 | the fixed-rate model | AVIF."""
    chosen = [p for p in variable if p["quality"] in (1.0, 3.0, 6.0, 9.0)]
    rows = []
    for i, rgb in enumerate(images):
        top, left = detailed_window(rgb, WINDOW)
        window = (slice(top, top + WINDOW), slice(left, left + WINDOW))
        panels = [(rgb, "original")]
        panels += [(p["decoded"][i], f"quality {p['quality']:g}, {p['bpp_per_image'][i]:.3f} bpp") for p in chosen]
        panels.append((fixed["decoded"][i], f"fixed-rate default, {fixed['bpp_per_image'][i]:.3f} bpp"))
        if avif is not None:
            panels.append((avif["decoded"][i], "AVIF at quality 6's bpp"))
        rows.append(Image.open(io.BytesIO(side_by_side(
            [(np.kron(image[window], np.ones((2, 2, 1), dtype=np.uint8)), label) for image, label in panels],
            columns=4))))
    return stacked(rows)


def without_pixels(p: dict) -> dict:
    """A point for the JSON: its numbers, not its decodes."""
    return {k: without_pixels(v) if isinstance(v, dict) else v for k, v in p.items() if k != "decoded"}


def psnr_at(curve: list[dict[str, float]], bpp: float) -> float:
    """PSNR of a curve at ``bpp``, linear in log bpp between its points (NaN outside)."""
    xs = [np.log(p["bpp"]) for p in curve]
    return float(np.interp(np.log(bpp), xs, [p["psnr"] for p in curve], left=np.nan, right=np.nan))


def rate_control(codec, images: list[np.ndarray]) -> dict[str, object]:
    """Budgets and bpp targets on the crops; encode time with a target against a plain encode (medians)."""
    sizes, ratios, times, plain_times = [], [], [], []
    for rgb in images:
        for budget in BUDGETS:
            start = time.perf_counter()
            result = codec.encode(rgb, max_bytes=budget)
            times.append(time.perf_counter() - start)
            quality = bitstream.unpack(result.data).quality
            start = time.perf_counter()
            codec.encode(rgb, quality=quality)
            plain_times.append(time.perf_counter() - start)
            sizes.append({"budget": budget, "bytes": len(result.data), "quality": quality})
            ratios.append(len(result.data) / budget)
    errors = []
    for rgb in images:
        for target in BPP_TARGETS:
            errors.append(codec.encode(rgb, bpp=target).bpp() / target - 1)
    high = codec.quality_range[1]
    below_top = [r for r, s in zip(ratios, sizes) if s["quality"] < high]  # the budget bound the quality
    return {
        "files": len(sizes),
        "all_within_budget": all(s["bytes"] <= s["budget"] for s in sizes),
        "min_fill": min(ratios), "mean_fill": statistics.mean(ratios),
        "at_highest_quality": len(sizes) - len(below_top),
        "min_fill_below_highest_quality": min(below_top, default=float("nan")),
        "bpp_mean_signed_error": statistics.mean(errors), "bpp_mean_abs_error": statistics.mean(map(abs, errors)),
        "encode_seconds_target_median": statistics.median(times),
        "encode_seconds_plain_median": statistics.median(plain_times),
        "encode_time_ratio": statistics.median(t / p for t, p in zip(times, plain_times)),
        "sizes": sizes,
    }


def markdown(report: dict) -> str:
    lines = [f"# {report['model']} on the held-out photos ({report['images']} images)", "",
             "| point | bpp | corrected PSNR | e2e PSNR | WebP at that bpp: PSNR (its bpp) | AVIF at that bpp: PSNR "
             "(its bpp) |", "|---|---|---|---|---|---|"]

    def classical_cell(p: dict, fmt: str) -> str:
        return f"{p[fmt]['psnr']:.2f} ({p[fmt]['bpp']:.4f})" if fmt in p else ""

    for p in report["variable"]:
        lines.append(f"| quality {p['quality']:g} | {p['bpp']:.4f} | {p['psnr']:.2f} | {p['psnr_e2e']:.2f} | "
                     f"{classical_cell(p, 'webp')} | {classical_cell(p, 'avif')} |")
    for name, p in report["ladder"].items():
        lines.append(f"| fixed-rate {name} | {p['bpp']:.4f} | {p['psnr']:.2f} | {p['psnr_e2e']:.2f} | | |")
    lines += ["", "| comparison | value |", "|---|---|"]
    for key, value in report["summary"].items():
        lines.append(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
    rc = report["rate_control"]
    lines += ["", f"Rate control on {rc['files']} files (12 crops x budgets {list(BUDGETS)} bytes): all within budget "
              f"{rc['all_within_budget']}, smallest fill {rc['min_fill']:.3f}, mean fill {rc['mean_fill']:.3f}; "
              f"{rc['at_highest_quality']} files at the highest quality (its file smaller than the budget), the "
              f"smallest fill of the others {rc['min_fill_below_highest_quality']:.3f}; "
              f"bpp targets {list(BPP_TARGETS)}: mean error {100 * rc['bpp_mean_signed_error']:+.2f}% "
              f"(mean absolute {100 * rc['bpp_mean_abs_error']:.2f}%); encode time with a target / plain encode: "
              f"{rc['encode_time_ratio']:.2f} (median; {rc['encode_seconds_target_median']:.2f} s vs "
              f"{rc['encode_seconds_plain_median']:.2f} s)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="variable")
    parser.add_argument("--ladder", nargs="*", default=list(LADDER))
    parser.add_argument("--data", type=Path, default=Path("data/default_model/heldout"))
    parser.add_argument("--out", type=Path, default=Path("docs/variable_rate"))
    parser.add_argument("--no-rate-control", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = [load_image(p) for p in find_images(args.data)]
    codec = load_model(args.model)
    low, high = codec.quality_range
    formats = [f for f in ("webp", "avif") if f in available_formats()]
    variable = []
    for quality in np.arange(low, high + 0.5):
        p = {"quality": float(quality), **point(codec, images, float(quality))}
        for fmt in formats:
            p[fmt] = classical(images, p["bpp_per_image"], fmt)
        variable.append(p)
        print(json.dumps({k: v for k, v in without_pixels(p).items() if k != "bpp_per_image"}), flush=True)
    ladder = {Path(m).stem: point(load_model(m), images, None) for m in args.ladder}
    ladder_curve = sorted(ladder.values(), key=lambda p: p["bpp"])
    summary = {
        "BD-rate vs the fixed-rate ladder (corrected PSNR, %)": bd_rate(
            [p["bpp"] for p in ladder_curve], [p["psnr"] for p in ladder_curve],
            [p["bpp"] for p in variable], [p["psnr"] for p in variable]),
        "lowest quality bpp": variable[0]["bpp"],
        "highest quality bpp": variable[-1]["bpp"],
    }
    middle = ladder_curve[len(ladder_curve) // 2]
    summary[f"PSNR at {middle['bpp']:.4f} bpp: model - fixed-rate (dB)"] = psnr_at(variable, middle["bpp"]) - middle["psnr"]
    for fmt in formats:
        summary[f"BD-rate vs {fmt} (PSNR, %)"] = bd_rate(
            [p[fmt]["bpp"] for p in variable], [p[fmt]["psnr"] for p in variable],
            [p["bpp"] for p in variable], [p["psnr"] for p in variable])
    args.out.mkdir(parents=True, exist_ok=True)
    middle_quality = next(p for p in variable if p["quality"] == 6.0)
    crop_sheet(images, variable, ladder.get("default", middle), middle_quality.get("avif")).save(args.out / "crops.png")
    report = {"model": args.model, "images": len(images), "variable": [without_pixels(p) for p in variable],
              "ladder": {name: without_pixels(p) for name, p in ladder.items()}, "summary": summary,
              "rate_control": {} if args.no_rate_control else rate_control(codec, crops(images))}
    (args.out / "rd.json").write_text(json.dumps(report, indent=1) + "\n")
    if report["rate_control"]:
        (args.out / "rd.md").write_text(markdown(report))
    print(markdown(report) if report["rate_control"] else json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
