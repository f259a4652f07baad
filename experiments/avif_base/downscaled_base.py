"""Would a downscaled AVIF base reach below AVIF's lowest rate at a better fidelity? (docs/avif_base.md)

    python experiments/avif_base/downscaled_base.py

On the held-out crops (data/default_model/heldout): mean bpp (the AV1 data alone, the .avif file less its 272
bytes of boxes that a .cdf does not carry) and PSNR of the AVIF base at full size (qualities 0, 5, 10, 20) and of
the same crops coded at half size and upscaled back with Lanczos (qualities 0-60), with the shipped model's AVIF
settings (corrdiff/modules/avif_base.py).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from corrdiff.image_io import find_images, load_image
from corrdiff.metrics import psnr
from corrdiff.modules.avif_base import AvifBase

BOXES = 272  # bytes of a .avif file that the AVIF base's stream leaves out (corrdiff/avif_container.py)


def point(images: list[np.ndarray], quality: int, factor: int) -> tuple[float, float]:
    base, bpps, psnrs = AvifBase(), [], []
    for rgb in images:
        h, w = rgb.shape[:2]
        small = np.asarray(Image.fromarray(rgb).resize((w // factor, h // factor), Image.Resampling.LANCZOS))
        data = base.encode_array(small, quality)
        decoded = Image.open(io.BytesIO(data)).convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
        bpps.append(8 * (len(data) - BOXES) / (h * w))
        psnrs.append(psnr(rgb, np.asarray(decoded)))
    return float(np.mean(bpps)), float(np.mean(psnrs))


def main() -> None:
    images = [load_image(p) for p in find_images("data/default_model/heldout")]
    for factor, qualities in ((1, (0, 5, 10, 20)), (2, (0, 10, 20, 30, 40, 50, 60))):
        points = [point(images, q, factor) for q in qualities]
        print(f"{'full size' if factor == 1 else f'1/{factor} size, upscaled'}: "
              + ", ".join(f"q{q} {b:.4f} bpp {p:.2f} dB" for q, (b, p) in zip(qualities, points)))


if __name__ == "__main__":
    main()
