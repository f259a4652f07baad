"""Band-pass distribution distance: do the decode and the original have the same texture statistics?

Per scale of a Laplacian pyramid of the luminance, the Wasserstein-1 distance between the
distributions of the coefficients of decode and original, relative to the original's mean absolute
coefficient, averaged over scales (0 = the same texture statistics). The high-frequency ratio is met
by noise as well as by texture; this is not: blur shrinks the distribution, noise makes it Gaussian
where natural images are heavy-tailed (Field 1987; Simoncelli & Olshausen 2001), and a wrong scale
shows at that scale.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from corrdiff.image_io import to_tensor

#: ITU-R BT.601 luma weights of R, G, B
BT601 = (0.299, 0.587, 0.114)


def bandpass_levels(luma: Tensor, scales: int) -> list[Tensor]:
    """Band-pass levels of a Laplacian pyramid (Burt & Adelson 1983) of a (1, 1, H, W) image:
    level k = G_k - up(G_{k+1}), G_{k+1} = 2x2 average of a 5-tap binomial blur of G_k."""
    kernel = luma.new_tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = torch.outer(kernel, kernel)[None, None]
    levels, current = [], luma
    for _ in range(scales):
        if min(current.shape[-2:]) < 8:
            break
        blurred = F.conv2d(F.pad(current, (2, 2, 2, 2), mode="reflect"), kernel)
        coarse = F.avg_pool2d(blurred, 2)
        up = F.interpolate(coarse, size=current.shape[-2:], mode="bilinear", align_corners=False)
        levels.append((current - up)[..., 2:-2, 2:-2])  # without the border the padding shaped
        current = coarse
    return levels


def bandpass_distance(reference: np.ndarray, test: np.ndarray, scales: int = 4) -> float:
    """Mean over scales of W1(coefficients of test, of reference) / mean |coefficient of reference|
    (see the module docstring; lower is better, 0 = the same band-pass statistics)."""
    weights = torch.tensor(BT601, dtype=torch.float64).view(1, 3, 1, 1)

    def levels(rgb: np.ndarray) -> list[Tensor]:
        return bandpass_levels((to_tensor(rgb).double() * weights).sum(1, keepdim=True), scales)

    distances = []
    for ref, tst in zip(levels(reference), levels(test)):
        scale = ref.abs().mean()
        if scale > 0:  # equal sample sizes: W1 is the mean gap between the sorted samples
            distances.append(float((ref.flatten().sort().values - tst.flatten().sort().values).abs().mean() / scale))
    return float(np.mean(distances)) if distances else float("nan")
