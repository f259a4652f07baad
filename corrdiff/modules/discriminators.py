"""Conditional patch discriminators for adversarial training (corrdiff/training/adversarial.py).

A discriminator judges an image ``sample`` (B, 3, H, W) given a conditioning tensor ``condition``
(B, condition_channels, H, W) of the same size, e.g. the end-to-end decode x0_e (HiFiC, Mentzer et
al. 2020, conditions on the latent; x0_e = D(y_hat) carries the same information at full resolution),
and, for the timestep-conditioned kind, the noise level t (Denoising Diffusion GANs, Xiao et al.
2022, judge (x_{t-1}, x_t, t)). It returns one logit per patch and the activations of every layer
(for the feature-matching term)::

    logits, features = discriminator(sample, condition, t)

The layers are a PatchGAN (Isola et al. 2017): 4x4 convolutions, stride 2 but the last two, leaky
ReLU, spectral normalisation on every convolution (Miyato et al. 2018) instead of batch statistics,
so a logit depends on its own patch alone (receptive field 70 pixels for 3 strided layers). The
timestep enters as a learned per-channel bias of the first layer's output, from the same sinusoidal
embedding as the score network's.

A discriminator is training state: it lives on the LightningModule (and in its checkpoints), never
in the codec, a model file or its fingerprint.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from corrdiff.modules.score_net import timestep_embedding
from corrdiff.registry import DISCRIMINATORS


class PatchDiscriminator(nn.Module):
    """PatchGAN on [sample, condition] (see the module docstring).

    Args:
        condition_channels: channels of the conditioning tensor (wiring: set by the training module).
        channels: width of the first layer (doubled per strided layer, at most 8x).
        strided_layers: 4x4 stride-2 layers; the receptive field is 70 pixels for 3, 34 for 2.
        timestep_dim: size of the timestep embedding (0: the discriminator does not see t).
        spectral: spectral normalisation of every convolution (False: plain convolutions, for use with
            an R1 penalty instead, as StyleGAN; they start with a usable output scale, where a
            spectrally normalised stack starts with logits of ~1e-3 and takes longer to get going).
    """

    uses_timestep = False

    def __init__(self, condition_channels: int, channels: int = 64, strided_layers: int = 3, timestep_dim: int = 0,
                 spectral: bool = True):
        super().__init__()
        if strided_layers < 1 or channels < 1:
            raise ValueError(f"a patch discriminator needs channels >= 1 and strided_layers >= 1, got "
                             f"{channels} and {strided_layers}")
        if self.uses_timestep != (timestep_dim > 0):
            raise ValueError(f"{type(self).__name__}: timestep_dim must be {'> 0' if self.uses_timestep else '0'}")
        norm = spectral_norm if spectral else (lambda conv: conv)
        widths = [min(channels * 2**i, channels * 8) for i in range(strided_layers + 1)]
        cin = 3 + condition_channels
        self.layers = nn.ModuleList()
        for i, width in enumerate(widths):
            stride = 2 if i < strided_layers else 1
            self.layers.append(norm(nn.Conv2d(cin, width, 4, stride, 1)))
            cin = width
        self.head = norm(nn.Conv2d(cin, 1, 4, 1, 1))
        self.timestep_dim = timestep_dim
        self.timestep_bias = (nn.Sequential(nn.Linear(timestep_dim, widths[0]), nn.SiLU(),
                                            nn.Linear(widths[0], widths[0])) if timestep_dim else None)
        self.activation = nn.LeakyReLU(0.2)

    def forward(self, sample: Tensor, condition: Tensor, t: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        if sample.shape[-2:] != condition.shape[-2:]:
            raise ValueError(f"sample {tuple(sample.shape)} and condition {tuple(condition.shape)} differ in size")
        h = torch.cat([sample, condition.to(sample.dtype)], dim=1)
        features = []
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i == 0 and self.timestep_bias is not None:
                if t is None:
                    raise ValueError("this discriminator judges a noise level: pass t")
                h = h + self.timestep_bias(timestep_embedding(t, self.timestep_dim).to(h))[..., None, None]
            h = self.activation(h)
            features.append(h)
        return self.head(h), features


@DISCRIMINATORS.register("patch")
class ConditionalPatchDiscriminator(PatchDiscriminator):
    """``patch``: judges a clean image given its condition (for x0_d or x0_e)."""


@DISCRIMINATORS.register("timestep_patch")
class TimestepPatchDiscriminator(PatchDiscriminator):
    """``timestep_patch``: also sees the noise level t (for the DDGAN-style posterior term)."""

    uses_timestep = True

    def __init__(self, condition_channels: int, channels: int = 64, strided_layers: int = 3, timestep_dim: int = 64,
                 spectral: bool = True):
        super().__init__(condition_channels, channels, strided_layers, timestep_dim, spectral)


__all__ = ["ConditionalPatchDiscriminator", "PatchDiscriminator", "TimestepPatchDiscriminator"]
