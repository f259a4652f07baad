"""Quality study of one model on the held-out crops (issue 12): steps, gamma scale, pictures.

    python experiments/default_model/quality.py --model default --out docs/quality

Writes into ``--out``:

* ``quality.json`` and ``quality.md``: mean PSNR, MS-SSIM, HaarPSI, hf-ratio, band-pass distance
  (:func:`corrdiff.metrics.bandpass_distance`) and colour error of
  - corrected / diffusion-only / end-to-end decodes of the same file at 2, 4 and 8 sampling steps
    (decode time is proportional to the steps), with the bpp of each file;
  - the file at the model's own steps decoded with ``--gamma-scale`` s in 0, 0.25, 0.5, 0.75, 1 (one
    file, no extra bits: the perception-distortion curve that the decoder chooses on), and encoded
    with ``--sharpen`` 1 and 3 (the weight-free sharpness objective of the gammas, docs/gamma.md);
  - WebP, AVIF and JPEG at the bpp of that file.
* ``gamma_scale.png``: that curve, hf-ratio against PSNR.
* ``crops.png``: per image one 192x192 crop (the window with the most Laplacian energy of the
  original, chosen without looking at any decode), shown 2x: original | corrected | diffusion
  only | end-to-end | WebP and AVIF at the same bpp.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from PIL import Image

from corrdiff.baselines import available_formats, encode_at_bpp
from corrdiff.demo import side_by_side
from corrdiff.image_io import load_image
from corrdiff.cli import SHARPEN_GRANULARITY
from corrdiff.metrics import (bandpass_distance, colour_error, haarpsi, high_frequency_ratio, laplacian, ms_ssim, psnr,
                              to_tensor, to_uint8)
from corrdiff.model_io import load_model
from corrdiff.image_io import find_images

METRICS = {"psnr": psnr, "ms_ssim": ms_ssim, "haarpsi": haarpsi, "hf_ratio": high_frequency_ratio,
           "bandpass": bandpass_distance, "colour_error": colour_error}
SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)
SHARPEN = (1.0, 3.0)
CROP = 192


def scores(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    return {name: fn(reference, test) for name, fn in METRICS.items()}


def detailed_window(rgb: np.ndarray, size: int = CROP) -> tuple[int, int]:
    """Top-left corner of the size x size window with the most Laplacian energy (of the original only)."""
    x = to_tensor(rgb).mean(1, keepdim=True)
    lap = laplacian(x, padding=1).pow(2)
    energy = F.avg_pool2d(lap, size, stride=size // 4)[0, 0]
    i, j = divmod(int(energy.argmax()), energy.shape[1])
    return min(i * (size // 4), rgb.shape[0] - size), min(j * (size // 4), rgb.shape[1] - size)


def study(model: str, data: Path, steps_list=(2, 4, 8)) -> tuple[dict, list]:
    codec = load_model(model)
    rows: dict[str, list[dict[str, float]]] = {}
    crops = []
    for path in find_images(data):
        rgb = load_image(path)
        image = to_tensor(rgb)
        for steps in steps_list:
            data_bytes = codec.compress(image, steps=steps)
            bpp = 8 * len(data_bytes) / (rgb.shape[0] * rgb.shape[1])
            decodes = {mode: to_uint8(codec.decompress(data_bytes, mode=mode)) for mode in ("corrected", "diffusion", "e2e")}
            for mode, decoded in decodes.items():
                rows.setdefault(f"{mode}, {steps} steps", []).append({"bpp": bpp, **scores(rgb, decoded)})
            if steps == codec.config["steps"]:
                for rho in SHARPEN:
                    gamma = {"solver": "gradient", "perceptual": {"name": "hf"}, "rho": rho,
                             "granularity": SHARPEN_GRANULARITY}
                    sharp = codec.compress(image, steps=steps, gamma=gamma)
                    rows.setdefault(f"sharpen {rho:g}", []).append(
                        {"bpp": 8 * len(sharp) / (rgb.shape[0] * rgb.shape[1]),
                         **scores(rgb, to_uint8(codec.decompress(sharp)))})
                for s in SCALES:
                    decoded = decodes["corrected"] if s == 1 else (
                        decodes["diffusion"] if s == 0 else to_uint8(codec.decompress(data_bytes, gamma_scale=s)))
                    rows.setdefault(f"gamma scale {s:g}", []).append({"bpp": bpp, **scores(rgb, decoded)})
                baselines = {}
                for name in ("webp", "avif", "jpeg"):
                    if name in available_formats():
                        result = encode_at_bpp(rgb, name, bpp)
                        baselines[name] = result.decoded
                        rows.setdefault(f"{name} at matched bpp", []).append({"bpp": result.bpp, **scores(rgb, result.decoded)})
                top, left = detailed_window(rgb)
                window = (slice(top, top + CROP), slice(left, left + CROP))
                panels = [(rgb, "original"), (decodes["corrected"], f"CorrDiff {bpp:.3f} bpp"),
                          (decodes["diffusion"], "diffusion only"), (decodes["e2e"], "end-to-end only")]
                panels += [(baselines[name], f"{label} same bpp") for name, label in (("webp", "WebP"), ("avif", "AVIF"))
                           if name in baselines]
                crops.append([(np.kron(p[window], np.ones((2, 2, 1), dtype=np.uint8)), label) for p, label in panels])
    means = {name: {k: float(np.mean([r[k] for r in values])) for k in values[0]} for name, values in rows.items()}
    return means, crops


def write(means: dict, crops: list, out: Path, model: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps({"model": model, "means": means}, indent=2) + "\n")
    lines = ["| decode | bpp | PSNR dB | MS-SSIM | HaarPSI | hf-ratio | band-pass dist. | colour error |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in means.items():
        lines.append(f"| {name} | {m['bpp']:.3f} | {m['psnr']:.2f} | {m['ms_ssim']:.4f} | {m['haarpsi']:.4f} "
                     f"| {m['hf_ratio']:.3f} | {m['bandpass']:.3f} | {m['colour_error']:.2f} |")
    (out / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    stacked([Image.open(io.BytesIO(side_by_side(panels))) for panels in crops]).save(out / "crops.png")
    plot_curve(means, out / "gamma_scale.png", model)


def stacked(rows: list[Image.Image]) -> Image.Image:
    """Images one below the other on white, left-aligned."""
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    return sheet


def plot_curve(means: dict, output: Path, model: str) -> None:
    """hf-ratio against PSNR along the gamma scale, with e2e and the classical codecs as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

    fig, ax = plt.subplots(figsize=(5, 3.6))
    curve = [means[f"gamma scale {s:g}"] for s in SCALES]
    ax.plot([m["hf_ratio"] for m in curve], [m["psnr"] for m in curve], "o-", label="CorrDiff, gamma scale s")
    for i, (s, m) in enumerate(zip(SCALES, curve)):  # labels alternately above and below: the points are close
        ax.annotate(f"s={s:g}", (m["hf_ratio"], m["psnr"]), textcoords="offset points",
                    xytext=(4, 6 if i % 2 else -12), fontsize=8)
    e2e = next(name for name in reversed(list(means)) if name.startswith("e2e"))
    for key, marker in ((e2e, "s"), ("sharpen 1", "D"), ("sharpen 3", "D"), ("webp at matched bpp", "^"),
                        ("avif at matched bpp", "<"), ("jpeg at matched bpp", "v")):
        if key in means:
            ax.plot(means[key]["hf_ratio"], means[key]["psnr"], marker, label=key)
    ax.axvline(1.0, color="grey", lw=0.5, ls="--")
    ax.set_xlabel("hf-ratio (Laplacian energy / original's; 1 = as sharp)")
    ax.set_ylabel("PSNR dB")
    ax.set_title(f"Perception-distortion, one file per image ({Path(model).stem})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(output, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, default=Path("data/default_model/heldout"))
    parser.add_argument("--out", type=Path, default=Path("docs/quality"))
    parser.add_argument("--steps", default="2,4,8", help="sampling steps to compare (comma-separated)")
    args = parser.parse_args()
    means, crops = study(args.model, args.data, tuple(int(s) for s in args.steps.split(",")))
    write(means, crops, args.out, args.model)


if __name__ == "__main__":
    main()
