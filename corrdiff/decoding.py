"""The decoder's side of a codec: ``.cdf`` file -> image, and the checks a decoder makes before it allocates.

(The container's own bounds are checked by :mod:`corrdiff.bitstream`, the recorded sampler by
:func:`corrdiff.replay.sampler_from_file`.)

:func:`decode` reads the file, rebuilds the sampler it records and replays the encoder's trajectory
(:func:`corrdiff.sampling.sample`) with the file's gammas. :func:`read` parses the container once (:func:`corrdiff.bitstream.unpack` checks its own bounds),
then, before any tensor is allocated, refuses with :class:`~corrdiff.errors.BitstreamError` an image
larger than ``max_pixels`` (a codec's ``max_decode_pixels``), a file of another model
(:class:`~corrdiff.errors.ModelMismatchError`), a stream count the prior does not code and a stream
longer than the encoder can write for the symbols it must decode; it then entropy-decodes the latent
(the prior pads the range decoder's input, so a damaged or forged stream cannot make it read past its
buffer). docs/reliability.md has the threat model.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import Tensor

from corrdiff import bitstream, sampling
from corrdiff.correction import check_gamma_scale
from corrdiff.errors import BitstreamError, ModelMismatchError
from corrdiff.model import CorrDiffModel
from corrdiff.modules.priors import max_stream_bytes
from corrdiff.replay import Replay, file_rate  # noqa: F401 (file_rate: re-exported, its old home)

# Decode-size bound: a header may name up to bitstream.MAX_PIXELS (2^28) pixels, but a 100-byte file must
# not make the decoder allocate memory for that many (about 350 bytes per pixel for the small preset, see
# corrdiff.sampling; ~1 KiB before tiling). read() refuses images above this: 16.8 Mpx, e.g. 4096x4096, 4K
# UHD or a 12 Mpx photo; about 6.5 GiB at the limit. Adjustable per codec (codec.max_decode_pixels) or, for
# the command line, with the environment variable below.
DECODE_PIXELS_ENV = "CORRDIFF_MAX_DECODE_PIXELS"
MAX_DECODE_PIXELS = int(os.environ[DECODE_PIXELS_ENV]) if os.environ.get(DECODE_PIXELS_ENV, "").isdigit() else 1 << 24


@torch.no_grad()
def decode(model: CorrDiffModel, data: bytes | bitstream.Bitstream, mode: str | None, gamma_scale: float,
           on_step: Callable[[int, int], None] | None, max_pixels: int = MAX_DECODE_PIXELS) -> Tensor:
    """Decode a file (its bytes, or its header already parsed by :func:`corrdiff.bitstream.unpack`) with ``model``
    (:meth:`corrdiff.codec.CorrDiffCodec.decompress` documents the arguments). The header is parsed once and the
    replay record (:class:`~corrdiff.replay.Replay`: mode, sampler, rate) built once from it."""
    check_gamma_scale(gamma_scale)
    bs = data if isinstance(data, bitstream.Bitstream) else bitstream.unpack(data)
    replay, y_hat = read(model, bs, max_pixels, mode)
    choose = sampling.file_gammas(bs, gamma_scale) if replay.mode.corrects else sampling.no_correction
    with sampling.evaluating(model):
        x0 = sampling.sample(model, y_hat, replay, choose, on_step)
    check_finite(x0)
    return sampling.to_image(x0, replay.hw, replay.gray)


def check_ready(model: CorrDiffModel) -> None:
    """RuntimeError unless the entropy coder's tables are built (both sides need them)."""
    if not model.entropy_tables_ready():
        raise RuntimeError("the entropy coder's tables are not built: call codec.update() after training "
                           "(corrdiff export does it)")


def read(model: CorrDiffModel, data: bytes | bitstream.Bitstream, max_pixels: int = MAX_DECODE_PIXELS,
         mode: str | None = None) -> tuple[Replay, Tensor]:
    """Check a file for ``model`` and decode its streams: (its replay record decoded as ``mode``, y_hat as D and C
    see it), after every check above and the record's (:meth:`Replay.from_file`: mode, sampler, rate; the rate
    check is :func:`corrdiff.replay.file_rate`)."""
    bs = data if isinstance(data, bitstream.Bitstream) else bitstream.unpack(data)
    if bs.height * bs.width > max_pixels:
        raise BitstreamError(
            f"image of {bs.height}x{bs.width} = {bs.height * bs.width} pixels exceeds this decoder's limit of "
            f"{max_pixels} pixels (raise codec.max_decode_pixels or ${DECODE_PIXELS_ENV} to decode it)"
        )
    check_ready(model)
    if bs.fingerprint != model.fingerprint():
        from corrdiff.model_io.retired import retired_model  # a table: imports nothing back

        retired = retired_model(bs.fingerprint)
        where = "" if retired is None else f"; it is {retired.describe()}: {retired.where()}"
        raise ModelMismatchError(
            f"file was encoded with model {bs.fingerprint.hex()} but this model is {model.fingerprint().hex()}; "
            f"decode it with the model that encoded it (--model){where}"
        )
    if len(bs.streams) != len(model.stream_names):
        raise BitstreamError(f"file has {len(bs.streams)} streams, this model codes {len(model.stream_names)}")
    replay = Replay.from_file(model, bs, mode)
    if model.base is not None:  # the base checks its stream's frame size against the header before decoding
        return replay, model.pad(model.base.read(bs.streams, bs.height, bs.width, model.device))
    latent_hw = model.latent_hw(bs.height, bs.width)
    check_stream_lengths(model.prior, bs, latent_hw)
    try:
        with torch.no_grad():
            y_hat = model.prior.decompress(list(bs.streams), latent_hw)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise BitstreamError(f"entropy-coded data is invalid ({exc})") from None
    with torch.no_grad():
        return replay, model.unscale_latent(y_hat.to(model.device), replay.rate)


