"""CorrDiffModel: the CorrDiff network as an nn.Module (Ma, Yang, Liu, ICML 2024; docs/architecture.md).

    x --E--> y --prior--> y_hat (training-time quantisation) and likelihoods
    y_hat --D--> x0_e                end-to-end (privileged) decoder
    y_hat --C--> c                   conditioning pyramid of the score network
    score_net(x_t, t, c[, x0_e])     the diffusion model's eps, x0 or v estimate

The learned base (E, prior, D) is one base codec; a model whose config names a ``base`` (a
:data:`~corrdiff.registry.BASES` component, e.g. ``avif``: docs/avif_base.md) has no E, prior or D. Its
"latent" y_hat is then the base's decode x0_e itself, at full resolution, and C reads the base's
``condition_input(x0_e, quality)``.

This module holds the components (built by registry name, :mod:`corrdiff.registry`), the config
that describes them and the fingerprint that files name them by (docs/bitstream.md). It knows
nothing of files: the coding pipelines (:mod:`corrdiff.encoding`, :mod:`corrdiff.decoding`,
:mod:`corrdiff.sampling`) take a model, and :class:`corrdiff.codec.CorrDiffCodec` adds them as
methods. Internally images are in [-1, 1].
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrdiff import bitstream
from corrdiff.correction import CorrectionConfig
from corrdiff.modules.rate import RateCondition, RateControl
from corrdiff.modules.transforms import STRIDE, check_stride
from corrdiff.registry import BASES, CONDITIONERS, DECODERS, ENCODERS, PRIORS, SAMPLERS, SCHEDULES, SCORE_NETS


@dataclass
class ModelOutput:
    """What :meth:`CorrDiffModel.forward` returns for a training step."""

    y_hat: Tensor  # the latent with training-time quantisation
    likelihoods: dict[str, Tensor]  # per stream of the prior (the rate, corrdiff.losses.rate)
    x0_e: Tensor  # D(y_hat) in [-1, 1], unclipped
    cond: list[Tensor]  # the conditioning pyramid C(y_hat) of the score network


class CorrDiffModel(nn.Module):
    """The CorrDiff components, built by registry name (see :mod:`corrdiff.registry`).

    Args:
        latent_channels: width M of y (wired into encoder, decoder, prior and conditioner).
        encoder, decoder, prior, conditioner, score_net, schedule: ``{"name": ..., **kwargs}`` specs.
        sampler: default sampler spec for compression (``{"name": "ddim", "eta": 0.0}``).
        steps: default number of sampling steps (8, as in the paper).
        correction: :class:`~corrdiff.correction.CorrectionConfig` fields.
        rate: ``{"lambdas": [...], "reference_lambda": ...}`` makes a variable-rate model
            (:class:`~corrdiff.modules.rate.RateControl`, docs/variable_rate.md); None: a fixed-rate
            model, whose config has no ``rate`` entry (so its fingerprint is what it always was).
        base: ``{"name": ...}`` of a base codec in place of the learned E, prior and D (docs/avif_base.md);
            its config then has no ``latent_channels``, ``encoder``, ``decoder`` or ``prior`` entry, and its
            qualities are the base's. None: the learned base (no ``base`` entry: fingerprints unchanged).
    """

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
        rate: Mapping[str, Any] | None = None,
        base: Mapping[str, Any] | None = None,
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
        if base is not None:
            if rate is not None:
                raise ValueError("a model with a base codec takes its qualities from the base: give no 'rate'")
            for key in ("latent_channels", "encoder", "decoder", "prior"):
                del self.config[key]
            self.config["base"] = dict(base)
        if rate is not None:
            self.config["rate"] = dict(rate)
        json.dumps(self.config)  # the config must be plain data: it is hashed and embedded in model files
        self.base = BASES.build(self.config["base"]) if base is not None else None
        self.encoder = self.decoder = self.prior = None
        if self.base is None:
            m = latent_channels
            self.encoder = ENCODERS.build(self.config["encoder"], latent_channels=m)
            self.decoder = DECODERS.build(self.config["decoder"], latent_channels=m)
            check_stride(self.encoder)
            check_stride(self.decoder)
            self.prior = PRIORS.build(self.config["prior"], latent_channels=m)
        condition_channels = latent_channels if self.base is None else self.base.condition_channels
        self.conditioner = CONDITIONERS.build(self.config["conditioner"], latent_channels=condition_channels)
        self.score_net = SCORE_NETS.build(self.config["score_net"], cond_channels=tuple(self.conditioner.out_channels))
        self.schedule = SCHEDULES.build(self.config["schedule"])
        self.correction = CorrectionConfig(**self.config["correction"])
        self.rate_control = (
            RateControl(latent_channels, tuple(self.conditioner.out_channels), **self.config["rate"])
            if rate is not None else None)

    def forward(self, x: Tensor, rate: RateCondition | None = None) -> ModelOutput:
        """x in [-1, 1] -> the latent, its likelihoods, x0_e and the conditioning (what a training step needs);
        ``rate``: each image's quality (variable-rate models only)."""
        y_hat, likelihoods = self.analyse(x, rate)
        return ModelOutput(y_hat, likelihoods, self.decode_e2e(y_hat), self.condition(y_hat, rate))

    @property
    def stream_names(self) -> tuple[str, ...]:
        """The streams a file of this model carries (the prior's, or the base codec's)."""
        return tuple(self.prior.streams if self.base is None else self.base.streams)

    def entropy_tables_ready(self) -> bool:
        """Whether both sides can code now (a base codec needs no tables)."""
        return self.base is not None or self.prior.entropy_tables_ready()

    # ------------------------------------------------------------------ the rate
    @property
    def quality_range(self) -> tuple[float, float] | None:
        """The qualities a variable-rate model codes at, [low, high]; None for a fixed-rate model."""
        if self.base is not None:
            return self.base.quality_range
        return self.rate_control.quality_range if self.rate_control is not None else None

    @property
    def default_quality(self) -> float | None:
        """The quality of an encode that names none: the config's ``default_quality`` (else the range's middle)."""
        if self.base is not None:
            return self.base.default_quality
        return self.rate_control.default_quality if self.rate_control is not None else None

    def rate_condition(self, quality: float | None, device: torch.device | str = "cpu") -> RateCondition | None:
        """The :class:`RateCondition` of an encode at ``quality`` (None: the model's default; ValueError
        for a fixed-rate model given one, or a quality outside :attr:`quality_range`)."""
        if self.base is not None:
            return RateCondition.of(self.base.check_quality(self.default_quality if quality is None else quality), device)
        if self.rate_control is None:
            if quality is not None:
                raise ValueError("this model codes at one fixed rate: a quality needs a variable-rate model "
                                 "(docs/variable_rate.md)")
            return None
        rate = RateCondition.of(self.default_quality if quality is None else quality, device)
        return self.rate_control.check(rate)

    def scale_latent(self, y: Tensor, rate: RateCondition | None) -> Tensor:
        """The latent the prior codes (y itself for a fixed-rate model)."""
        return y if self.rate_control is None else self.rate_control.scale_latent(y, self.rate_control.check(rate))

    def unscale_latent(self, y_hat: Tensor, rate: RateCondition | None) -> Tensor:
        """The coded latent as D and C see it (itself for a fixed-rate model)."""
        return y_hat if self.rate_control is None else self.rate_control.unscale_latent(y_hat, rate)

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

    def analyse(self, x: Tensor, rate: RateCondition | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """x in [-1, 1] -> (y_hat, likelihoods) with training-time quantisation (see priors); y_hat as
        D and C see it (:meth:`unscale_latent`).

        The prior runs in float32 even under autocast: likelihoods of rare symbols underflow
        in half precision, and the entropy model's parameters are numerically sensitive.

        With a base codec (not differentiable): each image is coded for real, y_hat = x0_e, and there are no
        likelihoods (the rate is the streams' bytes, which :mod:`corrdiff.encoding` counts).
        """
        if self.base is not None:
            return self._base_analyse(x, rate)
        y = self.encoder(x)
        with torch.autocast(device_type=y.device.type, enabled=False):
            y_hat, likelihoods = self.prior(self.scale_latent(y.float(), rate))
            return self.unscale_latent(y_hat, rate), likelihoods

    def _base_analyse(self, x: Tensor, rate: RateCondition | None) -> tuple[Tensor, dict[str, Tensor]]:
        rate = rate if rate is not None else self.rate_condition(None, x.device)
        qualities = rate.per_image(x.shape[0]).tolist()
        decodes = [self.base.code(image[None], q)[1].to(x) for image, q in zip(x.detach(), qualities)]
        return torch.cat(decodes), {}

    def condition(self, y_hat: Tensor, rate: RateCondition | None = None) -> list[Tensor]:
        """The conditioning pyramid of the score network (modulated by the rate in a variable-rate model; with a
        base codec, C reads the base's ``condition_input`` of x0_e = y_hat and the quality)."""
        if self.base is not None:
            rate = rate if rate is not None else self.rate_condition(None, y_hat.device)
            return self.conditioner(self.base.condition_input(y_hat, rate.per_image(y_hat.shape[0])))
        cond = self.conditioner(y_hat)
        return cond if self.rate_control is None else self.rate_control.modulate(cond, self.rate_control.check(rate))

    def decode_e2e(self, y_hat: Tensor) -> Tensor:
        """x0_e = D(y_hat), unclipped (training losses see the raw output); with a base codec y_hat is x0_e."""
        return self.decoder(y_hat) if self.base is None else y_hat

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
        if self.base is not None:
            return torch.zeros((), device=self.device)
        return self.prior.aux_loss()

    def update(self, force: bool = False) -> bool:
        """Build the entropy coder's CDF tables from the current weights (before compressing); a base codec has
        none (False: nothing was updated)."""
        return False if self.base is not None else self.prior.update(force=force)

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

    def padded_pixels(self, y_hat: Tensor) -> int:
        """Pixels of the padded image whose latent (or, with a base codec, whose decode) is ``y_hat``."""
        cell = STRIDE**2 if self.base is None else 1
        return y_hat.shape[-2] * y_hat.shape[-1] * cell

    def latent_hw(self, height: int, width: int) -> tuple[int, int]:
        """Size of y for an image of ``height`` x ``width`` (padded to :attr:`multiple`)."""
        m = self.multiple
        return (-(-height // m) * m) // STRIDE, (-(-width // m) * m) // STRIDE


def fingerprint_of(config: Mapping[str, Any], state_dict: Mapping[str, Tensor]) -> bytes:
    """:meth:`CorrDiffModel.fingerprint` of a model with this config and these weights."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for key, tensor in sorted(state_dict.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.digest()[: bitstream.FINGERPRINT_BYTES]


__all__ = ["CorrDiffModel", "ModelOutput", "fingerprint_of"]
