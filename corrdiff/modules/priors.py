"""Entropy models for the latent y, built on compressai's EntropyBottleneck and GaussianConditional.

Every prior has the CompressAI-style interface:

* ``forward(y) -> (y_hat, likelihoods)`` for training: likelihoods from additive
  uniform noise, ``y_hat`` by straight-through rounding (what the networks downstream
  see, Minnen & Singh 2020 "mixed" quantisation);
* ``compress(y) -> (streams, y_hat)`` and ``decompress(streams, latent_hw) -> y_hat``
  with real range coding; ``update()`` builds the CDF tables; ``aux_loss()`` trains
  the bottleneck's quantiles (its own optimiser).

The entropy coder's guarantees (float64 parameter networks and parameters snapped to grids at coding time, checked
indexes and symbols, bounded stream lengths, a padded range decoder) live in :mod:`corrdiff.modules.entropy_coding`,
which every prior uses (the checkerboard context prior too, :mod:`corrdiff.modules.context_prior`); they are
re-exported here under their own names (``check_indexes``, ``check_symbols``, ``max_stream_bytes``,
``MIN_SYMBOLS``, ``MAX_SYMBOL``, ``range_decoder_padding``, ``bound_range_decoders``, ``ScaleGrid``,
``snap_means``, ...). In brief, for the mean-scale hyperprior: at coding time the hyper-synthesis h_s runs in
float64, and its outputs are snapped to grids before use: scales to an index in a log-uniform table
(:meth:`ScaleGrid.index`), means to multiples of 2^-8. The same grids are used in training (straight-through).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from corrdiff.compressai_parts import EntropyBottleneck, GaussianConditional
from corrdiff.errors import EntropyCoderError  # noqa: F401 (priors raised it from here)
from corrdiff.modules.entropy_coding import (  # noqa: F401 (re-exported: their home before entropy_coding)
    CODER_PRECISION,
    MAX_BITS_PER_SYMBOL,
    MAX_SYMBOL,
    MEAN_GRID,
    MIN_SYMBOLS,
    ScaleGrid,
    _BoundedRangeDecoder,
    _check_bottleneck_input,
    _dequantized,
    bound_range_decoders,
    check_indexes,
    check_symbols,
    coding_params,
    exact_call,
    max_stream_bytes,
    range_decoder_padding,
    snap_means,
    ste_round,
)
from corrdiff.registry import PRIORS


def _z_hw(latent_hw: tuple[int, int]) -> tuple[int, int]:
    """Size of the hyper-latent z for a latent y of ``latent_hw`` (h_a halves it twice, rounding up)."""
    return -(-latent_hw[0] // 4), -(-latent_hw[1] // 4)


class _BasePrior(nn.Module):
    """Shared plumbing: update(), aux_loss() and the list of entropy-coded streams."""

    streams: tuple[str, ...] = ()

    def __init__(self, latent_channels: int):
        super().__init__()
        self.latent_channels = latent_channels

    def aux_loss(self) -> Tensor:
        return sum(m.loss() for m in self.modules() if isinstance(m, EntropyBottleneck))

    def stream_symbols(self, latent_hw: tuple[int, int]) -> tuple[int, ...]:
        """How many symbols each of :attr:`streams` codes for a latent of ``latent_hw``."""
        raise NotImplementedError

    @property
    def hyper_synthesis(self) -> nn.Module | None:
        """The network that maps the side information to the latent's entropy parameters (None: no side
        information). It runs inside :meth:`decompress`; profilers time it through this accessor."""
        return None

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

    def stream_symbols(self, latent_hw: tuple[int, int]) -> tuple[int, ...]:
        return (self.latent_channels * latent_hw[0] * latent_hw[1],)

    @torch.no_grad()
    def compress(self, y: Tensor) -> tuple[list[bytes], Tensor]:
        _check_bottleneck_input(self.entropy_bottleneck, y, "y")
        strings = self.entropy_bottleneck.compress(y)
        y_hat = _dequantized(self.entropy_bottleneck, y, self.entropy_bottleneck._get_medians())
        return [strings[0]], y_hat

    @torch.no_grad()
    def decompress(self, streams: list[bytes], latent_hw: tuple[int, int]) -> Tensor:
        bound_range_decoders(self)
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

    @property
    def hyper_synthesis(self) -> nn.Module:
        """h_s (z_hat -> scales and means of y)."""
        return self.h_s

    def _scales_means(self, z_hat: Tensor, latent_hw: tuple[int, int], exact: bool) -> tuple[Tensor, Tensor]:
        """h_s(z_hat) cropped to y's size; ``exact`` runs it in float64 (coding time)."""
        out = exact_call(self.h_s, z_hat) if exact else self.h_s(z_hat)
        out = out[..., : latent_hw[0], : latent_hw[1]]
        scales, means = out.chunk(2, dim=1)
        return scales, means

    def _training_z(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Training: z = h_a(y), its likelihoods (additive noise) and z_hat by straight-through rounding about the
        bottleneck's medians; what every hyperprior's ``forward`` starts with."""
        z = self.h_a(y)
        _, z_likelihoods = self.entropy_bottleneck(z)
        z_median = self.entropy_bottleneck._get_medians()
        return ste_round(z - z_median) + z_median, z_likelihoods

    def forward(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z_hat, z_likelihoods = self._training_z(y)
        scales, means = self._scales_means(z_hat, y.shape[-2:], exact=False)
        means = snap_means(means)
        _, y_likelihoods = self.gaussian_conditional(y, scales, means)
        y_hat = ste_round(y - means) + means
        return y_hat, {"z": z_likelihoods, "y": y_likelihoods}

    def update(self, force: bool = False) -> bool:
        updated = self.entropy_bottleneck.update(force=force)
        updated |= self.gaussian_conditional.update_scale_table(self.scale_grid.table(), force=force)
        return updated

    def stream_symbols(self, latent_hw: tuple[int, int]) -> tuple[int, ...]:
        z_h, z_w = _z_hw(latent_hw)
        return self.entropy_bottleneck.channels * z_h * z_w, self.latent_channels * latent_hw[0] * latent_hw[1]

    def _coding_params(self, z_hat: Tensor, latent_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Scale indexes and snapped means, identical on every machine (see module doc).

        EntropyCoderError for a non-finite scale or mean; the indexes are checked against the tables.
        """
        scales, means = self._scales_means(z_hat, latent_hw, exact=True)
        return coding_params(self.scale_grid, self.gaussian_conditional, scales, means, "y")

    @torch.no_grad()
    def compress(self, y: Tensor) -> tuple[list[bytes], Tensor]:
        z = self.h_a(y)
        _check_bottleneck_input(self.entropy_bottleneck, z, "z")
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = _dequantized(self.entropy_bottleneck, z, self.entropy_bottleneck._get_medians())
        indexes, means = self._coding_params(z_hat, y.shape[-2:])
        check_symbols(y, means, "y")
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        y_hat = _dequantized(self.gaussian_conditional, y, means)
        return [z_strings[0], y_strings[0]], y_hat

    @torch.no_grad()
    def decompress(self, streams: list[bytes], latent_hw: tuple[int, int]) -> Tensor:
        bound_range_decoders(self)
        z_hat = self.entropy_bottleneck.decompress([streams[0]], _z_hw(latent_hw))
        indexes, means = self._coding_params(z_hat, latent_hw)
        return self.gaussian_conditional.decompress([streams[1]], indexes, means=means)