def check_stream_lengths(prior, bs: bitstream.Bitstream, latent_hw: tuple[int, int]) -> None:
    """BitstreamError for a stream longer than :func:`~corrdiff.modules.priors.max_stream_bytes` of the
    symbols it codes (a proven bound on what the encoder writes), before any padding or decoding:
    so the padding and copies of the decoder are bounded by the header's size, not the file's."""
    counts = getattr(prior, "stream_symbols", None)
    if counts is None:  # a third-party prior that does not declare its symbol counts
        return
    for name, stream, count in zip(prior.streams, bs.streams, counts(latent_hw)):
        limit = max_stream_bytes(count)
        if len(stream) > limit:
            raise BitstreamError(f"stream {name} holds {len(stream)} bytes, more than the {limit} bytes that its "
                                 f"{count} symbols can take: the file is damaged or forged")


def check_finite(x0: Tensor) -> None:
    """BitstreamError for a non-finite reconstruction: a stream altered behind a recomputed CRC can decode
    to a latent of absurd values."""
    if not bool(torch.isfinite(x0).all()):
        raise BitstreamError("decoding produced non-finite values: the entropy-coded data is invalid")


# ----------------------------------------------------------------------------- plain AVIF files
#: Re-encodes of a plain AVIF file's decode that estimate the quality it was coded at (bisection over 0..100).
QUALITY_SEARCH_STEPS = 7


@torch.no_grad()
def decode_avif_file(model: CorrDiffModel, data: bytes, strength: float = 1.0, steps: int | None = None,
                     seed: int = 0, quality: float | None = None, on_step: Callable[[int, int], None] | None = None,
                     max_pixels: int = MAX_DECODE_PIXELS) -> Tensor:
    """Decode a standard AVIF file that corrdiff did not write with a model of the AVIF base (docs/avif_base.md):
    there are no gammas, so each step blends the diffusion estimate with the AVIF decode,

        x0_c = x0_e + strength * (x0_d - x0_e)          (eq. (1) with gamma = 1 - strength)

    ``strength`` 1 is the plain diffusion decode, 0 the AVIF decode itself. ``quality``: the AVIF quality the
    score network is told (default: estimated by :func:`estimate_avif_quality`). The image size is read from the
    file's boxes and checked against ``max_pixels`` before anything is decoded; BitstreamError for a damaged
    file, ValueError for a model without the AVIF base or a strength outside [0, 1]."""
    from corrdiff.avif_container import whole_file_size
    from corrdiff.modules.avif_base import decode_avif, from_uint8

    if model.base is None or not hasattr(model.base, "encode_array"):
        raise ValueError("decoding a plain AVIF file needs a model of the AVIF base (e.g. --model avif)")
    if not (0.0 <= strength <= 1.0):
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    width, height = whole_file_size(data)
    if width * height > max_pixels:
        raise BitstreamError(f"image of {height}x{width} = {height * width} pixels exceeds this decoder's limit of "
                             f"{max_pixels} pixels (raise codec.max_decode_pixels or ${DECODE_PIXELS_ENV} to decode it)")
    array = decode_avif(data, width, height)
    low, high = model.quality_range
    estimated = estimate_avif_quality(model.base, array, len(data)) if quality is None else quality
    rate_quality = min(max(estimated, low), high)
    x0_e = from_uint8(array, model.device)
    replay = Replay.for_encoding(model, height, width, "diffusion", steps, None, seed, rate_quality)
    blend = torch.full((1, 1, 1, 1), 1.0 - float(strength))
    with sampling.evaluating(model):
        x0 = sampling.sample(model, model.pad(x0_e), replay, lambda i, x0_d, x0_e: blend, on_step)
    check_finite(x0)
    return sampling.to_image(x0, (height, width))


def estimate_avif_quality(base, array, file_bytes: int) -> float:
    """The AVIF quality (0..100) at which ``base`` codes the decoded image ``array`` into at most ``file_bytes``
    bytes: a re-encode of a decode at the quality it came from takes about the original's size, so this finds
    the quality of a file from another encoder's settings to within a few steps (bisection,
    :data:`QUALITY_SEARCH_STEPS` encodes)."""
    low, high = 0, 100
    for _ in range(QUALITY_SEARCH_STEPS):
        middle = (low + high + 1) // 2
        if len(base.encode_array(array, middle)) <= file_bytes:
            low = middle
        else:
            high = middle - 1
        if low >= high:
            break
    return float(low)
