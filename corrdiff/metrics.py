"""Image quality metrics on 8-bit images, through torchmetrics where it has them.

All functions take (H, W, 3) uint8 arrays, so every method is scored on exactly what
it would write to disk (8-bit-rounded).

* PSNR (dB) and MS-SSIM (Wang, Simoncelli, Bovik 2003; scales reduced for small images).
* High-frequency energy ratio: ||Lap(x_hat)||^2 / ||Lap(x)||^2 with the 3x3 Laplacian;
  1 = as sharp as the original, < 1 = blurred (DESIGN.md asks for it beside PSNR, since
  the MSE gamma trades sharpness for fidelity).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure, peak_signal_noise_ratio

from corrdiff.losses.distortion import ms_ssim_betas


def to_tensor(rgb: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def to_uint8(image: Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8 (rounded)."""
    return (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels, data range 255."""
    return float(peak_signal_noise_ratio(to_tensor(test), to_tensor(reference), data_range=1.0))


def ms_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM (RGB, averaged), with as many of the 5 scales as the image size allows."""
    betas = ms_ssim_betas(min(reference.shape[:2]))
    return float(multiscale_structural_similarity_index_measure(
        to_tensor(test), to_tensor(reference), data_range=1.0, betas=betas))


def high_frequency_ratio(reference: np.ndarray, test: np.ndarray) -> float:
    """Laplacian energy of ``test`` relative to ``reference`` (sharpness; 1 = same)."""
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(3, 1, 3, 3)

    def energy(rgb: np.ndarray) -> float:
        return float(F.conv2d(to_tensor(rgb), kernel, groups=3).pow(2).mean())

    ref = energy(reference)
    return energy(test) / ref if ref > 0 else float("nan")
