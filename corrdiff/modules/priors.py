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

Hostile models (docs/reliability.md, "Hostile model files"): the C++ coder trusts its inputs. Every
index handed to it lies inside its tables (:func:`check_indexes`; a non-finite scale is an error, never an index), every symbol
lies within :data:`MAX_SYMBOL` of its mean (:func:`check_symbols`; beyond, compressai's encoder
loops forever), and a stream is at most :func:`max_stream_bytes` long for the symbols it codes.
The tables themselves are checked when a model is loaded (:func:`corrdiff.model_io.check_entropy_tables`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from corrdiff.compressai_parts import EntropyBottleneck, GaussianConditional
from corrdiff.errors import EntropyCoderError
from corrdiff.registry import PRIORS

MEAN_GRID = 2.0**-8

#: Probability precision of compressai's rANS coder: ``precision = 16`` is a constant of its C++
#: source (rans_interface.cpp), whatever an entropy model's ``entropy_coder_precision`` says.
CODER_PRECISION = 16

#: Largest |round(x - mean)| handed to the coder. compressai 1.2.8's encoder codes a value outside
#: its table row in 4-bit "bypass" chunks, counted by ``while ((raw >> (4 * n)) != 0) ++n`` on a
#: uint32 ``raw`` (about twice the value): from raw >= 2^28 the shift reaches 32, which x86 takes
#: modulo 32, and the loop never ends (an infinite latent hung the encoder, docs/reliability.md). With
#: |symbol| <= 2^24 and a table offset below 2^16 (a valid row has at most 2^16 + 1 entries),
#: raw < 2^26.
MAX_SYMBOL = 1 << 24

#: Fewest symbols a stream may code. compressai 1.2.8's encoder writes into a buffer of one 32-bit
#: word per coding step, but its final flush alone takes two: a stream of 1 symbol (or 2 or 3 costly
#: ones) overruns the buffer and corrupts the heap. Each step takes at most 16 bits, so 4 steps leave
#: room for the flush (a model whose latent can be narrower is refused when loaded).
MIN_SYMBOLS = 4

#: Most bits one symbol can take in a stream compressai's encoder wrote, see :func:`max_stream_bytes`.
MAX_BITS_PER_SYMBOL = 49


def max_stream_bytes(symbols: int) -> int:
    """The longest stream compressai 1.2.8's rANS encoder can write for ``symbols`` symbols.

    Proof. The coder keeps a 64-bit state x in [2^31, 2^63), starting at 2^31, and writes 32-bit
    words. Coding a symbol of frequency f (of 2^16; f >= 1 in a valid table) maps x to at most
    x * 2^16 / f + 2^16 <= (x * 2^16 / f)(1 + 2^-15): log2(x) grows by at most 16 bits plus
    2^-14 of rounding. A bypass chunk maps x to 16 x + v: 4 bits plus less. Writing a word
    divides x by 2^32 (rounded down). So log2(x) + 32 * words never exceeds 31 + the coded bits;
    x ends at or above 2^31, hence 32 * words <= the coded bits; then the final flush writes
    8 bytes. A symbol codes 16 bits, plus, outside its table row, one chunk counting the bypass
    chunks and at most 7 of those (the encoder only terminates for raw values below 2^28, see
    :data:`MAX_SYMBOL`): 48 bits, and less than a bit of rounding over its 9 steps, hence
    :data:`MAX_BITS_PER_SYMBOL` = 49. A longer stream was not written by the encoder: the reader
    refuses it before padding or decoding it (``CorrDiffCodec.read``), so a file's size cannot
    buy memory beyond what its header's symbol count allows.
    """
    return 8 + 4 * math.ceil(MAX_BITS_PER_SYMBOL * symbols / 32)


def check_symbols(x: Tensor, means: Tensor, what: str) -> None:
    """EntropyCoderError unless ``x`` holds at least :data:`MIN_SYMBOLS` symbols and every ``x - means`` is
    finite and within :data:`MAX_SYMBOL` (before coding)."""
    if x.numel() < MIN_SYMBOLS:
        raise EntropyCoderError(f"the latent {what} holds {x.numel()} values; the entropy coder needs at least "
                                f"{MIN_SYMBOLS} (a model this narrow cannot code)")
    offsets = x - means
    if not bool(torch.isfinite(offsets).all()):
        raise EntropyCoderError(f"the model produced NaN or infinite values in the latent {what}: the model "
                                "file is damaged or its training diverged; nothing was coded")
    worst = float(offsets.abs().max().round())  # the largest |symbol| the coder would see
    if worst > MAX_SYMBOL:
        raise EntropyCoderError(f"the latent {what} reaches {worst:.3g} quantisation steps from its mean, beyond the "
                                f"entropy coder's range of {MAX_SYMBOL}: the model file is damaged; nothing was coded")


def check_indexes(entropy_model: nn.Module, indexes: Tensor, what: str) -> None:
    """EntropyCoderError unless every index names a row of ``entropy_model``'s tables (before coding)."""
    rows = entropy_model._quantized_cdf.shape[0]
    if indexes.numel() and not (int(indexes.min()) >= 0 and int(indexes.max()) < rows):
        raise EntropyCoderError(f"table indexes of the latent {what} fall outside the {rows} tables of the entropy "
                                "coder: the model file is damaged")


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
        """Table indexes in [0, levels - 1]; EntropyCoderError for a NaN or infinite scale (which no
        clamp maps to an index: NaN would become -2^31 and index the coder's tables out of bounds)."""
        if not bool(torch.isfinite(scales).all()):
            raise EntropyCoderError("the model's hyper-synthesis produced NaN or infinite scales: the model "
                                    "file is damaged or its training diverged")
        log_s = torch.log(scales.double().clamp_min(1e-12))
        idx = torch.round((log_s - self.log_min) / self.log_step)
        return idx.clamp_(0, self.levels - 1).to(torch.int32)


def _check_bottleneck_input(bottleneck: EntropyBottleneck, x: Tensor, what: str) -> None:
    """Before ``bottleneck.compress(x)``: one table per channel (its indexes) and codable symbols."""
    check_indexes(bottleneck, torch.arange(x.shape[1]), what)
    check_symbols(x, bottleneck._get_medians(), what)


def _z_hw(latent_hw: tuple[int, int]) -> tuple[int, int]:
    """Size of the hyper-latent z for a latent y of ``latent_hw`` (h_a halves it twice, rounding up)."""
    return -(-latent_hw[0] // 4), -(-latent_hw[1] // 4)


def _dequantized(entropy_model, x: Tensor, means: Tensor) -> Tensor:
    """round(x - means) + means: what decompress() of the just-coded stream returns, without decoding it."""
    return entropy_model.quantize(x, "dequantize", means)


def range_decoder_padding(stream_bytes: int, symbols: int) -> int:
    """Zero bytes to append to a stream so compressai's rANS decoder stays inside its buffer.

    compressai's ``RansDecoder.decode_with_indexes`` has no bounds check: decoding ``symbols``
    symbols from a stream that runs out (damaged, truncated, or forged with a valid CRC) reads
    past the end of the buffer (heap over-read; a segfault for large images). Per decoded symbol
    it reads at most one 32-bit word to renormalise, plus, in its bypass mode, one word per 8
    4-bit reads after the first; the bypass length is driven by nibbles equal to 15, of which a
    state holds at most 16 after each symbol and the stream 2 per byte (zero padding holds none).
    That bounds the bytes read at ``136 + 144 * symbols + 16 * stream_bytes``; the padding makes
    the buffer that long. A valid stream is unaffected (the decoder never reaches the padding).
    """
    return 136 + 144 * symbols + 15 * stream_bytes


class _BoundedRangeDecoder:
    """Wraps an entropy model's coder: decoding pads the stream (:func:`range_decoder_padding`)."""

    def __init__(self, inner: Any):
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":  # not set yet (copy/unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

    def decode_with_indexes(self, stream: bytes, indexes: list, *tables: Any) -> Any:
        stream = bytes(stream)
        padded = stream + bytes(range_decoder_padding(len(stream), len(indexes)))
        return self._inner.decode_with_indexes(padded, indexes, *tables)


def bound_range_decoders(prior: nn.Module) -> None:
    """Install :class:`_BoundedRangeDecoder` on every compressai entropy model of ``prior`` (idempotent);
    every prior's ``decompress`` calls it first, so no stream, however forged, is decoded unpadded."""
    for module in prior.modules():
        coder = getattr(module, "entropy_coder", None)
        if coder is not None and hasattr(coder, "decode_with_indexes") and not isinstance(coder, _BoundedRangeDecoder):
            module.entropy_coder = _BoundedRangeDecoder(coder)


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

    def stream_symbols(self, latent_hw: tuple[int, int]) -> tuple[int, ...]:
        z_h, z_w = _z_hw(latent_hw)
        return self.entropy_bottleneck.channels * z_h * z_w, self.latent_channels * latent_hw[0] * latent_hw[1]

    def _coding_params(self, z_hat: Tensor, latent_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Scale indexes and snapped means, identical on every machine (see module doc).

        EntropyCoderError for a non-finite scale or mean; the indexes are checked against the tables.
        """
        scales, means = self._scales_means(z_hat, latent_hw, exact=True)
        means = (torch.round(means / MEAN_GRID) * MEAN_GRID).float()
        if not bool(torch.isfinite(means).all()):
            raise EntropyCoderError("the model's hyper-synthesis produced NaN or infinite means: the model "
                                    "file is damaged or its training diverged")
        indexes = self.scale_grid.index(scales)
        check_indexes(self.gaussian_conditional, indexes, "y")
        return indexes, means

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
