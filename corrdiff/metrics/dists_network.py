"""The DISTS network (Ding, Ma, Wang, Simoncelli 2020): structure and texture similarity of VGG-16 features.

Built from parts handed to it, so that nothing is fetched behind the caller's back: the convolutional
part of a torchvision VGG-16 (whose weights the caller loaded, :func:`corrdiff.metrics.networks.build_dists`)
and the learned per-channel weights alpha (texture) and beta (structure) of the DISTS authors, as
torchmetrics ships them. As in the paper and torchmetrics' implementation, VGG's max-pooling layers are
replaced by L2 pooling, the image itself counts as a stage of 3 channels, and the images are compared
at full resolution. tests/test_metrics.py checks the score against torchmetrics' ``DISTSNetwork``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: ImageNet normalisation of VGG's inputs
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: the stabilising constants of both similarity terms
C_TEXTURE = C_STRUCTURE = 1e-6


class L2Pool(nn.Module):
    """Downsampling by 2 without aliasing: sqrt of a 3x3 Hann-window blur of x^2, stride 2 (padding 1)."""

    def __init__(self, channels: int):
        super().__init__()
        hann = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]  # 0.5, 1, 0.5
        window = torch.outer(hann, hann)
        self.register_buffer("window", (window / window.sum()).float().expand(channels, 1, 3, 3).contiguous())

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x ** 2, self.window, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


def vgg_stages(features: nn.Sequential) -> nn.ModuleList:
    """VGG-16's convolutional layers up to relu5_3 in 5 stages, each ending at a ``reluK_*`` output; the
    max-pooling between stages becomes :class:`L2Pool` of the channels before it."""
    stages, current, channels = [], [], 3
    for layer in features:
        if isinstance(layer, nn.MaxPool2d):
            stages.append(nn.Sequential(*current))
            current = [L2Pool(channels)]
            if len(stages) == 5:
                break
            continue
        if isinstance(layer, nn.Conv2d):
            channels = layer.out_channels
        current.append(layer)
    if len(stages) != 5:
        raise ValueError(f"expected VGG-16's 5 blocks ending in max pooling, found {len(stages)}")
    return nn.ModuleList(stages)


class DISTS(nn.Module):
    """DISTS distance per image, shape (B,), of images in [0, 1]; frozen, eval mode.

    Args:
        features: ``torchvision.models.vgg16(...).features`` with its weights loaded.
        alpha, beta: the learned weights of the texture and structure terms, (1, 1475, 1, 1) each:
            one per channel of the stages (3 + 64 + 128 + 256 + 512 + 512).
    """

    def __init__(self, features: nn.Sequential, alpha: Tensor, beta: Tensor):
        super().__init__()
        self.stages = vgg_stages(features)
        self.channels = [3] + [self._out_channels(stage) for stage in self.stages]
        if alpha.shape != (1, sum(self.channels), 1, 1) or beta.shape != alpha.shape:
            raise ValueError(f"alpha and beta must be (1, {sum(self.channels)}, 1, 1), got {tuple(alpha.shape)} "
                             f"and {tuple(beta.shape)}")
        self.register_buffer("alpha", alpha.detach().float().clone())
        self.register_buffer("beta", beta.detach().float().clone())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _out_channels(stage: nn.Sequential) -> int:
        return [layer.out_channels for layer in stage if isinstance(layer, nn.Conv2d)][-1]

    def train(self, mode: bool = True) -> "DISTS":  # always frozen
        return super().train(False)

    def features(self, x: Tensor) -> list[Tensor]:
        """The image, then the output of every stage."""
        out, h = [x], (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, self.channels, dim=1)
        betas = torch.split(self.beta / total, self.channels, dim=1)
        texture = structure = x.new_zeros(x.shape[0], 1, 1, 1)
        for fx, fy, alpha, beta in zip(self.features(x), self.features(y), alphas, betas):
            mx, my = fx.mean((2, 3), keepdim=True), fy.mean((2, 3), keepdim=True)
            vx, vy = ((fx - mx) ** 2).mean((2, 3), keepdim=True), ((fy - my) ** 2).mean((2, 3), keepdim=True)
            cov = (fx * fy).mean((2, 3), keepdim=True) - mx * my
            same_mean = (2 * mx * my + C_TEXTURE) / (mx ** 2 + my ** 2 + C_TEXTURE)
            same_structure = (2 * cov + C_STRUCTURE) / (vx + vy + C_STRUCTURE)
            texture = texture + (alpha * same_mean).sum(1, keepdim=True)
            structure = structure + (beta * same_structure).sum(1, keepdim=True)
        return 1 - (texture + structure).flatten()
