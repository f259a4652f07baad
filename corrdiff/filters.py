"""Image filters shared by the training losses (:mod:`corrdiff.losses`) and the metrics (:mod:`corrdiff.metrics`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def laplacian(image: Tensor, padding: int = 0) -> Tensor:
    """The 3x3 Laplacian of each channel of a (B, C, H, W) image (high frequencies)."""
    c = image.shape[1]
    kernel = image.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(c, 1, 3, 3)
    return F.conv2d(image, kernel, groups=c, padding=padding)
