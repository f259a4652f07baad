"""Write scikit-image's bundled natural photos as PNGs, split into train/ and val/.

    python experiments/tools/skimage_photos.py data/skimage

Offline: the photos ship inside the scikit-image package (``pip install scikit-image``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN = ("astronaut", "coffee", "rocket", "motorcycle_left", "immunohistochemistry", "hubble_deep_field")
VAL = ("chelsea", "motorcycle_right")


def write_photos(out_dir: Path) -> list[Path]:
    from skimage import data

    written = []
    for split, names in (("train", TRAIN), ("val", VAL)):
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name.startswith("motorcycle_"):
                left, right, _ = data.stereo_motorcycle()
                rgb = left if name.endswith("left") else right
            else:
                rgb = np.asarray(getattr(data, name)())
            if rgb.ndim == 2:
                rgb = np.stack([rgb] * 3, axis=-1)
            path = folder / f"{name}.png"
            Image.fromarray(rgb[..., :3].astype(np.uint8)).save(path)
            written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    for path in write_photos(parser.parse_args().out_dir):
        print(path)
