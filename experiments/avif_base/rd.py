"""Rate-distortion and texture study of an AVIF-base model against plain AVIF and WebP (docs/avif_base.md).

    python experiments/avif_base/rd.py --model corrdiff/assets/avif.pt --out docs/avif_base
    python experiments/avif_base/rd.py --model corrdiff/assets/avif.pt --out docs/avif_base/whole --whole

On the held-out photos (``data/default_model/heldout``: 512x384 crops; ``--whole``: the whole held-out photos
of ``data/default_model/val`` and ``skimage/val``, never trained on), for each quality of ``--qualities``:

* one ``.cdf`` file per image (corrected, the model's steps or ``--steps``); its bpp counts the whole file
  (header, gammas, AV1 data); decoded as it is (corrected), with ``--gamma-scale 0.5``, as ``diffusion`` and as
  ``e2e`` (= the AV1 decode);
* plain AVIF: the ``.avif`` file libavif writes at that quality (the same AV1 data plus its 275 bytes of boxes)
  and its decode, and on a denser grid of qualities for the BD-rates; WebP at the ``.cdf`` file's bpp;
* metrics per image, then means: PSNR, MS-SSIM, band-pass distance (lower = closer texture statistics),
  colour error, hf-ratio; BD-rates (PSNR and MS-SSIM) of each decode against plain AVIF;
* ``crops.png`` at ``--sheet-quality``: per image its most detailed 192x192 window (chosen from the original
  alone), 2x: original | corrected | gamma-scale 0.5 | diffusion only | AVIF at the same file size | WebP.

Writes ``rd.json`` and ``rd.md`` into ``--out``. One torch thread (the machines have two cores).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from corrdiff.baselines import encode_at_bpp
from corrdiff.demo import side_by_side
from corrdiff.image_io import find_images, load_image
from corrdiff.metrics import bandpass_distance, colour_error, high_frequency_ratio, ms_ssim, psnr, to_tensor, to_uint8
from corrdiff.model_io import load_model
from corrdiff.modules.avif_base import decode_avif
from corrdiff.plotting import bd_rate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "default_model"))
from quality import CROP, detailed_window, stacked  # noqa: E402 (the crop window and sheet of quality.py)

METRICS = {"psnr": psnr, "ms_ssim": ms_ssim, "bandpass": bandpass_distance, "colour_error": colour_error,
           "hf_ratio": high_frequency_ratio}
DECODES = {"corrected": {}, "gamma 0.5": {"gamma_scale": 0.5}, "diffusion": {"mode": "diffusion"},
           "e2e": {"mode": "e2e"}}
AVIF_GRID = tuple(range(0, 96, 5))


def scores(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    return {name: fn(reference, test) for name, fn in METRICS.items()}


def images_of(whole: bool) -> list[tuple[str, np.ndarray]]:
    folders = ([Path("data/default_model/val"), Path("data/default_model/skimage/val")] if whole
               else [Path("data/default_model/heldout")])
    return [(p.stem, load_image(p)) for folder in folders for p in find_images(folder)]


def avif_file(codec, rgb: np.ndarray, quality: int) -> bytes:
    return codec.base.encode_array(rgb, quality)


def study(codec, images, qualities, steps, sheet_quality) -> dict:
    rows: dict[str, dict[int, list[dict]]] = {name: {} for name in (*DECODES, "avif", "webp")}
    avif_curve: list[dict] = []
    sheet = []
    for name, rgb in images:
        pixels = rgb.shape[0] * rgb.shape[1]
        image = to_tensor(rgb)
        sizes = {}
        for q in AVIF_GRID:
            data = avif_file(codec, rgb, q)
            sizes[q] = len(data)
            avif_curve.append({"image": name, "quality": q, "bpp": 8 * len(data) / pixels,
                               **scores(rgb, decode_avif(data, rgb.shape[1], rgb.shape[0]))})
        for q in qualities:
            start = time.perf_counter()
            data = codec.compress(image, quality=q, steps=steps)
            bpp = 8 * len(data) / pixels
            decoded = {mode: to_uint8(codec.decompress(data, **options)) for mode, options in DECODES.items()}
            for mode, rgb_out in decoded.items():
                rows[mode].setdefault(q, []).append({"image": name, "bpp": bpp, **scores(rgb, rgb_out)})
            avif = avif_file(codec, rgb, q)
            rows["avif"].setdefault(q, []).append({"image": name, "bpp": 8 * len(avif) / pixels,
                                                   **scores(rgb, decode_avif(avif, rgb.shape[1], rgb.shape[0]))})
            webp = encode_at_bpp(rgb, "webp", bpp)
            rows["webp"].setdefault(q, []).append({"image": name, "bpp": webp.bpp, **scores(rgb, webp.decoded)})
            print(f"{name} q{q}: {len(data)} bytes, {bpp:.4f} bpp, corrected {rows['corrected'][q][-1]['psnr']:.2f} dB, "
                  f"AVIF {rows['avif'][q][-1]['psnr']:.2f} dB at {rows['avif'][q][-1]['bpp']:.4f} bpp "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
            if q == sheet_quality:
                same_size = max((k for k, v in sizes.items() if v <= len(data)), default=0)
                avif_same = decode_avif(avif_file(codec, rgb, same_size), rgb.shape[1], rgb.shape[0])
                top, left = detailed_window(rgb)
                window = (slice(top, top + CROP), slice(left, left + CROP))
                panels = [(rgb, name), (decoded["corrected"], f"CorrDiff q{q} {bpp:.3f} bpp"),
                          (decoded["gamma 0.5"], "less correction (0.5)"), (decoded["diffusion"], "diffusion only"),
                          (avif_same, f"AVIF q{same_size} {8 * sizes[same_size] / pixels:.3f}"),
                          (webp.decoded, f"WebP {webp.bpp:.3f} bpp")]
                sheet.append([(np.kron(p[window], np.ones((2, 2, 1), dtype=np.uint8)), label) for p, label in panels])
    return {"rows": rows, "avif_curve": avif_curve, "sheet": sheet}


def means(points: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([p[k] for p in points])) for k in points[0] if k != "image"}


def summary(result: dict, qualities) -> dict:
    table = {mode: {q: means(result["rows"][mode][q]) for q in qualities} for mode in result["rows"]}
    grid = {}
    for p in result["avif_curve"]:
        grid.setdefault(p["quality"], []).append(p)
    avif_dense = [means(grid[q]) for q in sorted(grid)]
    bd = {}
    for mode in (*DECODES, "webp"):
        points = [table[mode][q] for q in qualities]
        bd[mode] = {metric: bd_rate([p["bpp"] for p in avif_dense], [p[metric] for p in avif_dense],
                                    [p["bpp"] for p in points], [p[metric] for p in points])
                    for metric in ("psnr", "ms_ssim")}
    return {"table": table, "avif_dense": avif_dense, "bd_rate_vs_avif": bd}


def markdown(report: dict, qualities) -> str:
    lines = [f"Model {report['model']}, {report['steps']} steps, images: {', '.join(report['images'])}", "",
             "| quality | decode | bpp | PSNR dB | MS-SSIM | band-pass | colour error | hf-ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for q in qualities:
        for mode, by_q in report["table"].items():
            m = by_q[q]
            lines.append(f"| {q} | {mode} | {m['bpp']:.4f} | {m['psnr']:.2f} | {m['ms_ssim']:.4f} | {m['bandpass']:.3f} "
                         f"| {m['colour_error']:.2f} | {m['hf_ratio']:.3f} |")
    lines += ["", "BD-rate against plain AVIF (%, negative = fewer bytes at equal quality):", "",
              "| decode | PSNR | MS-SSIM |", "|---|---|---|"]
    for mode, values in report["bd_rate_vs_avif"].items():
        lines.append(f"| {mode} | {values['psnr']:+.1f} | {values['ms_ssim']:+.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--qualities", default="0,5,10,20,30,40,55,70,90")
    parser.add_argument("--sheet-quality", type=int, default=20)
    parser.add_argument("--whole", action="store_true", help="the whole held-out photos instead of the crops")
    args = parser.parse_args()
    torch.set_num_threads(1)
    codec = load_model(args.model)
    qualities = [int(q) for q in args.qualities.split(",")]
    images = images_of(args.whole)
    steps = args.steps or codec.config["steps"]
    result = study(codec, images, qualities, steps, args.sheet_quality)
    report = {"model": args.model, "steps": steps, "images": [n for n, _ in images], "qualities": qualities,
              **summary(result, qualities)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rd.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "rd.md").write_text(markdown(report, qualities))
    print(markdown(report, qualities))
    if result["sheet"]:
        stacked([Image.open(io.BytesIO(side_by_side(panels))) for panels in result["sheet"]]).save(args.out / "crops.png")


if __name__ == "__main__":
    main()
