"""Distortion d(x, x_hat) for images in [-1, 1]: ``mse`` or ``ms_ssim`` (1 - MS-SSIM).

MS-SSIM: Wang, Simoncelli, Bovik 2003, with torchmetrics' conventions (11-tap Gaussian window,
sigma 1.5, reflection padding, a negative term counting as 0 as its default ``normalize="relu"`` does;
tests check equality with torchmetrics). It is the package's one MS-SSIM: the training loss, the
validation metric of training and the evaluation metric (:func:`corrdiff.metrics.ms_ssim`) all use it.
It is implemented here rather than taken from torchmetrics because ``corrdiff compress`` prints MS-SSIM
and should not import torchmetrics (seconds of start-up), and because torchmetrics refuses sizes this
handles: sides of 6..10, 41..43, 81..98 and 161..175 pixels (its size check is not the one of the
scales it is given). The number of scales is reduced for small crops
(:func:`ms_ssim_betas`: each scale halves the image; the 11-tap window must fit the coarsest).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from corrdiff.image_io import to_image_range
from corrdiff.registry import split_spec

MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def ms_ssim_betas(size: int, kernel_size: int = 11) -> tuple[float, ...]:
    """The standard 5 scale weights, truncated (and renormalised) so that the coarsest scale fits ``size``."""
    scales = len(MS_SSIM_BETAS)
    while scales > 1 and size <= (kernel_size - 1) * 2 ** (scales - 1):
        scales -= 1
    betas = MS_SSIM_BETAS[:scales]
    return tuple(b / sum(betas) for b in betas)


def gaussian_window(channels: int, like: Tensor, size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """The normalised 2-D Gaussian window, one copy per channel: (channels, 1, size, size)."""
    offsets = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-0.5 * (offsets / sigma) ** 2)
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, size, size)


def ssim_and_contrast(a: Tensor, b: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
    """Per image: SSIM averaged over the (reflection-padded) image, and the contrast-structure term
    averaged over the unpadded image (torchmetrics' convention). Data range 1."""
    pad = (window.shape[-1] - 1) // 2
    a, b = (F.pad(t, (pad, pad, pad, pad), mode="reflect") for t in (a, b))
    n = a.shape[0]
    mu_a, mu_b, aa, bb, ab = F.conv2d(torch.cat((a, b, a * a, b * b, a * b)), window, groups=a.shape[1]).split(n)
    var_a = (aa - mu_a ** 2).clamp(min=0)
    var_b = (bb - mu_b ** 2).clamp(min=0)
    cov = ab - mu_a * mu_b
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    contrast = (2 * cov + c2) / (var_a + var_b + c2)
    ssim = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1) * contrast
    contrast = contrast[..., pad:-pad, pad:-pad]
    return ssim.flatten(1).mean(1), contrast.flatten(1).mean(1)


def ms_ssim_per_image(a: Tensor, b: Tensor, betas: tuple[float, ...] = MS_SSIM_BETAS) -> Tensor:
    """MS-SSIM of each image of two (B, C, H, W) batches in [0, 1], shape (B,) (one scale per beta).

    The contrast terms of the finer scales and the SSIM of the coarsest, each clipped at 0 (a negative
    one, from anti-correlated images, would have no real power), weighted by ``betas``.
    Differentiable (the ``ms_ssim`` training distortion uses it).
    """
    window = gaussian_window(a.shape[1], a)
    terms = []
    for scale in range(len(betas)):
        ssim, contrast = ssim_and_contrast(a, b, window)
        terms.append(torch.relu(contrast if scale < len(betas) - 1 else ssim))
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    weights = torch.tensor(betas, dtype=a.dtype, device=a.device).view(-1, 1)
    return (torch.stack(terms) ** weights).prod(0)


def ms_ssim_index(a: Tensor, b: Tensor, betas: tuple[float, ...] = MS_SSIM_BETAS) -> Tensor:
    """:func:`ms_ssim_per_image` averaged over the batch."""
    return ms_ssim_per_image(a, b, betas).mean()


def mse(x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean squared error on the [0, 1] scale (so the value matches PSNR's convention)."""
    return ((x.float() - x_hat.float()) / 2).pow(2).mean()


def ms_ssim_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """1 - MS-SSIM on the [0, 1] scale."""
    a, b = to_image_range(x.float()), to_image_range(x_hat.float()).clamp(0, 1)
    betas = ms_ssim_betas(min(x.shape[-2:]))
    return 1 - ms_ssim_index(b, a, betas)


DISTORTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": mse, "ms_ssim": ms_ssim_loss}


def build_distortion(spec: Mapping[str, Any] | str) -> Callable[[Tensor, Tensor], Tensor]:
    name, kwargs = split_spec(spec)
    if name not in DISTORTIONS or kwargs:
        raise ValueError(f"distortion must be one of {sorted(DISTORTIONS)} (no arguments), got {spec!r}")
    return DISTORTIONS[name]


__all__ = ["build_distortion", "mse", "ms_ssim_loss", "ms_ssim_betas", "ms_ssim_index", "ms_ssim_per_image"]
