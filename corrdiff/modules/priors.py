"""Entropy models for the latent y, built on compressai's EntropyBottleneck and GaussianConditional.

Every prior has the CompressAI-style interface:

* ``forward(y) -> (y_hat, likelihoods)`` for training: likelihoods from additive
  uniform noise, ``y_hat`` by straight-through rounding (what the networks downstream
  see, Minnen & Singh 2020 "mixed" quantisation);
* ``compress(y) -> (streams, y_hat)`` and ``decompress(streams, latent_hw) -> y_hat``
  with real range coding; ``update()`` builds the CDF tables; ``aux_loss()`` trains
  the bottleneck's quantiles (its own optimiser).

Cross-machine robustness (the classic failure of hyperprior codecs: a float that
differs in its last bit between machines or thread counts flips a scale index and
the decoder desynchronises): at coding time the hyper-synthesis h_s runs in float64,
and its outputs are snapped to grids before use: scales to an index in a log-uniform
table (:meth:`ScaleGrid.index`), means to multiples of 2^-8. A flip then needs a
float64 discrepancy (~1e-16 relative) landing on a grid boundary. The same grids are
used in training (straight-through), so training and coding see the same model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call

from corrdiff.compressai_parts import EntropyBottleneck, GaussianConditional
from corrdiff.registry import PRIORS

MEAN_GRID = 2.0**-8


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def snap_means(mu: Tensor) -> Tensor:
    """Snap means to multiples of :data:`MEAN_GRID` (straight-through in training)."""
    return ste_round(mu / MEAN_GRID) * MEAN_GRID


class ScaleGrid:
    """A log-uniform table of Gaussian scales, s_i = s_min * (s_max/s_min)^(i/(L-1)).

    ``index(s)`` rounds log(s) to the nearest table entry (computed in float64).
    The defaults span compressai's own table (0.11 ... 256, 64 levels).
    """

    def __init__(self, s_min: float = 0.11, s_max: float = 256.0, levels: int = 64):
        self.log_min = math.log(s_min)
        self.log_step = (math.log(s_max) - self.log_min) / (levels - 1)
        self.levels = levels

    def table(self) -> list[float]:
        return [math.exp(self.log_min + i * self.log_step) for i in range(self.levels)]

    def index(self, scales: Tensor) -> Tensor:
        log_s = torch.log(scales.double().clamp_min(1e-12))
        idx = torch.round((log_s - self.log_min) / self.log_step)
        return idx.clamp_(0, self.levels - 1).to(torch.int32)


def _dequantized(entropy_model, x: Tensor, means: Tensor) -> Tensor:
    """round(x - means) + means: what decompress() of the just-coded stream returns, without decoding it."""
    return entropy_model.quantize(x, "dequantize", means)


class _BasePrior(nn.Module):
    """Shared plumbing: update(), aux_loss() and the list of entropy-coded streams."""

    streams: tuple[str, ...] = ()

    def __init__(self, latent_channels: int):
        super().__init__()
        self.latent_channels = latent_channels

    def aux_loss(self) -> Tensor:
        return sum(m.loss() for m in self.modules() if isinstance(m, EntropyBottleneck))

    def entropy_tables_ready(self) -> bool:
        return all(
            m._quantized_cdf.numel() > 0
            for m in self.modules()
            if isinstance(m, (EntropyBottleneck, GaussianConditional))
        )


@PRIORS.register("factorized")
class FactorizedPrior(_BasePrior):
    """Fully factorized prior on y (Ballé et al. 2017/2018), one stream: y."""

    streams = ("y",)

    def __init__(self, latent_channels: int):
        super().__init__(latent_channels)
        self.entropy_bottleneck = EntropyBottleneck(latent_channels)

    def forward(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        _, likelihoods = self.entropy_bottleneck(y)
        medians = self.entropy_bottleneck._get_medians()
        return ste_round(y - medians) + medians, {"y": likelihoods}

    def update(self, force: bool = False) -> bool:
        return self.entropy_bottleneck.update(force=force)

    @torch.no_grad()
    def compress(self, y: Tensor) -> tuple[list[bytes], Tensor]:
        strings = self.entropy_bottleneck.compress(y)
        y_hat = _dequantized(self.entropy_bottleneck, y, self.entropy_bottleneck._get_medians())
        return [strings[0]], y_hat

    @torch.no_grad()
    def decompress(self, streams: list[bytes], latent_hw: tuple[int, int]) -> Tensor:
        return self.entropy_bottleneck.decompress([streams[0]], latent_hw)


@PRIORS.register("mean_scale_hyperprior")
class MeanScaleHyperprior(_BasePrior):
    """Mean-scale Gaussian hyperprior (Minnen, Ballé, Toderici, NeurIPS 2018, without context).

    ::

        y --h_a--> z --Q--> z_hat --h_s--> (scales, means)       streams: z, y
        y_hat = Q(y - means) + means

    h_a halves the resolution twice (z is at 1/64 of the image; any size, no padding
    of y); h_s's output is cropped to y's size.
    """

    streams = ("z", "y")

    def __init__(
        self,
        latent_channels: int,
        hyper_channels: int = 128,
        scale_min: float = 0.11,
        scale_max: float = 256.0,
        scale_levels: int = 64,
    ):
        super().__init__(latent_channels)
        m, n = latent_channels, hyper_channels
        self.h_a = nn.Sequential(
            nn.Conv2d(m, n, 3, padding=1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(n, n, 5, stride=2, padding=2), nn.LeakyReLU(inplace=True),
            nn.Conv2d(n, n, 5, stride=2, padding=2),
        )
        self.h_s = nn.Sequential(
            nn.ConvTranspose2d(n, m, 5, stride=2, padding=2, output_padding=1), nn.LeakyReLU(inplace=True),
            nn.ConvTranspose2d(m, m * 3 // 2, 5, stride=2, padding=2, output_padding=1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(m * 3 // 2, m * 2, 3, padding=1),
        )
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.scale_grid = ScaleGrid(scale_min, scale_max, scale_levels)
        self.gaussian_conditional = GaussianConditional(self.scale_grid.table())

    def _scales_means(self, z_hat: Tensor, latent_hw: tuple[int, int], exact: bool) -> tuple[Tensor, Tensor]:
        """h_s(z_hat) cropped to y's size; ``exact`` runs it in float64 (coding time)."""
        if exact:
            params = {k: v.double() for k, v in self.h_s.named_parameters()}
            out = functional_call(self.h_s, params, (z_hat.double(),))
        else:
            out = self.h_s(z_hat)
        out = out[..., : latent_hw[0], : latent_hw[1]]
        scales, means = out.chunk(2, dim=1)
        return scales, means

    def forward(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.h_a(y)
        _, z_likelihoods = self.entropy_bottleneck(z)
        z_median = self.entropy_bottleneck._get_medians()
        z_hat = ste_round(z - z_median) + z_median
        scales, means = self._scales_means(z_hat, y.shape[-2:], exact=False)
        means = snap_means(means)
        _, y_likelihoods = self.gaussian_conditional(y, scales, means)
        y_hat = ste_round(y - means) + means
        return y_hat, {"z": z_likelihoods, "y": y_likelihoods}

    def update(self, force: bool = False) -> bool:
        updated = self.entropy_bottleneck.update(force=force)
        updated |= self.gaussian_conditional.update_scale_table(self.scale_grid.table(), force=force)
        return updated

    def _coding_params(self, z_hat: Tensor, latent_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Scale indexes and snapped means, identical on every machine (see module doc)."""
        scales, means = self._scales_means(z_hat, latent_hw, exact=True)
        means = (torch.round(means / MEAN_GRID) * MEAN_GRID).float()
        return self.scale_grid.index(scales), means

    @torch.no_grad()
    def compress(self, y: Tensor) -> tuple[list[bytes], Tensor]:
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = _dequantized(self.entropy_bottleneck, z, self.entropy_bottleneck._get_medians())
        indexes, means = self._coding_params(z_hat, y.shape[-2:])
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        y_hat = _dequantized(self.gaussian_conditional, y, means)
        return [z_strings[0], y_strings[0]], y_hat

    @torch.no_grad()
    def decompress(self, streams: list[bytes], latent_hw: tuple[int, int]) -> Tensor:
        z_hw = tuple(-(-s // 4) for s in latent_hw)
        z_hat = self.entropy_bottleneck.decompress([streams[0]], z_hw)
        indexes, means = self._coding_params(z_hat, latent_hw)
        return self.gaussian_conditional.decompress([streams[1]], indexes, means=means)
