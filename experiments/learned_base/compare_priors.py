"""End-to-end rate and PSNR of learned-base models on the held-out crops (real bytes, eval mode).

    python experiments/learned_base/compare_priors.py runs/learned_base/a.pt runs/learned_base/b.pt

For each model file: the mean bpp (whole files, mode ``e2e``: the base codec alone) and the mean PSNR of the
end-to-end decodes of data/default_model/heldout (never trained on). With one rate point per model, each
model's bits at the first model's PSNR are estimated along an assumed slope of 6.02 dB per doubling of the
rate (high-rate theory; learned codecs at low rates are flatter, so the estimate is rough and says so).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from corrdiff.image_io import find_images, load_image
from corrdiff.metrics import psnr
from corrdiff.model_io import load_model

SLOPE_DB_PER_DOUBLING = 6.02  # high-rate theory: 1 bit per sample more, 6 dB more


def rd_point(path: str) -> tuple[float, float]:
    codec = load_model(path)
    bpps, psnrs = [], []
    for image_path in find_images("data/default_model/heldout"):
        rgb = load_image(image_path)
        result = codec.encode(rgb, mode="e2e")
        bpps.append(result.bpp())
        psnrs.append(psnr(rgb, (result.reconstruction[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)))
    return float(np.mean(bpps)), float(np.mean(psnrs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    points = {path: rd_point(path) for path in args.models}
    (first_bpp, first_psnr), *_ = points.values()
    for path, (bpp, value) in points.items():
        # bits at the first model's PSNR, moving along a curve of the assumed slope
        at_equal_psnr = bpp * 2 ** ((first_psnr - value) / SLOPE_DB_PER_DOUBLING)
        print(f"{path}: {bpp:.4f} bpp, {value:.2f} dB; at the first model's PSNR about {at_equal_psnr:.4f} bpp "
              f"({100 * (at_equal_psnr / first_bpp - 1):+.1f}% bits; slope {SLOPE_DB_PER_DOUBLING} dB per doubling "
              "assumed)")


if __name__ == "__main__":
    main()
