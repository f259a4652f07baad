"""How many sampling steps (and which gamma granularity) the AVIF-base model's corrected decode needs.

    python experiments/avif_base/steps.py --model corrdiff/assets/avif.pt

On the held-out crops (data/default_model/heldout), at AVIF qualities 5, 20 and 45: mean bpp (whole files) and
PSNR of the corrected decode for 1, 2 and 4 steps with scalar gammas and for the chosen steps with
``granularity=auto`` (docs/gamma.md), beside plain AVIF at the same quality (its .avif file). One thread.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from corrdiff.image_io import find_images, load_image
from corrdiff.metrics import psnr, to_uint8
from corrdiff.model_io import load_model
from corrdiff.modules.avif_base import decode_avif

QUALITIES = (5, 20, 45)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--steps", default="1,2,4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    codec = load_model(args.model)
    images = [load_image(p) for p in find_images("data/default_model/heldout")]
    settings = [(int(s), None) for s in args.steps.split(",")] + [(2, {"granularity": "auto"})]
    for q in QUALITIES:
        avif = [codec.base.encode_array(rgb, q) for rgb in images]
        base = [(8 * len(d) / (rgb.shape[0] * rgb.shape[1]), psnr(rgb, decode_avif(d, rgb.shape[1], rgb.shape[0])))
                for d, rgb in zip(avif, images)]
        print(f"q{q}: AVIF {np.mean([b for b, _ in base]):.4f} bpp {np.mean([p for _, p in base]):.2f} dB")
        for steps, gamma in settings:
            rows = []
            for rgb in images:
                result = codec.encode(rgb, quality=q, steps=steps, gamma=gamma)
                rows.append((result.bpp(), psnr(rgb, to_uint8(result.reconstruction))))
            label = f"{steps} steps" + (", gamma auto" if gamma else "")
            print(f"  {label:20} {np.mean([b for b, _ in rows]):.4f} bpp {np.mean([p for _, p in rows]):.2f} dB")


if __name__ == "__main__":
    main()
