"""The encoder's side of a codec: image -> ``.cdf`` file (Ma, Yang, Liu, ICML 2024, section 3).

    x --E--> y --prior--> streams, y_hat
    y_hat --> the reverse process of corrdiff.sampling, each step's gamma chosen by eq. (5) against x and
              coded (quantised) before use, so that the decoder replays the same trajectory
    file = header (corrdiff.bitstream) + coded gammas + streams

:meth:`corrdiff.codec.CorrDiffCodec.encode` documents the arguments; it builds the replay record
(:class:`corrdiff.replay.Replay`) once, and everything below reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from corrdiff import bitstream, decoding, sampling
from corrdiff.correction import CorrectionConfig, GammaSolver, step_gammas
from corrdiff.image_io import to_model_range
from corrdiff.gamma_distances import PerceptualDistances
from corrdiff.model import CorrDiffModel
from corrdiff.modules.rate import RateCondition
from corrdiff.replay import Replay
from corrdiff.modules.transforms import STRIDE

OnStep = Callable[[int, int], None]  # on_step(done, steps): called after each sampling step (a progress bar)


@dataclass
class EncodeResult:
    """What :meth:`CorrDiffCodec.encode` returns: the file's bytes and the encoder's view."""

    data: bytes
    reconstruction: Tensor  # (1, 3, H, W) in [0, 1], identical to what decompress() returns
    gamma_steps: tuple[bitstream.GammaStep, ...]  # each step's gammas as sent (empty outside corrected mode)
    y_hat: Tensor
    replay: Replay | None = None  # what the file fixes about its decode (corrdiff/replay.py)

    @property
    def quality(self) -> float | None:
        """The quality the file was coded at (a variable-rate or base-codec model's; None for a fixed rate)."""
        rate = self.replay.rate if self.replay is not None else None
        return None if rate is None else float(rate.quality[0])

    @property
    def gammas(self) -> Tensor:
        """(steps, K) gammas actually used, when every step has the same number K (else ValueError)."""
        rows = [step_gammas(step)[0] for step in self.gamma_steps]
        if len({len(r) for r in rows}) > 1:
            raise ValueError("the steps have gamma maps of different sizes: read gamma_steps instead")
        return torch.stack(rows) if rows else torch.zeros(0, 1)

    @property
    def num_bytes(self) -> int:
        return len(self.data)

    def bpp(self) -> float:
        """8 * file bytes / pixels, header included."""
        h, w = self.reconstruction.shape[-2:]
        return 8.0 * len(self.data) / (h * w)


@torch.no_grad()
def encode(model: CorrDiffModel, image: Tensor, replay: Replay, gamma: Mapping[str, Any] | None,
           on_step: OnStep | None, distances: PerceptualDistances) -> EncodeResult:
    """Compress ``image`` ((1, 3, H, W) in [0, 1]) with ``model`` as ``replay`` records it (:meth:`Replay.for_encoding`:
    mode, sampler, steps, seed, rate): the file's bytes and the encoder's reconstruction (which the decoder
    reproduces bit for bit). ``distances``: where the gamma solver gets its perceptual distance when ``rho > 0``."""
    correction = model.correction.replace(dict(gamma or {}))
    decoding.check_ready(model)
    with sampling.evaluating(model):
        x = to_model_range(image.to(model.device))
        streams, y_hat = code_latent(model, analysis_latent(model, x), replay.rate)
        choose = (sampling.EncoderGammas(_solver(model, correction, distances), x, replay.steps)
                  if replay.mode.corrects else sampling.no_correction)
        x0 = sampling.sample(model, y_hat, replay, choose, on_step)
    coded = tuple(choose.coded) if replay.mode.corrects else ()
    data = bitstream.pack(replay.header(model.fingerprint(), coded, tuple(streams)))
    return EncodeResult(data, sampling.to_image(x0, replay.hw, replay.gray), coded, y_hat, replay)


def is_gray(image: Tensor) -> bool:
    """Whether an image's three channels are equal (it is coded as gray: the decoder returns R = G = B)."""
    return bool(torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 1], image[:, 2]))


def analysis_latent(model: CorrDiffModel, x: Tensor) -> Tensor:
    """y = E(x) of the padded image x in [-1, 1], in tiles of the model's ``tile_size``; with a base codec, the
    image x itself (the base codes the unpadded image)."""
    if model.base is not None:
        return x
    return sampling.tiled(model, model.encoder, model.encoder, model.pad(x), STRIDE, model.tile_size)


def code_latent(model: CorrDiffModel, y: Tensor, rate: RateCondition | None) -> tuple[list[bytes], Tensor]:
    """Entropy-code y at ``rate``: (the streams, y_hat as D and C see it); with a base codec, code the image y
    at the rate's quality: (its stream, its decode x0_e padded to the model's multiple)."""
    if model.base is not None:
        streams, x0_e = model.base.code(y, float(rate.quality[0]))
        return streams, model.pad(x0_e)
    streams, y_coded = model.prior.compress(model.scale_latent(y, rate))
    return streams, model.unscale_latent(y_coded, rate)


def _solver(model: CorrDiffModel, correction: CorrectionConfig, distances: PerceptualDistances) -> GammaSolver:
    """The gamma solver of eq. (5), with the perceptual distance of ``distances`` when ``rho > 0`` (built on first
    use)."""
    perceptual = distances.get(correction.perceptual, model.device) if correction.rho > 0 else None
    return GammaSolver(correction, perceptual)
