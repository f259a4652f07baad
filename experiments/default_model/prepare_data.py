"""Fetch and prepare the photos the packaged models are trained on (offline except for apt).

    python experiments/default_model/prepare_data.py data/default_model

Every photograph among the wallpapers of three Debian packages, fetched by package name
(``apt-get download`` + ``dpkg -x``), plus scikit-image's bundled photos:

* ``plasma-workspace-wallpapers``: its 12 photographs (2560x1600 JPEGs), downscaled 2x with
  Lanczos to 1280x800 (halving also averages away most JPEG artefacts) into ``train/`` and
  ``val/``. Its other 18 wallpapers (Altai, Canopee, Cascade, Cluster, Elarun, Flow,
  FlyingKonqui, Honeywave, IceCold, Kay, Kokkini, MilkyWay, Opal, PastelHills, Patak,
  SafeLanding, Shell, Volna) are renderings and illustrations, skipped.
* ``lomiri-wallpapers-16.04``: its 14 photographs (1365x1074 to 5312x2988), downscaled
  so that the long side is at most 1536 pixels, into ``train_lomiri/`` (not committed: the
  script fetches them; umang is abstract and skipped).
* ``ukui-wallpapers``: none of its 12 images is a photograph (calla, city, desert, goldfish and the
  rest are flat illustrations and renderings, checked by eye), so it contributes nothing.
* scikit-image's photos (train/val split of experiments/tools/skimage_photos.py) into ``skimage/``.

Held out (never trained on): Kite and ColorfulCups, and scikit-image's val split (chelsea,
motorcycle_right); ``heldout/`` holds their 512x384 centre crops. The demo photo shipped in the
package is a crop of ColorfulCups.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

PLASMA = "plasma-workspace-wallpapers"
TRAIN = ("BytheWater", "Grey", "DarkestHour", "EveningGlow", "FallenLeaf", "OneStandsOut", "Path", "Autumn",
         "summer_1am", "ColdRipple")
VAL = ("Kite", "ColorfulCups")
LOMIRI = "lomiri-wallpapers-16.04"
LOMIRI_PHOTOS = (
    "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
    "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "analogpattern_by_Peter_Nerlich",
    "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
    "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
    "sunset_by_Aitzol_Berasategi",
)
MAX_SIDE = 1536
HERE = Path(__file__).resolve().parent


def fetch_package(package: str, workdir: Path) -> Path:
    """apt-get download + dpkg -x of one package; returns its extracted usr/share folder."""
    subprocess.run(["apt-get", "download", package], cwd=workdir, check=True, capture_output=True)
    deb = next(workdir.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(workdir / "x")], check=True)
    return workdir / "x" / "usr" / "share"


def wallpaper(root: Path, name: str) -> Image.Image:
    return Image.open(root / "wallpapers" / name / "contents" / "images" / "2560x1600.jpg").convert("RGB")


def downscaled(img: Image.Image, factor: float) -> Image.Image:
    if factor <= 1:
        return img
    return img.resize((round(img.width / factor), round(img.height / factor)), Image.Resampling.LANCZOS)


def prepare(out: Path, share: Path | None = None) -> None:
    """``share``: an already extracted usr/share folder holding both packages' images."""
    with tempfile.TemporaryDirectory() as tmp:
        root = share or fetch_package(PLASMA, Path(tmp))
        for split, names in (("train", TRAIN), ("val", VAL)):
            (out / split).mkdir(parents=True, exist_ok=True)
            for name in names:
                downscaled(wallpaper(root, name), 2).save(out / split / f"{name}.png")
        root = share or fetch_package(LOMIRI, Path(tmp))
        (out / "train_lomiri").mkdir(parents=True, exist_ok=True)
        for name in LOMIRI_PHOTOS:
            img = Image.open(root / "backgrounds" / f"{name}.jpg").convert("RGB")
            downscaled(img, max(img.size) / MAX_SIDE).save(out / "train_lomiri" / f"{name}.png")
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
    parser.add_argument("--share", type=Path, help="an already extracted usr/share folder of both packages")
    args = parser.parse_args()
    prepare(args.out, args.share)
