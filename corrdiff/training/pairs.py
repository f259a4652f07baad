"""Cached (original, base decode) pairs as a LightningDataModule, for training a score network on a base
codec that is not differentiable (the AVIF base, docs/avif_base.md).

Coding is the slow part of such a step (an AVIF encode of a 256-pixel crop costs about as much as a
training step), so the pairs are coded once by ``experiments/avif_base/make_pairs.py`` into shards
(``torch.save`` of a dict)::

    x        uint8 (N, 3, S, S)     the original crops
    x0_e     uint8 (N, K, 3, S, S)  each crop's base decode at K qualities
    quality  int16 (N, K)           those qualities

and every training item is one (crop, quality) pair, randomly sub-cropped to ``crop_size`` and flipped
(the same window and flip for x and x0_e). Validation uses the last ``val_crops`` crops of the cache, at
their centre and first quality, never drawn for training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


def load_shards(folder: str | Path) -> dict[str, Tensor]:
    """Every ``shard-*.pt`` of ``folder``, concatenated (FileNotFoundError when there is none)."""
    paths = sorted(Path(folder).glob("shard-*.pt"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no shard-*.pt files (make them with experiments/avif_base/make_pairs.py)")
    shards = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    return {key: torch.cat([s[key] for s in shards]) for key in ("x", "x0_e", "quality")}


class PairCrops(Dataset):
    """(crop, quality) pairs of some crops of a cache as dicts ``{"x", "x0_e", "quality"}`` ([-1, 1], float32).

    Args:
        pairs: the cache (:func:`load_shards`); ``indices``: the crops this set uses.
        crop_size: side of the returned windows (at most the cache's).
        train: random windows, flips and every quality; otherwise the centre window at the first quality.
    """

    def __init__(self, pairs: dict[str, Tensor], indices: range, crop_size: int, train: bool):
        size = pairs["x"].shape[-1]
        if crop_size > size:
            raise ValueError(f"crop_size {crop_size} is larger than the cached crops ({size})")
        self.pairs, self.indices, self.crop_size, self.train = pairs, indices, crop_size, train
        self.qualities = pairs["quality"].shape[1] if train else 1

    def __len__(self) -> int:
        return len(self.indices) * self.qualities

    def __getitem__(self, item: int) -> dict[str, Tensor]:
        crop, k = self.indices[item // self.qualities], item % self.qualities
        x, x0_e = self.pairs["x"][crop], self.pairs["x0_e"][crop, k]
        size, c = x.shape[-1], self.crop_size
        if self.train:
            top, left = (int(v) for v in torch.randint(0, size - c + 1, (2,)))
        else:
            top = left = (size - c) // 2
        window = torch.stack([x, x0_e])[..., top:top + c, left:left + c].float() / 127.5 - 1
        if self.train and bool(torch.rand(()) < 0.5):
            window = window.flip(-1)
        return {"x": window[0], "x0_e": window[1], "quality": self.pairs["quality"][crop, k].float()}


class PairDataModule(L.LightningDataModule):
    """Training and validation pairs of one cache folder (see the module doc).

    Args:
        pairs_dir: the folder of ``shard-*.pt`` files.
        crop_size: training window side; ``val_crop_size``: validation window side.
        val_crops: crops at the end of the cache kept for validation.
        train_repeat: passes over the training pairs per epoch (fewer, longer epochs).
    """

    def __init__(self, pairs_dir: str, crop_size: int = 128, val_crop_size: int = 256, batch_size: int = 8,
                 val_crops: int = 16, num_workers: int = 0, train_repeat: int = 1):
        super().__init__()
        self.pairs_dir, self.crop_size, self.val_crop_size = pairs_dir, crop_size, val_crop_size
        self.batch_size, self.val_crops, self.num_workers, self.train_repeat = batch_size, val_crops, num_workers, train_repeat
        self.train_set: Any = None
        self.val_set: Any = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        pairs = load_shards(self.pairs_dir)
        n = pairs["x"].shape[0]
        if n <= self.val_crops:
            raise ValueError(f"{self.pairs_dir}: {n} crops, fewer than val_crops + 1 = {self.val_crops + 1}")
        train = PairCrops(pairs, range(n - self.val_crops), self.crop_size, train=True)
        self.train_set = torch.utils.data.ConcatDataset([train] * self.train_repeat)
        self.val_set = PairCrops(pairs, range(n - self.val_crops, n), self.val_crop_size, train=False)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers,
                          drop_last=True, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)


__all__ = ["PairCrops", "PairDataModule", "load_shards"]
