"""Build the photo corpus the AVIF-restoration model trains on (offline except for apt).

    python experiments/corpus/build.py data/corpus
    python experiments/corpus/build.py data/corpus-webp --format webp   # the same pixels, 27% smaller (GPU bursts)

Writes ``data/corpus/train/<package>_<name>.png`` (RGB, long side at most 1536 pixels, Lanczos) and
``data/corpus/manifest.json`` (copied to ``experiments/corpus/manifest.json``): one entry per photo with its
file, package, package version, source name, licence and size.

Sources, and nothing else (Debian packages are fetched with ``apt-get download`` + ``dpkg -x`` as in
experiments/default_model/prepare_data.py, whose lists of photographs this script reuses):

* ``plasma-workspace-wallpapers``: the 10 train photographs of prepare_data.py (``TRAIN``), 2560x1600
  halved to 1280x800. Kite and ColorfulCups are held out and never read.
* ``lomiri-wallpapers-16.04``: its 14 photographs (prepare_data.py's ``LOMIRI_PHOTOS``).
* ``ukui-wallpapers``: none of its 12 images is a photograph (checked again by eye: flat illustrations and
  3D renderings), so it contributes nothing.
* ``gnome-backgrounds``: every image looked at (see ``GNOME_SKIPPED``); version 43.1 ships only abstract
  renderings and vector art (its doc/README.md: "most of the abstract wallpapers as Blender project files"),
  so ``GNOME_KEPT`` is empty.
* scikit-image's bundled photos, train split of experiments/tools/skimage_photos.py (its val split, chelsea and
  motorcycle_right, is held out: written to a temporary folder by ``write_photos`` but never used).

Licences come from each package's ``usr/share/doc/PKG/copyright`` (the ``Files:`` stanza naming the file, or
the ``Files: *`` one); scikit-image's from the docstrings of its ``skimage.data`` functions.
Near-duplicates (mean absolute difference of 16x16 grayscale thumbnails below ``DUP_THRESHOLD``) are dropped.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "default_model"))
sys.path.insert(0, str(HERE.parent / "tools"))
import prepare_data  # noqa: E402  (TRAIN, LOMIRI_PHOTOS)
import skimage_photos  # noqa: E402  (TRAIN split)

MAX_SIDE = 1536
DUP_THRESHOLD = 6.0  # mean |difference| of 16x16 grayscale thumbnails, 0..255
HELD_OUT = {"Kite", "ColorfulCups", "chelsea", "motorcycle_right"}
UKUI_KEPT: tuple[str, ...] = ()  # calla, city, desert, goldfish, ...: all illustrations or renderings
GNOME_KEPT: tuple[str, ...] = ()
GNOME_SKIPPED = {  # gnome-backgrounds 43.1, usr/share/backgrounds/gnome/*, both -l and -d variants of each
    "adwaita": "rendering", "blobs": "vector", "drool": "vector", "dune": "vector", "field": "vector",
    "grid": "rendering", "licorice": "rendering", "oceans": "chart", "pixels": "rendering",
    "symbolic": "pattern", "truchet": "rendering", "vnc": "flat", "wood": "rendering",
}
SKIMAGE_LICENCES = {  # from the skimage.data function docstrings
    "astronaut": "public-domain", "coffee": "CC0", "rocket": "public-domain",
    "motorcycle_left": "unstated (Middlebury 2014 stereo data set)",
    "immunohistochemistry": "no known copyright restrictions", "hubble_deep_field": "public-domain",
}


def fetch(package: str, workdir: Path) -> tuple[Path, str]:
    """apt-get download + dpkg -x; returns (the extracted root, the package version)."""
    try:
        subprocess.run(["apt-get", "download", package], cwd=workdir, check=True, capture_output=True)
    except subprocess.CalledProcessError:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(["apt-get", "download", package], cwd=workdir, check=True, capture_output=True)
    deb = next(workdir.glob(f"{package}_*.deb"))
    root = workdir / package
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    return root, version


def matches(pattern: str, filename: str) -> bool:
    """Whether a DEP-5 ``Files:`` pattern names an installed file (upstream folders differ from installed ones:
    a pattern with a folder matches by its exact file name, one without as a glob)."""
    return Path(pattern).name == filename if "/" in pattern else fnmatch.fnmatch(filename, pattern)


def licence(copyright_file: Path, filename: str) -> str:
    """The ``License:`` of the last DEP-5 ``Files:`` stanza naming ``filename``."""
    found = None
    for stanza in copyright_file.read_text(errors="replace").split("\n\n"):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", stanza, re.M)
        licence_line = re.search(r"^License:(.*)", stanza, re.M)
        if files and licence_line and any(matches(p, filename) for p in files[1].split()):
            found = licence_line[1].strip()
    return found or "unknown"


def resized(img: Image.Image, factor: float) -> Image.Image:
    if factor <= 1:
        return img
    return img.resize((round(img.width / factor), round(img.height / factor)), Image.Resampling.LANCZOS)


def candidates(workdir: Path):
    """Yields (package, version, source name, licence, PIL image) for every photo of every source."""
    root, version = fetch(prepare_data.PLASMA, workdir)
    copyright_file = root / "usr/share/doc" / prepare_data.PLASMA / "copyright"
    for name in prepare_data.TRAIN:
        assert name not in HELD_OUT
        yield (prepare_data.PLASMA, version, name, licence(copyright_file, "2560x1600.jpg"),
               resized(prepare_data.wallpaper(root / "usr/share", name), 2))
    for package, folder, names in ((prepare_data.LOMIRI, "usr/share/backgrounds", prepare_data.LOMIRI_PHOTOS),
                                   ("ukui-wallpapers", "usr/share/backgrounds", UKUI_KEPT),
                                   ("gnome-backgrounds", "usr/share/backgrounds/gnome", GNOME_KEPT)):
        if not names:  # ukui-wallpapers and gnome-backgrounds: no photographs (see the module doc)
            continue
        root, version = fetch(package, workdir)
        for name in names:
            path = next((root / folder).glob(f"{name}.*"))
            img = Image.open(path).convert("RGB")
            yield (package, version, name, licence(root / "usr/share/doc" / package / "copyright", path.name),
                   resized(img, max(img.size) / MAX_SIDE))
    import skimage

    with tempfile.TemporaryDirectory() as tmp:
        skimage_photos.write_photos(Path(tmp))
        for name in skimage_photos.TRAIN:
            assert name not in HELD_OUT
            img = Image.open(Path(tmp) / "train" / f"{name}.png").convert("RGB")
            yield ("scikit-image", skimage.__version__, name, SKIMAGE_LICENCES[name],
                   resized(img, max(img.size) / MAX_SIDE))


def build(out: Path, image_format: str = "png") -> list[dict]:
    """Write the corpus under ``out`` as ``image_format`` files (``png``, or lossless ``webp``: the same pixels in
    about 27% fewer bytes, for a corpus that travels to a GPU burst, experiments/gpu/README.md); the manifest is
    copied beside this script for the PNG corpus only (the reference)."""
    short = {prepare_data.PLASMA: "plasma", prepare_data.LOMIRI: "lomiri", "ukui-wallpapers": "ukui",
             "gnome-backgrounds": "gnome", "scikit-image": "skimage"}
    (out / "train").mkdir(parents=True, exist_ok=True)
    manifest, thumbs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for package, version, name, licence_name, img in candidates(Path(tmp)):
            thumb = np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BOX), dtype=np.float32)
            near = [(float(np.abs(thumb - t).mean()), f) for t, f in thumbs]
            if near and min(near)[0] < DUP_THRESHOLD:
                print(f"skip {package}/{name}: duplicate of {min(near)[1]} (diff {min(near)[0]:.1f})")
                continue
            file = f"{short[package]}_{name}.{image_format}"
            img.save(out / "train" / file, **({"lossless": True, "method": 4} if image_format == "webp" else {}))
            thumbs.append((thumb, file))
            manifest.append({"file": file, "package": package, "package_version": version, "source_name": name,
                             "licence": licence_name, "width": img.width, "height": img.height})
            print(f"{file}: {img.width}x{img.height}, {licence_name}")
    text = json.dumps(manifest, indent=1) + "\n"
    (out / "manifest.json").write_text(text)
    if image_format == "png":
        shutil.copyfile(out / "manifest.json", HERE / "manifest.json")
    return manifest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--format", choices=("png", "webp"), default="png", help="png, or lossless webp")
    args = parser.parse_args()
    build(args.out, args.format)
