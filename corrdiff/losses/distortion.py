"""Distortion d(x, x_hat) for images in [-1, 1]: ``mse`` or ``ms_ssim`` (1 - MS-SSIM).

MS-SSIM: Wang, Simoncelli, Bovik 2003, via torchmetrics; the number of scales is reduced
for small crops (each scale halves the image; the 11-tap window must fit the coarsest).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from torch import Tensor
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from corrdiff.registry import split_spec

MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_betas(size: int, kernel_size: int = 11) -> tuple[float, ...]:
    """The standard 5 scale weights, truncated (and renormalised) so that the coarsest scale fits ``size``."""
    scales = len(MS_SSIM_BETAS)
    while scales > 1 and size <= (kernel_size - 1) * 2 ** (scales - 1):
        scales -= 1
    betas = MS_SSIM_BETAS[:scales]
    return tuple(b / sum(betas) for b in betas)


def mse(x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean squared error on the [0, 1] scale (so the value matches PSNR's convention)."""
    return ((x.float() - x_hat.float()) / 2).pow(2).mean()


def ms_ssim_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """1 - MS-SSIM on the [0, 1] scale."""
    a, b = ((x.float() + 1) / 2), ((x_hat.float() + 1) / 2).clamp(0, 1)
    betas = ms_ssim_betas(min(x.shape[-2:]))
    return 1 - multiscale_structural_similarity_index_measure(b, a, data_range=1.0, betas=betas)


DISTORTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": mse, "ms_ssim": ms_ssim_loss}


def build_distortion(spec: Mapping[str, Any] | str) -> Callable[[Tensor, Tensor], Tensor]:
    name, kwargs = split_spec(spec)
    if name not in DISTORTIONS or kwargs:
        raise ValueError(f"distortion must be one of {sorted(DISTORTIONS)} (no arguments), got {spec!r}")
    return DISTORTIONS[name]


__all__ = ["build_distortion", "mse", "ms_ssim_loss", "ms_ssim_betas"]
