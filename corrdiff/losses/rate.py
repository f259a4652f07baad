"""Rate term: estimated bits per pixel from the entropy model's likelihoods.

R = sum over latents of -log2 p(y_hat) (and of z_hat for the hyperprior), divided by
the number of image pixels (Ballé et al. 2018, eq. 2). Computed in float32 whatever
the autocast precision, since log-likelihoods of small probabilities underflow in half.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor


def bits_per_pixel_each(likelihoods: Mapping[str, Tensor], num_pixels: int) -> Tensor:
    """The estimated bpp of each image of the batch, shape (B,); ``num_pixels`` = H * W of one image."""
    total = 0.0
    for lik in likelihoods.values():
        lik = lik.float().clamp_min(1e-9)
        total = total + torch.log(lik).flatten(1).sum(dim=1)
    return total / (-math.log(2) * num_pixels)


def bits_per_pixel(likelihoods: Mapping[str, Tensor], num_pixels: int) -> Tensor:
    """Mean over the batch of the estimated bpp; ``num_pixels`` = H * W of one image."""
    return bits_per_pixel_each(likelihoods, num_pixels).mean()
