"""The channel-conditional prior (Minnen & Singh, "Channel-wise Autoregressive Entropy Models for Learned Image
Compression", ICIP 2020, without latent residual prediction), registered as the prior ``channel_hyperprior``.

The latent's channels are split into S slices, coded in order. Slice k's (scales, means) come from a small
network over the hyper features (h_s's output, 2 x latent_channels) and the slices already decoded, at every
position (3 x 3 convolutions: a slice sees its decoded predecessors around each position, not only at it)::

    y --h_a--> z --Q--> z_hat --h_s--> hyper                           streams: z, y_slice_0 .. y_slice_{S-1}
    slice k:   (scales, means) = slice_k(hyper, y_hat[slices 0 .. k-1])
    y_hat[slice k] = Q(y[slice k] - means) + means

Decoding takes S passes over the whole latent (one per slice, each fully parallel over the positions). The
parts, their streams and the coding loop are :class:`~corrdiff.modules.context_prior.PartwiseHyperprior`'s, with
every guarantee of the mean-scale hyperprior (:mod:`corrdiff.modules.entropy_coding`): at coding time h_s and the
slice networks run in float64 and their outputs are snapped to the scale table and the 2^-8 mean grid; a slice
network's input, the dequantised earlier slices, is bit for bit the same on both sides. Each stream holds its
slice's elements in channel, row, column order and codes at least MIN_SYMBOLS symbols, so the narrowest slice
needs MIN_SYMBOLS channels (a 1 x 1 latent; the model validator checks it with :meth:`stream_symbols`).
docs/bitstream.md section 5.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from corrdiff.modules.context_prior import PartwiseHyperprior
from corrdiff.modules.entropy_coding import coding_params, exact_call, snap_means, ste_round
from corrdiff.modules.priors import _z_hw
from corrdiff.registry import PRIORS


def slice_sizes(latent_channels: int, slices: int | Sequence[int]) -> tuple[int, ...]:
    """Channels per slice: ``slices`` as given (they must add up to ``latent_channels``), or that many slices
    as equal as they can be (the first ``latent_channels % slices`` one channel wider)."""
    if isinstance(slices, int):
        if not 1 <= slices <= latent_channels:
            raise ValueError(f"slices must be in [1, {latent_channels}] (the latent's channels), got {slices}")
        base, extra = divmod(latent_channels, slices)
        return tuple(base + (k < extra) for k in range(slices))
    sizes = tuple(int(s) for s in slices)
    if not sizes or min(sizes) < 1 or sum(sizes) != latent_channels:
        raise ValueError(f"slice sizes must be positive and add up to {latent_channels}, got {list(sizes)}")
    return sizes


def slice_network(in_channels: int, out_channels: int, width: int) -> nn.Sequential:
    """(hyper, earlier slices) -> (scales, means) of one slice: three 3 x 3 convolutions."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(width, 2 * out_channels, 3, padding=1),
    )


@PRIORS.register("channel_hyperprior")
class ChannelSliceHyperprior(PartwiseHyperprior):
    """Mean-scale hyperprior with channel-conditional slices (see the module doc); 1 + S streams.

    h_a, h_s, the z bottleneck, the Gaussian conditional and the grids are the mean-scale hyperprior's; h_s's
    output is the hyper feature map. ``slices``: the number of equal slices or their sizes (channels each).
    ``slice_width``: the width of each slice network (default: 2 x latent_channels, at least 32).
    """

    def __init__(
        self,
        latent_channels: int,
        hyper_channels: int = 128,
        scale_min: float = 0.11,
        scale_max: float = 256.0,
        scale_levels: int = 64,
        slices: int | Sequence[int] = 4,
        slice_width: int | None = None,
    ):
        super().__init__(latent_channels, hyper_channels, scale_min, scale_max, scale_levels)
        m = latent_channels
        self.slice_sizes = slice_sizes(m, slices)
        self.slice_starts = (0, *itertools.accumulate(self.slice_sizes))  # slice k: channels [start_k, start_k+1)
        self.streams = ("z",) + tuple(f"y_slice_{k}" for k in range(len(self.slice_sizes)))
        width = slice_width or max(32, 2 * m)
        self.slice_networks = nn.ModuleList(
            slice_network(2 * m + start, size, width) for start, size in zip(self.slice_starts, self.slice_sizes))

    # ------------------------------------------------------------------ training
    def forward(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Training: z by noise (its likelihoods) and straight-through rounding; slice by slice, its parameters from
        hyper and the straight-through-rounded earlier slices, and its likelihoods under them."""
        latent_hw = y.shape[-2:]
        z_hat, z_likelihoods = self._training_z(y)
        hyper = self.h_s(z_hat)[..., : latent_hw[0], : latent_hw[1]]
        decoded: list[Tensor] = []
        likelihoods: list[Tensor] = []
        for k, network in enumerate(self.slice_networks):
            y_k = y[:, self.slice_starts[k]: self.slice_starts[k + 1]]
            scales, means = network(torch.cat([hyper, *decoded], dim=1)).chunk(2, dim=1)
            means = snap_means(means)
            likelihoods.append(self.gaussian_conditional(y_k, scales, means)[1])
            decoded.append(ste_round(y_k - means) + means)
        return torch.cat(decoded, dim=1), {"z": z_likelihoods, "y": torch.cat(likelihoods, dim=1)}

    # ------------------------------------------------------------------ coding
    def stream_symbols(self, latent_hw: tuple[int, int]) -> tuple[int, ...]:
        z_h, z_w = _z_hw(latent_hw)
        positions = int(latent_hw[0]) * int(latent_hw[1])
        return (self.entropy_bottleneck.channels * z_h * z_w, *(size * positions for size in self.slice_sizes))

    def _parts(self, latent_hw: tuple[int, int], device: torch.device) -> list[tuple[str, Tensor]]:
        channel = torch.arange(self.latent_channels, device=device).view(-1, 1, 1)
        shape = (self.latent_channels, int(latent_hw[0]), int(latent_hw[1]))
        return [(name, ((channel >= start) & (channel < end)).expand(shape))
                for name, start, end in zip(self.streams[1:], self.slice_starts, self.slice_starts[1:])]

    def _part_params(self, part: str, hyper: Tensor, y_hat: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Slice k's network in float64 over hyper and the decoded slices before it, then :func:`coding_params`
        (the slice's channels are contiguous: its elements in ``y[0][mask]`` order are the output's, flattened)."""
        k = self.streams.index(part) - 1
        earlier = y_hat[:, : self.slice_starts[k]]
        scales, means = exact_call(self.slice_networks[k], torch.cat([hyper, earlier], dim=1)).chunk(2, dim=1)
        return coding_params(self.scale_grid, self.gaussian_conditional, scales.reshape(1, -1),
                             means.reshape(1, -1), part)


__all__ = ["ChannelSliceHyperprior", "slice_network", "slice_sizes"]
