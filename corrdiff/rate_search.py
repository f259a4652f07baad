"""Rate control of a variable-rate model: the quality whose file meets a size or bpp target (docs/variable_rate.md).

A file's size is its entropy-coded streams plus a header whose size the encoder knows before sampling
(scalar and channel gammas take fixed bytes per step). The search therefore codes only the latent:

    y = E(x) once;  for each candidate q:  streams(q) = prior.compress(y * g(q))     (cheap: no sampling)

bisecting q over the model's quality range (the streams grow with q), then samples once at the chosen
quality. Tile gamma maps have a size known only after sampling: when the file comes out larger than the
estimate, the search is repeated with the measured header and the image sampled again (at most twice). Each
quality is coded at most once per search (a base codec such as AVIF rounds candidates to the integer qualities
it has, so bisection steps that round alike cost nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from corrdiff import bitstream, sampling
from corrdiff.encoding import EncodeResult, analysis_latent, code_latent
from corrdiff.errors import CorrDiffError
from corrdiff.image_io import to_model_range
from corrdiff.model import CorrDiffModel
from corrdiff.replay import Replay

#: Bisection steps over the quality range: the shipped model's range of 8 is resolved to 8 / 2^11 = 0.004, a few
#: bytes of a 768x512 file (about 2,000 bytes per quality unit there); each step codes the latent once, so fewer
#: steps keep an encode with a target near a plain encode's time (docs/variable_rate.md, Results).
SEARCH_STEPS = 11
#: Encodes at most (the first sampled file larger than its budget: a tile-gamma header larger than estimated).
MAX_SAMPLINGS = 3


class RateTargetError(CorrDiffError, ValueError):
    """A size or bpp target that no quality of the model can meet."""


@dataclass(frozen=True)
class Target:
    """A file-size budget (``max_bytes``: the largest quality that fits) or a bpp to come closest to."""

    max_bytes: int | None = None
    bpp: float | None = None

    def __post_init__(self) -> None:
        if (self.max_bytes is None) == (self.bpp is None):
            raise ValueError("give exactly one of a file size and a bpp")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError(f"a file size must be positive, got {self.max_bytes}")
        if self.bpp is not None and not self.bpp > 0:
            raise ValueError(f"a bpp must be positive, got {self.bpp}")

    def describe(self, pixels: int) -> str:
        if self.max_bytes is not None:
            return f"{self.max_bytes} bytes"
        return f"{self.bpp:g} bpp ({self.bpp * pixels / 8:.0f} bytes)"


def encode_to_target(model: CorrDiffModel, image: Tensor, target: Target, replay: Replay,
                     encode: Callable[[Replay], EncodeResult]) -> EncodeResult:
    """Encode ``image`` ((1, 3, H, W) in [0, 1]) at the quality that meets ``target``; ``replay``: the encode's record
    (its rate is replaced by each candidate's), ``encode(replay)`` the encode itself. RateTargetError when the
    lowest quality's file is over a size budget; ValueError for a fixed-rate model."""
    if model.quality_range is None:
        raise ValueError("this model codes at one fixed rate: a target size or bpp needs a variable-rate model "
                         "(docs/variable_rate.md)")
    h, w = image.shape[-2:]
    with sampling.evaluating(model), torch.no_grad():
        y = analysis_latent(model, to_model_range(image.to(model.device)))

        coded: dict[float, int] = {}  # bytes per quality as coded: a base codec rounds to qualities it has

        def stream_bytes(quality: float) -> int:
            rate = model.rate_condition(quality, model.device)
            key = float(rate.quality[0])
            if key not in coded:
                streams, _ = code_latent(model, y, rate)
                coded[key] = sum(len(s) for s in streams)
            return coded[key]

        overhead = header_bytes(model, replay)
        for _ in range(MAX_SAMPLINGS):
            quality = _search(model, stream_bytes, target, overhead, h * w)
            result = encode(replay.with_rate(model.rate_condition(quality, model.device)))
            if target.max_bytes is None or len(result.data) <= target.max_bytes:
                return result
            overhead = len(result.data) - stream_bytes(quality)  # the header came out larger (tile gammas)
    raise RateTargetError(f"no file within {target.describe(h * w)} after {MAX_SAMPLINGS} encodes: the gamma maps "
                          "take more room than estimated; use a scalar gamma granularity")


def _search(model: CorrDiffModel, stream_bytes: Callable[[float], int], target: Target, overhead: int,
            pixels: int) -> float:
    """The largest quality whose file fits the budget, or the one whose size is nearest the bpp target."""
    low, high = model.quality_range
    goal = target.max_bytes if target.max_bytes is not None else round(target.bpp * pixels / 8)
    size = {q: overhead + stream_bytes(q) for q in (low, high)}
    if size[high] <= goal:
        return high
    if size[low] > goal:
        if target.max_bytes is not None:
            raise RateTargetError(f"{target.describe(pixels)} is too small for this image: the lowest quality "
                                  f"({low:g}) gives a file of {size[low]} bytes")
        return low
    for _ in range(SEARCH_STEPS):  # invariant: size[low] <= goal < size[high]
        middle = (low + high) / 2
        size[middle] = overhead + stream_bytes(middle)
        low, high = (middle, high) if size[middle] <= goal else (low, middle)
    if target.max_bytes is not None or goal - size[low] <= size[high] - goal:
        return low
    return high


def header_bytes(model: CorrDiffModel, replay: Replay, gamma: Mapping[str, Any] | None = None) -> int:
    """Bytes of a file's header, gammas and stream lengths (everything but the streams) of an encode with this
    record, assuming each step's gammas take the bytes of the first granularity of the encode's gamma options
    (``gamma`` over the model's) when it is scalar or channel (a tile map's size is known only after sampling:
    it is estimated as scalar)."""
    granularity = model.correction.replace(dict(gamma or {})).granularities[0].spec
    values = (0.0,) * 3 if granularity == "channel" else (0.0,)
    step = bitstream.GammaStep("channel" if granularity == "channel" else "scalar", values)
    gammas = (step,) * replay.steps if replay.mode.corrects else ()
    header = replay.header(bytes(bitstream.FINGERPRINT_BYTES), gammas, (b"",) * len(model.stream_names))
    return len(bitstream.pack(header))


__all__ = ["MAX_SAMPLINGS", "RateTargetError", "SEARCH_STEPS", "Target", "encode_to_target", "header_bytes"]
