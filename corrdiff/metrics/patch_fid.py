"""FID and KID on 256x256 patches, the HiFiC / MS-ILLM protocol (docs/evaluation.md).

Every original and every reconstruction is cut into non-overlapping patches, then again with the image
shifted by half a patch (Mentzer et al. 2020, App. A.7; Muckley et al. 2023); FID's Inception-v3
(:func:`corrdiff.metrics.networks.build_inception`) gives each patch's features; FID and KID compare
the originals' features with each method's (:mod:`corrdiff.metrics.feature_distances`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from corrdiff.image_io import hwc_to_nchw
from corrdiff.metrics.feature_distances import frechet_distance, kernel_inception_distance
from corrdiff.weights import PerceptualUnavailable

PATCH_SIZE = 256


def extract_patches(image: Tensor, patch_size: int = PATCH_SIZE) -> Tensor:
    """Non-overlapping ``patch_size`` patches of (N, C, H, W), row-major, the remainder dropped -> (P, C, s, s)."""
    n, c, h, w = image.shape
    rows, cols = h // patch_size, w // patch_size
    if rows == 0 or cols == 0:
        return image.new_zeros(0, c, patch_size, patch_size)
    x = image[..., : rows * patch_size, : cols * patch_size]
    x = x.reshape(n, c, rows, patch_size, cols, patch_size).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, c, patch_size, patch_size)


def fid_patches(image: Tensor, patch_size: int = PATCH_SIZE) -> Tensor:
    """The image's patches, then again with the image shifted by ``patch_size // 2`` pixels in both directions."""
    half = patch_size // 2
    return torch.cat([extract_patches(image, patch_size), extract_patches(image[..., half:, half:], patch_size)])


class PatchFID:
    """Inception features of 256x256 patches (two passes, see :func:`fid_patches`) of the originals
    and of every method's reconstructions; FID and KID per method at the end."""

    def __init__(self, extractor: nn.Module, patch_size: int = PATCH_SIZE, device: str | torch.device = "cpu",
                 batch_size: int = 16):
        self.extractor = extractor.to(device).eval()
        self.patch_size, self.device, self.batch_size = patch_size, torch.device(device), batch_size
        self.real: list[Tensor] = []
        self.fake: dict[str, list[Tensor]] = {}

    @torch.no_grad()
    def features(self, rgb: np.ndarray) -> Tensor:
        """The (P, 2048) float64 features of the patches of one (H, W, 3) uint8 image."""
        image = hwc_to_nchw(np.asarray(rgb, dtype=np.uint8))  # uint8
        patches = fid_patches(image, self.patch_size)
        out = [self.extractor(patches[i: i + self.batch_size].to(self.device)).flatten(1).double().cpu()
               for i in range(0, len(patches), self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0, 0, dtype=torch.float64)

    def add(self, key: str | None, features: Tensor) -> None:
        """Store features of the originals (``key=None``) or of one method's reconstructions."""
        if len(features):
            (self.real if key is None else self.fake.setdefault(key, [])).append(features)

    def num_patches(self, key: str | None = None) -> int:
        """How many patches of the originals (``key=None``) or of one method were added."""
        return sum(len(f) for f in (self.real if key is None else self.fake.get(key, [])))

    def compute(self, key: str) -> dict[str, float]:
        """``{"fid", "kid", "kid-std", "fid-patches"}``; PerceptualUnavailable with fewer than 2 patches."""
        n = self.num_patches(key)
        if n < 2 or self.num_patches() < 2:
            raise PerceptualUnavailable(
                f"FID/KID need at least 2 patches of {self.patch_size}x{self.patch_size} "
                f"(got {n}: images smaller than {self.patch_size} px a side give none)")
        real, fake = torch.cat(self.real), torch.cat(self.fake[key])
        kid, kid_std = kernel_inception_distance(real, fake)
        return {"fid": frechet_distance(real, fake), "kid": kid, "kid-std": kid_std, "fid-patches": float(n)}
