"""Image folders as a LightningDataModule: random crops and flips for training,
deterministic centre crops for validation and testing.

Folders are scanned recursively for png/jpg/jpeg/webp/bmp/tif files. A file whose
header Pillow cannot read is skipped at scan time; one that fails to decode later
(truncated data) is replaced by another image of the set. Both are warned about and
counted (``dataset.skipped``), never a crash mid-epoch. Images smaller than the crop
are padded by reflection.

Multi-scale training crops (``max_scale`` > 1): each crop covers a random s x s times larger region,
s ~ U[1, max_scale], resized to the crop size (bilinear with antialiasing), so one photo gives
textures at several scales: large photos teach the score network the detail density of smaller
ones, and every crop stays a natural image (a downscaled photo is as natural as the original).
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from corrdiff.errors import ImageReadError
from corrdiff.image_io import find_images, load_image, to_model_range, to_tensor


def _readable(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # noqa: BLE001 - any failure means "skip this file"
        return False


class ImageCrops(Dataset):
    """Crops of the images in ``folders`` as tensors in [-1, 1], shape (3, crop, crop).

    Args:
        train: random crop position and horizontal flip; otherwise a centre crop.
        cache: keep decoded images in memory (small datasets: decode once, not every step).
        max_scale: training crops cover up to ``max_scale`` times the crop side, downscaled to it
            (1 = single scale; see the module docstring). Ignored for validation crops.
    """

    def __init__(
        self, folders: str | Sequence[str], crop_size: int, train: bool, cache: bool = False, repeat: int = 1,
        max_scale: float = 1.0,
    ):
        if max_scale < 1:
            raise ValueError(f"max_scale must be >= 1, got {max_scale}")
        candidates = find_images(folders)
        self.files = [p for p in candidates if _readable(p)]
        self.skipped = len(candidates) - len(self.files)
        if self.skipped:
            warnings.warn(f"skipped {self.skipped} unreadable file(s) under {folders}", stacklevel=2)
        if not self.files:
            raise FileNotFoundError(f"no readable images under {folders}")
        self.crop_size = crop_size
        self.train = train
        self.repeat = max(1, repeat)
        self.max_scale = float(max_scale)
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.files) * self.repeat

    def _load(self, index: int) -> np.ndarray:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        rgb = load_image(self.files[index])
        if self._cache is not None:
            self._cache[index] = rgb
        return rgb

    def __getitem__(self, index: int) -> Tensor:
        for attempt in range(len(self.files)):
            i = (index % len(self.files) + attempt) % len(self.files)
            try:
                return self._crop(self._load(i))
            except ImageReadError as exc:
                self.skipped += 1
                warnings.warn(f"skipping unreadable image: {exc}", stacklevel=2)
        raise RuntimeError("no image in the dataset could be read")

    def _crop(self, rgb: np.ndarray) -> Tensor:
        x = to_model_range(to_tensor(rgb)[0])
        out = self.crop_size
        h, w = x.shape[-2:]
        scale = random.uniform(1.0, self.max_scale) if self.train and self.max_scale > 1 else 1.0
        c = max(out, min(round(out * scale), h, w))  # a larger region, never beyond the photo
        if h < c or w < c:
            pad_h, pad_w = max(c - h, 0), max(c - w, 0)
            x = torch.nn.functional.pad(x[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
            h, w = x.shape[-2:]
        if self.train:
            top, left = random.randint(0, h - c), random.randint(0, w - c)
        else:
            top, left = (h - c) // 2, (w - c) // 2
        x = x[:, top : top + c, left : left + c]
        if c != out:
            x = torch.nn.functional.interpolate(x[None], size=(out, out), mode="bilinear", antialias=True,
                                                align_corners=False)[0].clamp(-1, 1)
        if self.train and random.random() < 0.5:
            x = x.flip(-1)
        return x.contiguous()


class ImageDataModule(L.LightningDataModule):
    """Folders of photos for training, validation and testing.

    Args:
        train_dirs: folder(s) of training images: ``fit`` needs them (ValueError in ``setup`` without), ``corrdiff
            test`` and ``corrdiff validate`` do not (they read ``test_dirs`` and ``val_dirs``).
        val_dirs: folder(s) of validation images (deterministic centre crops).
        test_dirs: folder(s) for ``corrdiff test`` (default: ``val_dirs``).
        crop_size: training crop side.
        val_crop_size: validation/test crop side (default: ``crop_size``).
        batch_size, val_batch_size: batch sizes per device.
        num_workers: DataLoader workers.
        cache: keep decoded images in memory.
        train_repeat: an epoch visits every training image this many times (different crops);
            useful for small sets of large photos.
        max_scale: multi-scale training crops, up to this factor (see the module docstring).
    """

    def __init__(
        self,
        train_dirs: str | list[str] | None = None,
        val_dirs: str | list[str] | None = None,
        test_dirs: str | list[str] | None = None,
        crop_size: int = 256,
        val_crop_size: int | None = None,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int = 2,
        cache: bool = False,
        train_repeat: int = 1,
        max_scale: float = 1.0,
    ):
        super().__init__()
        self.max_scale = max_scale
        self.train_repeat = train_repeat
        self.save_hyperparameters()
        self.train_dirs, self.val_dirs, self.test_dirs = train_dirs, val_dirs, test_dirs or val_dirs
        self.crop_size = crop_size
        self.val_crop_size = val_crop_size or crop_size
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.cache = cache

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            if not self.train_dirs:
                raise ValueError("ImageDataModule: training needs train_dirs (in the config's data: or "
                                 "--data.train_dirs FOLDER); corrdiff test and validate need only val_dirs "
                                 "or test_dirs")
            self.train_set = ImageCrops(
                self.train_dirs, self.crop_size, train=True, cache=self.cache, repeat=self.train_repeat,
                max_scale=self.max_scale,
            )
        if stage in (None, "fit", "validate") and self.val_dirs:
            self.val_set = ImageCrops(self.val_dirs, self.val_crop_size, train=False, cache=self.cache)
        if stage in (None, "test") and self.test_dirs:
            self.test_set = ImageCrops(self.test_dirs, self.val_crop_size, train=False, cache=self.cache)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers, drop_last=shuffle,
            persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        if not self.val_dirs:
            return []  # type: ignore[return-value]
        return self._loader(self.val_set, self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if not self.test_dirs:
            raise ValueError("no test_dirs (or val_dirs) configured for the test loop")
        return self._loader(self.test_set, self.val_batch_size, shuffle=False)
