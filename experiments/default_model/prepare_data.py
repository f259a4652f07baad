"""Fetch and prepare the photos the packaged model is trained on (offline except for apt).

    python experiments/default_model/prepare_data.py data/default_model

* Photographic wallpapers of Debian's ``plasma-workspace-wallpapers`` package
  (``apt-get download`` + ``dpkg -x``; 2560x1600 JPEGs), downscaled 2x with Lanczos to
  1280x800 (halving also averages away most JPEG artefacts of the sources).
* scikit-image's bundled photos (training split of experiments/tools/skimage_photos.py).

Held out for validation (never trained on): Kite and ColorfulCups, and scikit-image's
val split (chelsea, motorcycle_right). The demo photo shipped in the package is a crop
of Kite.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

PACKAGE = "plasma-workspace-wallpapers"
TRAIN = ("BytheWater", "Grey", "DarkestHour", "EveningGlow", "FallenLeaf", "OneStandsOut", "Path", "Autumn",
         "summer_1am", "ColdRipple")
VAL = ("Kite", "ColorfulCups")
HERE = Path(__file__).resolve().parent


def fetch_wallpapers(workdir: Path) -> Path:
    """apt-get download + dpkg -x of the wallpapers package; returns the wallpapers folder."""
    subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir, check=True, capture_output=True)
    deb = next(workdir.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(workdir / "x")], check=True)
    return workdir / "x" / "usr" / "share" / "wallpapers"


def wallpaper(root: Path, name: str) -> Image.Image:
    return Image.open(root / name / "contents" / "images" / "2560x1600.jpg").convert("RGB")


def prepare(out: Path, wallpapers: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = wallpapers or fetch_wallpapers(Path(tmp))
        for split, names in (("train", TRAIN), ("val", VAL)):
            (out / split).mkdir(parents=True, exist_ok=True)
            for name in names:
                img = wallpaper(root, name)
                img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS).save(out / split / f"{name}.png")
    spec = importlib.util.spec_from_file_location("skimage_photos", HERE.parent / "tools" / "skimage_photos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_photos(out / "skimage")
    write_heldout_crops(out)


def write_heldout_crops(out: Path, size: tuple[int, int] = (512, 384)) -> None:
    """Centre crops of every held-out photo into ``out/heldout`` (the README's eval set)."""
    (out / "heldout").mkdir(parents=True, exist_ok=True)
    for path in sorted([*(out / "val").glob("*.png"), *(out / "skimage" / "val").glob("*.png")]):
        img = Image.open(path).convert("RGB")
        w, h = min(size[0], img.width), min(size[1], img.height)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        img.crop((left, top, left + w, top + h)).save(out / "heldout" / path.name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--wallpapers", type=Path, help="an already extracted usr/share/wallpapers folder")
    args = parser.parse_args()
    prepare(args.out, args.wallpapers)
