"""CorrDiffCodec: the CorrDiff model as an nn.Module for training and real compression.

Data flow (Ma, Yang, Liu, ICML 2024; DESIGN.md section 1)::

    x --E--> y --prior--> streams (z, y)  ... bitstream ...  streams --prior--> y_hat
    y_hat --> the corrected reverse process of corrdiff.sampling --> x0_c of the last step

This module builds the components from the registry and says what goes into a file
(:meth:`CorrDiffCodec.encode`) and what comes out of one (:meth:`CorrDiffCodec.decompress`);
the two sides are :mod:`corrdiff.encoding` and :mod:`corrdiff.decoding` (with the checks a decoder makes
of a file's latent and output), the sampling loop that both run is :mod:`corrdiff.sampling` (with the memory model), the byte
layout is :mod:`corrdiff.bitstream`.

Public images are float tensors in [0, 1] of shape (1, 3, H, W) (as in compressai);
internally the model works in [-1, 1]. Any size: the image is padded (edge replication)
to a multiple of the stride and cropped back.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrdiff import bitstream, decoding, encoding, sampling
from corrdiff.correction import CorrectionConfig, check_gamma_scale, quantize_gamma
from corrdiff.decoding import MAX_DECODE_PIXELS
from corrdiff.encoding import EncodeResult, OnStep
from corrdiff.losses.perceptual import PerceptualDistances
from corrdiff.modules.transforms import STRIDE, check_stride
from corrdiff.registry import CONDITIONERS, DECODERS, ENCODERS, PRIORS, SAMPLERS, SCHEDULES, SCORE_NETS


class CorrDiffCodec(nn.Module):
    """CorrDiff codec; components are built by registry name (see :mod:`corrdiff.registry`).

    Args:
        latent_channels: width M of y (wired into encoder, decoder, prior and conditioner).
        encoder, decoder, prior, conditioner, score_net, schedule: ``{"name": ..., **kwargs}`` specs.
        sampler: default sampler spec for compression (``{"name": "ddim", "eta": 0.0}``).
        steps: default number of sampling steps (8, as in the paper).
        correction: :class:`~corrdiff.correction.CorrectionConfig` fields.
    """

    max_decode_pixels: int = MAX_DECODE_PIXELS  # read() refuses larger images (decode-memory bound, corrdiff.decoding)
    # The encoder E runs on tiles of this many pixels a side (None: never), to bound its memory. It changes
    # nothing a decoder computes: D and C run on a fixed grid of sampling.TILE_PIXELS (docs/bitstream.md, section 4).
    tile_size: int | None = 1024

    def __init__(
        self,
        latent_channels: int = 192,
        encoder: Mapping[str, Any] | None = None,
        decoder: Mapping[str, Any] | None = None,
        prior: Mapping[str, Any] | None = None,
        conditioner: Mapping[str, Any] | None = None,
        score_net: Mapping[str, Any] | None = None,
        schedule: Mapping[str, Any] | None = None,
        sampler: Mapping[str, Any] | None = None,
        steps: int = 8,
        correction: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.config = {
            "latent_channels": latent_channels,
            "encoder": dict(encoder or {"name": "gdn"}),
            "decoder": dict(decoder or {"name": "gdn"}),
            "prior": dict(prior or {"name": "mean_scale_hyperprior"}),
            "conditioner": dict(conditioner or {"name": "pyramid"}),
            "score_net": dict(score_net or {"name": "unet"}),
            "schedule": dict(schedule or {"name": "linear"}),
            "sampler": dict(sampler or {"name": "ddim"}),
            "steps": steps,
            "correction": CorrectionConfig(**(correction or {})).stored(),
        }
        json.dumps(self.config)  # the config must be plain data: it is hashed and embedded in model files
        m = latent_channels
        self.encoder = ENCODERS.build(self.config["encoder"], latent_channels=m)
        self.decoder = DECODERS.build(self.config["decoder"], latent_channels=m)
        check_stride(self.encoder)
        check_stride(self.decoder)
        self.prior = PRIORS.build(self.config["prior"], latent_channels=m)
        self.conditioner = CONDITIONERS.build(self.config["conditioner"], latent_channels=m)
        self.score_net = SCORE_NETS.build(self.config["score_net"], cond_channels=tuple(self.conditioner.out_channels))
        self.schedule = SCHEDULES.build(self.config["schedule"])
        self.correction = CorrectionConfig(**self.config["correction"])
        sampling.sampler_for_encoding(self.config["sampler"], self.schedule, None)  # fail early on a bad spec
        # the gamma solver's perceptual distances: tools of the encoder kept out of the module tree, so that
        # they never enter state_dict() or the fingerprint that decoders check (set one to use your own)
        self.perceptual_distances = PerceptualDistances()

    # ------------------------------------------------------------------ pieces used by training and sampling
    @property
    def prediction(self) -> str:
        return getattr(self.score_net, "prediction", "eps")

    @property
    def multiple(self) -> int:
        """Height and width are padded to a multiple of this."""
        return math.lcm(STRIDE, getattr(self.score_net, "multiple", 1))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def analyse(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """x in [-1, 1] -> (y_hat, likelihoods) with training-time quantisation (see priors).

        The prior runs in float32 even under autocast: likelihoods of rare symbols underflow
        in half precision, and the entropy model's parameters are numerically sensitive.
        """
        y = self.encoder(x)
        with torch.autocast(device_type=y.device.type, enabled=False):
            return self.prior(y.float())

    def condition(self, y_hat: Tensor) -> list[Tensor]:
        return self.conditioner(y_hat)

    def decode_e2e(self, y_hat: Tensor) -> Tensor:
        """x0_e = D(y_hat), unclipped (training losses see the raw output)."""
        return self.decoder(y_hat)

    @property
    def score_uses_e2e(self) -> bool:
        """Whether the score network takes the end-to-end reconstruction x0_e as an input."""
        return bool(getattr(self.score_net, "uses_e2e", False))

    def denoise(
        self, x_t: Tensor, t: Tensor, cond: list[Tensor], projected: bool = False, x0_e: Tensor | None = None
    ) -> Tensor:
        """Raw score-network output (eps, x0 or v, see :attr:`prediction`).

        ``projected``: ``cond`` is the score network's ``project_condition`` of the pyramid
        (:func:`corrdiff.sampling.sampling_condition`) rather than the pyramid itself; same output.
        ``x0_e``: the clipped end-to-end reconstruction, passed on when :attr:`score_uses_e2e`.
        """
        kwargs: dict[str, Any] = {"projected": True} if projected else {}
        if self.score_uses_e2e:
            kwargs["x0_e"] = x0_e
        return self.score_net(x_t, t, cond, **kwargs)

    def aux_loss(self) -> Tensor:
        return self.prior.aux_loss()

    def update(self, force: bool = False) -> bool:
        """Build the entropy coder's CDF tables from the current weights (before compressing)."""
        return self.prior.update(force=force)

    def make_sampler(self, spec: Mapping[str, Any] | str | None = None):
        return SAMPLERS.build(spec or self.config["sampler"], schedule=self.schedule)

    def fingerprint(self) -> bytes:
        """First 8 bytes of SHA-256 over the config (canonical JSON) and every saved tensor."""
        return fingerprint_of(self.config, self.state_dict())

    def pad(self, x: Tensor) -> Tensor:
        """``x`` padded by edge replication to a multiple of :attr:`multiple` (right and bottom)."""
        h, w = x.shape[-2:]
        m = self.multiple
        return F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")

    def latent_hw(self, height: int, width: int) -> tuple[int, int]:
        """Size of y for an image of ``height`` x ``width`` (padded to :attr:`multiple`)."""
        m = self.multiple
        return (-(-height // m) * m) // STRIDE, (-(-width // m) * m) // STRIDE

    # ------------------------------------------------------------------ compression
    def encode(
        self,
        image: Tensor,
        steps: int | None = None,
        seed: int = 0,
        mode: str = "corrected",
        sampler: Mapping[str, Any] | None = None,
        gamma: Mapping[str, Any] | None = None,
        on_step: OnStep | None = None,
    ) -> EncodeResult:
        """Compress an image; also return the encoder-side reconstruction.

        ``image``: a (1, 3, H, W) or (3, H, W) float tensor in [0, 1], a uint8 tensor, an (H, W, 3)
        numpy array or a PIL image (:func:`corrdiff.image_io.as_image_tensor`); a float image
        outside [0, 1] raises ValueError. An image whose three channels are equal is coded as
        gray: the file says so and the decoder returns R = G = B.

        ``sampler``: ``{"name": ..., **recorded parameters}`` (default: the model's); the file records the
        name and the parameters the sampler declares (``recorded_params``, e.g. ddim's eta).
        ``gamma``: overrides of the model's :class:`~corrdiff.correction.CorrectionConfig` for this
        encode, e.g. ``{"granularity": "auto"}`` (rate-distortion choice among scalar,
        channel and tile maps) or ``{"solver": "gradient", "rho": 0.1, "perceptual": {"name": "hf"}}``
        (trade fidelity for sharpness, weight-free). ``on_step(done, steps)`` is called after each
        sampling step.
        """
        return encoding.encode(self, image, steps, seed, mode, sampler, gamma, on_step)

    def compress(self, image: Tensor, **kwargs: Any) -> bytes:
        """Compress an image (anything :meth:`encode` takes) to the bytes of a ``.cdf`` file."""
        return self.encode(image, **kwargs).data

    def read(self, data: bytes) -> tuple[bitstream.Bitstream, Tensor]:
        """Parse a file and entropy-decode its latent: (header, y_hat), after the checks of
        :func:`corrdiff.decoding.read` (size bound, model fingerprint, stream lengths)."""
        return decoding.read(self, data)

    def decompress(
        self, data: bytes, mode: str | None = None, gamma_scale: float = 1.0, on_step: OnStep | None = None,
    ) -> Tensor:
        """Decode a ``.cdf`` file to a (1, 3, H, W) image in [0, 1].

        Args:
            mode: decode a ``corrected`` file as ``diffusion`` (gamma = 0) or ``e2e`` (x0_e only)
                for ablations; default: the file's own mode.
            gamma_scale: s in [0, 1] multiplies the received gammas (s = 1 reproduces the encoder's
                reconstruction exactly; s = 0 is plain diffusion; in between trades fidelity
                for the diffusion model's texture). ValueError outside [0, 1] or NaN.
            on_step: called as ``on_step(done, steps)`` after each sampling step (a progress bar).
        """
        return decoding.decode(self, data, mode, gamma_scale, on_step)


def fingerprint_of(config: Mapping[str, Any], state_dict: Mapping[str, Tensor]) -> bytes:
    """:meth:`CorrDiffCodec.fingerprint` of a codec with this config and these weights."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for key, tensor in sorted(state_dict.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.digest()[: bitstream.FINGERPRINT_BYTES]


__all__ = ["CorrDiffCodec", "EncodeResult", "check_gamma_scale", "quantize_gamma"]
