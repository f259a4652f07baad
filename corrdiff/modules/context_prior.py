"""The checkerboard context prior (He et al., "Checkerboard Context Model for Efficient Learned Image
Compression", CVPR 2021), registered as the prior ``checkerboard_hyperprior``.

The latent's positions are split in a checkerboard: **anchors** at (i + j) even, **non-anchors** at (i + j) odd.
The anchors are coded first, with parameters from the hyperprior alone; the non-anchors then with parameters
from the hyperprior *and* a context network that sees the decoded anchors around them (a 5 x 5 convolution
masked to the anchor neighbours), fused by a small 1 x 1 network. Both passes run in parallel over the whole
latent (two decoder passes in all, not one per position as in a serial autoregressive model)::

    y --h_a--> z --Q--> z_hat --h_s--> hyper                        streams: z, y_anchors, y_non_anchors
    anchors:      (scales, means) = fuse(hyper, 0)
    non-anchors:  (scales, means) = fuse(hyper, context(decoded anchors, zero elsewhere))
    y_hat = Q(y - means) + means

A latent of one position (1 x 1) has no non-anchor position: there the first ceil(C/2) channels are the anchors
and the others the non-anchors (their context is the convolution's bias: its centre tap is masked), so that
neither stream is empty; a model needs ``latent_channels`` >= 2 * MIN_SYMBOLS = 8 (the loader checks it, with
:meth:`CheckerboardHyperprior.stream_symbols`).

Every guarantee of the mean-scale hyperprior is kept, with the same code (:mod:`corrdiff.modules.entropy_coding`):
at coding time h_s, the context network and the fusion network all run in float64 (:func:`exact_call`), and the
parameters are snapped to the same grids (scale indexes in the log-uniform table, means on 2^-8) before use; the
non-anchors' context is computed from the dequantised anchors, which the encoder and the decoder hold bit for bit
equal (the snapped means are float32 values and the symbols integers). Every index and symbol is checked before
the coder sees it, each stream codes at least MIN_SYMBOLS symbols and is bounded by ``stream_symbols``, and the
range decoder's input is padded. docs/bitstream.md section 5.

The coding loop is shared with the channel-conditional prior (:mod:`corrdiff.modules.channel_prior`):
:class:`PartwiseHyperprior` codes a latent in parts, one stream each, every part's parameters computed from the
hyper features and the parts decoded before it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrdiff.modules.entropy_coding import (
    _check_bottleneck_input,
    _dequantized,
    bound_range_decoders,
    check_symbols,
    coding_params,
    exact_call,
    snap_means,
    ste_round,
)
from corrdiff.modules.priors import MeanScaleHyperprior, _z_hw
from corrdiff.registry import PRIORS

#: The two parts of y, in the order they are coded (and their stream names).
PARTS = ("y_anchors", "y_non_anchors")


class CheckerboardMaskedConv2d(nn.Conv2d):
    """A convolution (odd kernel) that sees only the positions of the other checkerboard colour: taps at offsets
    (dy, dx) with dy + dx odd. At a non-anchor it reads anchors only, never its own position.

    The mask multiplies the weight in every call (the stored weight keeps its masked taps, unused); it is a
    non-persistent buffer, built here and never read from a model file.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5):
        if kernel_size % 2 != 1:
            raise ValueError(f"the checkerboard context needs an odd kernel size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        taps = torch.arange(kernel_size)
        mask = ((taps[:, None] + taps[None, :]) % 2 == 1).to(self.weight.dtype)  # centre (k//2, k//2): even, 0
        self.register_buffer("mask", mask[None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


def anchor_mask(channels: int, latent_hw: tuple[int, int], device: torch.device | str = "cpu") -> Tensor:
    """Boolean (channels, H, W): True at the anchors, positions with (i + j) even; for a 1 x 1 latent (no
    non-anchor position) the first ceil(channels / 2) channels (see the module doc)."""
    h, w = int(latent_hw[0]), int(latent_hw[1])
    if h * w == 1:
        return (torch.arange(channels, device=device) < -(-channels // 2)).view(channels, 1, 1)
    i, j = torch.arange(h, device=device), torch.arange(w, device=device)
    return ((i[:, None] + j[None, :]) % 2 == 0).expand(channels, h, w)


def anchor_count(channels: int, latent_hw: tuple[int, int]) -> int:
    """How many elements :func:`anchor_mask` marks (without building it)."""
    positions = int(latent_hw[0]) * int(latent_hw[1])
    return -(-channels // 2) if positions == 1 else channels * -(-positions // 2)


class PartwiseHyperprior(MeanScaleHyperprior):
    """A mean-scale hyperprior whose latent y is coded in parts, in order, one stream each after z's: part k's
    (scales, means) may depend on the hyper features and on the parts decoded before it (zero elsewhere in
    ``y_hat``). Subclasses give the parts (:meth:`_parts`: a name and a boolean (C, H, W) mask each, disjoint,
    covering y) and each part's parameters at coding time (:meth:`_part_params`); the loop, the checks and the
    exact float64 hyper-synthesis are here, the same for every such prior."""

    def _hyper(self, z_hat: Tensor, latent_hw: tuple[int, int]) -> Tensor:
        """h_s(z_hat) in float64, cropped to y's size."""
        return exact_call(self.h_s, z_hat)[..., : latent_hw[0], : latent_hw[1]]

    def _parts(self, latent_hw: tuple[int, int], device: torch.device) -> list[tuple[str, Tensor]]:
        raise NotImplementedError

    def _part_params(self, part: str, hyper: Tensor, y_hat: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(scale indexes, snapped means) of the elements of ``mask``, each (1, count) in the order ``y[0][mask]``
        lists them, identical on every machine (float64 networks, then :func:`coding_params`)."""
        raise NotImplementedError

    @torch.no_grad()
    def compress(self, y: Tensor) -> tuple[list[bytes], Tensor]:
        if y.shape[0] != 1:
            raise ValueError(f"compress codes one latent at a time, got a batch of {y.shape[0]}")
        latent_hw = tuple(y.shape[-2:])
        z = self.h_a(y)
        _check_bottleneck_input(self.entropy_bottleneck, z, "z")
        streams = [self.entropy_bottleneck.compress(z)[0]]
        z_hat = _dequantized(self.entropy_bottleneck, z, self.entropy_bottleneck._get_medians())
        hyper = self._hyper(z_hat, latent_hw)
        y_hat = torch.zeros_like(y)  # each part is filled in before a later part's parameters read it
        for part, mask in self._parts(latent_hw, y.device):
            indexes, means = self._part_params(part, hyper, y_hat, mask)
            values = y[0][mask][None]
            check_symbols(values, means, part)
            streams.append(self.gaussian_conditional.compress(values, indexes, means=means)[0])
            y_hat[0][mask] = _dequantized(self.gaussian_conditional, values, means)[0]
        return streams, y_hat

    @torch.no_grad()
    def decompress(self, streams: list[bytes], latent_hw: tuple[int, int]) -> Tensor:
        if len(streams) != len(self.streams):
            raise ValueError(f"{len(streams)} streams, this prior codes {len(self.streams)}")
        bound_range_decoders(self)
        z_hat = self.entropy_bottleneck.decompress([streams[0]], _z_hw(latent_hw))
        hyper = self._hyper(z_hat, latent_hw)
        y_hat = torch.zeros((1, self.latent_channels, *latent_hw), device=z_hat.device)
        for stream, (part, mask) in zip(streams[1:], self._parts(latent_hw, z_hat.device)):
            indexes, means = self._part_params(part, hyper, y_hat, mask)
            y_hat[0][mask] = self.gaussian_conditional.decompress([stream], indexes, means=means)[0]
        return y_hat


@PRIORS.register("checkerboard_hyperprior")
class CheckerboardHyperprior(PartwiseHyperprior):
    """Mean-scale hyperprior with a checkerboard context (see the module doc); three streams.

    h_a, h_s, the z bottleneck, the Gaussian conditional and the grids are the mean-scale hyperprior's; h_s's
    output (2 x latent_channels) is the hyper feature map ``hyper`` here, not the parameters themselves.
    ``context_prediction`` maps the anchors to 2 x latent_channels context features, and ``entropy_parameters``
    (1 x 1 convolutions, 4m -> 10m/3 -> 8m/3 -> 2m) fuses hyper and context into (scales, means).
    """

    streams = ("z",) + PARTS

    def __init__(
        self,
        latent_channels: int,
        hyper_channels: int = 128,
        scale_min: float = 0.11,
        scale_max: float = 256.0,
        scale_levels: int = 64,
        context_kernel: int = 5,
    ):
        super().__init__(latent_channels, hyper_channels, scale_min, scale_max, scale_levels)
        m = latent_channels
        self.context_prediction = CheckerboardMaskedConv2d(m, 2 * m, context_kernel)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(4 * m, m * 10 // 3, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(m * 10 // 3, m * 8 // 3, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(m * 8 // 3, 2 * m, 1),
        )

    # ------------------------------------------------------------------ training
    def _fused(self, hyper: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        scales, means = self.entropy_parameters(torch.cat([hyper, context], dim=1)).chunk(2, dim=1)
        return scales, snap_means(means)

    def forward(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Training: z by noise (its likelihoods) and straight-through rounding, the anchors' parameters from hyper
        alone, the context from the straight-through-rounded anchors (zero at the non-anchors), and the likelihoods
        of y under the parameters each element is coded with."""
        latent_hw = y.shape[-2:]
        z_hat, z_likelihoods = self._training_z(y)
        hyper = self.h_s(z_hat)[..., : latent_hw[0], : latent_hw[1]]
        anchors = anchor_mask(self.latent_channels, latent_hw, y.device)
        scales_a, means_a = self._fused(hyper, torch.zeros_like(hyper))
        y_hat_anchors = torch.where(anchors, ste_round(y - means_a) + means_a, torch.zeros_like(y))
        scales_n, means_n = self._fused(hyper, self.context_prediction(y_hat_anchors))
        scales = torch.where(anchors, scales_a, scales_n)
        means = torch.where(anchors, means_a, means_n)
        _, y_likelihoods = self.gaussian_conditional(y, scales, means)
        y_hat = ste_round(y - means) + means
        return y_hat, {"z": z_likelihoods, "y": y_likelihoods}

    # ------------------------------------------------------------------ coding
    def stream_symbols(self, latent_hw: tuple[int, int]) -> tuple[int, ...]:
        z_h, z_w = _z_hw(latent_hw)
        total = self.latent_channels * int(latent_hw[0]) * int(latent_hw[1])
        anchors = anchor_count(self.latent_channels, latent_hw)
        return self.entropy_bottleneck.channels * z_h * z_w, anchors, total - anchors

    def _part_params(self, part: str, hyper: Tensor, y_hat: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(scale indexes, snapped means) of the elements of ``mask``, each (1, count), identical on every machine:
        the fusion in float64 of hyper (float64) and the context of ``y_hat`` (the decoded anchors, zero elsewhere;
        ignored for the anchors, whose context is zero), then :func:`coding_params`."""
        if part == PARTS[0]:
            context = torch.zeros_like(hyper)
        else:
            context = exact_call(self.context_prediction, y_hat)
        scales, means = exact_call(self.entropy_parameters, torch.cat([hyper, context], dim=1)).chunk(2, dim=1)
        return coding_params(self.scale_grid, self.gaussian_conditional, scales[0][mask][None], means[0][mask][None],
                             part)

    def _parts(self, latent_hw: tuple[int, int], device: torch.device) -> list[tuple[str, Tensor]]:
        anchors = anchor_mask(self.latent_channels, latent_hw, device)
        return [(PARTS[0], anchors), (PARTS[1], ~anchors)]
