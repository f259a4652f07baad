"""The entropy coder's guarantees, in one place that every prior uses (docs/bitstream.md section 5).

Everything here was proved against **compressai 1.2.8** (its C++ rANS coder, ``rans_interface.cpp``, and
its Python entropy models); a newer compressai must be checked against each proof before it is allowed.
:mod:`corrdiff.modules.priors` re-exports every name under the same name, and the rest of corrdiff imports
them from there.

Cross-machine robustness (the classic failure of hyperprior codecs: a float that differs in its last bit between
machines or thread counts flips a scale index and the decoder desynchronises): at coding time every network that
computes entropy parameters runs in float64 (:func:`exact_call`), and its outputs are snapped to grids before use
(:func:`coding_params`): scales to an index in a log-uniform table (:meth:`ScaleGrid.index`), means to multiples
of :data:`MEAN_GRID` = 2^-8. A flip then needs a float64 discrepancy (~1e-16 relative) landing on a grid
boundary. The same grids are used in training (straight-through, :func:`snap_means`), so training and coding see
the same model.

Hostile models and files (docs/reliability.md, "Hostile model files"): the C++ coder trusts its inputs. Every
index handed to it lies inside its tables (:func:`check_indexes`; a non-finite scale is an error, never an index),
every symbol lies within :data:`MAX_SYMBOL` of its mean and a stream codes at least :data:`MIN_SYMBOLS` symbols
(:func:`check_symbols`), a stream is at most :func:`max_stream_bytes` long for the symbols it codes (the reader
refuses a longer one before decoding it, with the prior's ``stream_symbols``), and the decoder's input is padded
(:func:`range_decoder_padding`, installed by :func:`bound_range_decoders`) so that it never reads past its buffer.
The tables themselves are checked when a model is loaded (:func:`corrdiff.model_io.check_entropy_tables`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from corrdiff.compressai_parts import EntropyBottleneck
from corrdiff.errors import EntropyCoderError

#: Means are snapped to multiples of this at coding time (and, straight-through, in training).
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


# ----------------------------------------------------------------------------- the float64 parameter path
def exact_call(module: nn.Module, *inputs: Tensor) -> Tensor:
    """``module(*inputs)`` in float64: its parameters and floating-point inputs cast for the call (the module itself
    is unchanged; its buffers, e.g. a convolution's mask of zeros and ones, promote to float64 where they meet a
    float64 tensor). What every prior's coding-time parameter networks run through (see the module doc)."""
    params = {name: p.double() for name, p in module.named_parameters()}
    return functional_call(module, params, tuple(x.double() if x.is_floating_point() else x for x in inputs))


def coding_params(scale_grid: ScaleGrid, entropy_model: nn.Module, scales: Tensor, means: Tensor,
                  what: str) -> tuple[Tensor, Tensor]:
    """Float64 ``scales`` and ``means`` (from :func:`exact_call`) snapped to the grids: (int32 scale indexes checked
    against ``entropy_model``'s tables, float32 means on the 2^-8 grid), identical on every machine.

    EntropyCoderError for a non-finite scale or mean (a damaged model, or a forged stream whose decoded values feed a
    context network), never an index outside the tables."""
    means = (torch.round(means / MEAN_GRID) * MEAN_GRID).float()
    if not bool(torch.isfinite(means).all()):
        raise EntropyCoderError("the model's hyper-synthesis produced NaN or infinite means: the model "
                                "file is damaged or its training diverged")
    indexes = scale_grid.index(scales)
    check_indexes(entropy_model, indexes, what)
    return indexes, means


# ----------------------------------------------------------------------------- coding helpers
def _check_bottleneck_input(bottleneck: EntropyBottleneck, x: Tensor, what: str) -> None:
    """Before ``bottleneck.compress(x)``: one table per channel (its indexes) and codable symbols."""
    check_indexes(bottleneck, torch.arange(x.shape[1]), what)
    check_symbols(x, bottleneck._get_medians(), what)


def _dequantized(entropy_model, x: Tensor, means: Tensor) -> Tensor:
    """round(x - means) + means: what decompress() of the just-coded stream returns, without decoding it."""
    return entropy_model.quantize(x, "dequantize", means)


# ----------------------------------------------------------------------------- the bounded decoder
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
