"""Time of ``corrdiff eval`` on a few crops, and its seconds per stage: this checkout beside another.

    python benchmarks/eval_speed.py [--runs 3] [--images 2] [--size 256x192] [--baseline DIR] [--weights-dir DIR]

Each run is a fresh ``corrdiff eval`` process (default model, every mode, JPEG/WebP/AVIF at fixed and
matched qualities, every metric, ``--threads 1``) on the first ``--images`` held-out-style crops cut from
scikit-image's photos. ``--baseline DIR`` also times another checkout (``git worktree add /tmp/old REV``),
interleaved run by run so that both see the same machine load. Without ``--weights-dir`` the LPIPS, DISTS
and FID networks get seeded random weights (``tests/conftest.py``'s ``write_random_weights``): they take
their real time, their numbers are meaningless. Prints the median wall time of each checkout and their
ratio, then this checkout's seconds per stage (from its ``index.json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from startup import REPO, report, timed_run

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def write_crops(folder: Path, count: int, width: int, height: int) -> None:
    """The centre ``width`` x ``height`` crop of each of the first ``count`` scikit-image photos."""
    from skimage import data

    for name in PHOTOS[:count]:
        rgb = getattr(data, name)()
        top, left = (rgb.shape[0] - height) // 2, (rgb.shape[1] - width) // 2
        Image.fromarray(np.ascontiguousarray(rgb[top:top + height, left:left + width])).save(folder / f"{name}.png")


def random_weights(folder: Path) -> Path:
    spec = importlib.util.spec_from_file_location("corrdiff_test_conftest", REPO / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    return conftest.write_random_weights(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per checkout (default: 3)")
    parser.add_argument("--images", type=int, default=2, choices=range(1, len(PHOTOS) + 1), help="crops (default: 2)")
    parser.add_argument("--size", default="256x192", help="crop WIDTHxHEIGHT (default: 256x192)")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to time alongside")
    parser.add_argument("--weights-dir", type=Path, default=None, help="real LPIPS/DISTS/FID weights (default: random)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    versions = {"this checkout": REPO}
    if args.baseline is not None:
        versions["baseline"] = args.baseline.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        images, weights = Path(tmp, "images"), args.weights_dir or random_weights(Path(tmp))
        images.mkdir()
        write_crops(images, args.images, width, height)
        for name, root in versions.items():  # each checkout's own corrdiff, not the installed one
            found = subprocess.run([sys.executable, "-c", "import corrdiff; print(corrdiff.__file__)"], cwd=tmp,
                                   env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True)
            if not found.stdout.startswith(str(root)):
                raise SystemExit(f"{name}: imports {found.stdout.strip() or found.stderr} instead of {root}'s corrdiff")
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
        for run in range(args.runs):  # interleaved: both checkouts see the same load
            for name, root in versions.items():
                out = Path(tmp, f"{name.replace(' ', '-')}-{run}")
                command = [sys.executable, "-m", "corrdiff.cli", "eval", str(images), "--out", str(out),
                           "--weights-dir", str(weights), "--threads", "1", "--no-progress"]
                results[name].append(timed_run(command, dict(os.environ, PYTHONPATH=str(root)), tmp))
        print(f"corrdiff eval of {args.images} crop(s) of {width}x{height}, default model, every mode, "
              "every baseline and metric, --threads 1:")
        for name, runs in results.items():
            report(f"eval ({name})", runs)
        if args.baseline is not None:
            ratio = statistics.median(w for w, _ in results["baseline"]) / statistics.median(
                w for w, _ in results["this checkout"])
            print(f"baseline / this checkout (median wall time): {ratio:.2f}x")
        stages = json.loads(Path(tmp, f"this-checkout-{args.runs - 1}", "index.json").read_text())
        print("seconds per stage, this checkout's last run: " + ", ".join(
            f"{k} {v:.1f}" for k, v in stages["stage_seconds"].items()))


if __name__ == "__main__":
    main()
