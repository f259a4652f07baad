"""Code random crops of a photo folder with the AVIF base once, into the pair cache the score network trains on.

    python experiments/avif_base/make_pairs.py data/corpus/train data/avif_pairs \\
        --crops-per-image 80 --size 256 --qualities-per-crop 2 --seed 0

Reads every PNG of the folder (the corpus of experiments/corpus/build.py) and takes random ``size`` x ``size``
crops of it: ``--crops-per-image`` on average, each image getting a share proportional to its area (at least 8;
images smaller than a crop are skipped). Each crop is coded at ``--qualities-per-crop`` distinct AVIF qualities
drawn uniformly from 0..90 with :class:`corrdiff.modules.avif_base.AvifBase` at the shipped model's settings
(4:4:4, speed 6; docs/avif_base.md). The crops are shuffled (so the last ones, which
:class:`corrdiff.training.pairs.PairDataModule` keeps for validation, come from many images) and written as
``shard-000.pt``, ``shard-001.pt``, ... of at most ``--shard-size`` crops, each a ``torch.save`` of::

    x        uint8 (n, 3, S, S)     the original crops
    x0_e     uint8 (n, K, 3, S, S)  their AVIF decodes
    quality  int16 (n, K)           the qualities
    bytes    int32 (n, K)           the size of each coded stream
    source   list of n file names   the photo each crop comes from

the format :func:`corrdiff.training.pairs.load_shards` reads. Everything is seeded by ``--seed``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from corrdiff.modules.avif_base import AvifBase, from_uint8, to_uint8

MIN_CROPS, MAX_QUALITY = 8, 90


def plan(folder: Path, per_image: int, size: int, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    """(file name, top, left) of every crop, shuffled."""
    sizes = {p.name: Image.open(p).size for p in sorted(folder.glob("*.png"))}
    sizes = {name: (w, h) for name, (w, h) in sizes.items() if w >= size and h >= size}
    mean_area = np.mean([w * h for w, h in sizes.values()])
    crops = []
    for name, (w, h) in sizes.items():
        for _ in range(max(MIN_CROPS, round(per_image * w * h / mean_area))):
            crops.append((name, int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))))
    return [crops[i] for i in rng.permutation(len(crops))]


def main(folder: Path, out: Path, per_image: int, size: int, k: int, seed: int, shard_size: int) -> None:
    rng = np.random.default_rng(seed)
    crops = plan(folder, per_image, size, rng)
    print(f"{len(crops)} crops of {len({c[0] for c in crops})} images, {k} qualities each")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.pt"):  # a previous run's shards would mix with these
        old.unlink()
    base, images, start = AvifBase(), {}, time.perf_counter()
    for shard, first in enumerate(range(0, len(crops), shard_size)):
        part = crops[first:first + shard_size]
        x = torch.empty(len(part), 3, size, size, dtype=torch.uint8)
        x0_e = torch.empty(len(part), k, 3, size, size, dtype=torch.uint8)
        quality = torch.empty(len(part), k, dtype=torch.int16)
        n_bytes = torch.empty(len(part), k, dtype=torch.int32)
        for i, (name, top, left) in enumerate(part):
            if name not in images:
                images[name] = np.asarray(Image.open(folder / name).convert("RGB"))
            crop = images[name][top:top + size, left:left + size]
            x[i] = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)
            for j, q in enumerate(rng.choice(MAX_QUALITY + 1, size=k, replace=False)):
                streams, decoded = base.code(from_uint8(crop), int(q))
                x0_e[i, j] = torch.from_numpy(to_uint8(decoded)).permute(2, 0, 1)
                quality[i, j], n_bytes[i, j] = int(q), len(streams[0])
            done = first + i + 1
            if done % 100 == 0 or done == len(crops):
                print(f"{done}/{len(crops)} crops, {done / (time.perf_counter() - start):.1f} crops/s", flush=True)
        torch.save({"x": x, "x0_e": x0_e, "quality": quality, "bytes": n_bytes, "source": [c[0] for c in part]},
                   out / f"shard-{shard:03d}.pt")
    print(f"done: {len(crops)} crops, {len(crops) * k} pairs in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder of PNG photos")
    parser.add_argument("out", type=Path, help="folder for the shard-*.pt files")
    parser.add_argument("--crops-per-image", type=int, default=80, help="mean crops per image (area-weighted)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--qualities-per-crop", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-size", type=int, default=500)
    a = parser.parse_args()
    main(a.folder, a.out, a.crops_per_image, a.size, a.qualities_per_crop, a.seed, a.shard_size)
