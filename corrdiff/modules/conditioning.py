"""Conditioning network C: y_hat -> a feature pyramid for the score network.

As in CDC (Yang & Mandt, "Lossy image compression with conditional diffusion
models", NeurIPS 2023), the latent is decoded into features at every resolution
of the U-Net; level l of the pyramid has stride 2^l (level 0 = full resolution).
The features depend on y_hat only, so the codec computes them once per image and
reuses them at every sampling step.

The network is convolutional (receptive radius: 2 latent cells), so the codec computes it
on overlapping tiles for large images (:mod:`corrdiff.modules.tiling`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrdiff.modules.transforms import STRIDE
from corrdiff.registry import CONDITIONERS


@CONDITIONERS.register("pyramid")
class PyramidConditioner(nn.Module):
    """Upsamples y_hat (stride 16) by transposed convolutions, tapping one feature map per level.

    Args:
        latent_channels: width of y_hat (wired by the codec).
        channels: output width of each level, from full resolution (stride 1) down; at most 5 levels.
        width: width of the upsampling trunk.
    """

    # in latent cells: the stem's 3x3 reaches 1 cell, the 4x4/2 transposed convolutions 3/4 of their
    # input pixel each (3/4 + 3/8 + ...), a head 3x3 one pixel of its level: < 2.5 cells from an
    # output pixel's centre, so an output cell depends on input cells at most 2 away
    receptive_radius = 2

    def __init__(self, latent_channels: int, channels: tuple[int, ...] = (64, 64, 128, 128), width: int = 96):
        super().__init__()
        channels = tuple(channels)
        if not 1 <= len(channels) <= 5:
            raise ValueError(f"pyramid has 1..5 levels (strides 1..16), got {len(channels)}")
        self.out_channels = channels
        self.stem = nn.Sequential(nn.Conv2d(latent_channels, width, 3, padding=1), nn.SiLU())
        # upsample 16 -> 8 -> 4 -> 2 -> 1; tap the levels that the U-Net uses
        self.ups = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.SiLU()) for _ in range(4)
        )
        self.heads = nn.ModuleList(nn.Conv2d(width, c, 3, padding=1) for c in channels)

    def forward(self, y_hat: Tensor) -> list[Tensor]:
        levels = len(self.out_channels)
        h = self.stem(y_hat)
        features: list[Tensor | None] = [None] * levels
        stride, level = STRIDE, 4
        # without autograd the activation overwrites the upsampled map it reads (same values; one
        # copy of the widest, full-resolution map less at the peak)
        inplace = not torch.is_grad_enabled()
        for up in [None, *self.ups]:
            if up is not None:
                conv, _ = up
                h, stride, level = F.silu(conv(h), inplace=inplace), stride // 2, level - 1
            if level < levels:
                features[level] = self.heads[level](h)
        return features  # type: ignore[return-value]


@CONDITIONERS.register("image_pyramid")
class ImagePyramidConditioner(nn.Module):
    """The conditioning pyramid of a base codec that decodes to pixels (the AVIF base, docs/avif_base.md):
    a narrow full-resolution stem, then stride-2 convolutions down, tapping one feature map per level (level
    l at stride 2^l, as :class:`PyramidConditioner`'s) through 1x1 heads. Kept cheap (about 5 k
    multiply-adds a pixel for the ``avif_small`` preset): the score network also sees x0_e itself, so the
    pyramid mostly carries the quality and the decode's local statistics.

    Args:
        latent_channels: channels of the input (the base's ``condition_channels``; wired by the codec).
        channels: output width of each level, from full resolution down; at most 5 levels.
        width: width of the trunk below full resolution (the stem has half of it).
    """

    receptive_radius = None  # computed whole (its input is the image, not a latent of 16-pixel cells)

    def __init__(self, latent_channels: int, channels: tuple[int, ...] = (32, 64, 64, 96), width: int = 32):
        super().__init__()
        channels = tuple(channels)
        if not 1 <= len(channels) <= 5:
            raise ValueError(f"pyramid has 1..5 levels (strides 1..16), got {len(channels)}")
        self.out_channels = channels
        stem = max(width // 2, 1)
        self.stem = nn.Sequential(nn.Conv2d(latent_channels, stem, 3, padding=1), nn.SiLU())
        self.downs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(stem if level == 1 else width, width, 4, stride=2, padding=1), nn.SiLU())
            for level in range(1, len(channels)))
        self.heads = nn.ModuleList(nn.Conv2d(stem if level == 0 else width, c, 1) for level, c in enumerate(channels))

    def forward(self, image: Tensor) -> list[Tensor]:
        h = self.stem(image)
        features = [self.heads[0](h)]
        for down, head in zip(self.downs, self.heads[1:]):
            h = down(h)
            features.append(head(h))
        return features
