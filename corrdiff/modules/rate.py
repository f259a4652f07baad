"""Variable rate: one model for every rate, chosen by a continuous quality q (docs/variable_rate.md).

Gain units (Cui, Wang, Gao, Bai, "Asymmetric gained deep image compression with continuous rate
adaptation", CVPR 2021): the latent is scaled channel-wise before quantisation and unscaled after,

    y_c   = E(x) * g(q)                      what the prior codes (a larger gain: finer steps, more bits)
    y_hat = Q(y_c) * g'(q)                   what D and the conditioner C see

with ``g`` and ``g'`` learned tables of one vector per integer quality, interpolated exponentially in
between (``log g(q)`` is linear in q), so every q in [1, L] is a valid rate. The conditioning pyramid
that the score network reads is modulated per channel as well (FiLM, Perez et al. 2018),

    c_k(q) = C(y_hat)_k * (1 + a_k(q)) + b_k(q)

because the latent's statistics (its quantisation noise) change with the rate and the score network must
know it. Training draws q per image and weighs each image's rate by lambda(q), interpolated
log-linearly in the table ``lambdas`` (:meth:`RateControl.lmbda`).

:class:`RateCondition` is the record that carries q through the model (``analyse``, ``condition``) and the
coding pipelines; a fixed-rate model has no :class:`RateControl` and takes ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

#: The lowest quality of every variable-rate model (the highest is its number of lambdas).
LOWEST_QUALITY = 1.0
#: Most trained qualities a model may have (a bound a forged model file cannot buy memory beyond).
MAX_QUALITIES = 64


@dataclass(frozen=True)
class RateCondition:
    """The rate a batch is coded at: one quality per image, shape (B,), float32."""

    quality: Tensor

    @classmethod
    def of(cls, quality: float | Sequence[float] | Tensor, device: torch.device | str = "cpu") -> RateCondition:
        q = torch.as_tensor(quality, dtype=torch.float32, device=device).reshape(-1)
        return cls(q)

    def per_image(self, count: int) -> Tensor:
        """The quality of each of ``count`` images, (count,): one quality given for a whole batch is repeated."""
        return self.quality.expand(count) if self.quality.numel() == 1 else self.quality


class RateControl(nn.Module):
    """The gain tables and the conditioning modulation of a variable-rate model (see the module doc).

    Args:
        latent_channels: width M of y.
        cond_channels: widths of the conditioning pyramid's levels.
        lambdas: the rate weight of each integer quality, from the lowest quality (largest lambda) up;
            the training loss of an image at quality q is ``lmbda(q) * R + D``.
        reference_lambda: the lambda of the fixed-rate model the gains start from: at initialisation
            the gains are ``(lambda_i / reference_lambda) ** -0.5`` (the quantiser step of high-rate
            theory grows as the square root of lambda), so a quality whose lambda equals it reproduces
            that model exactly.
        default_quality: the quality of an encode that names none (default: the middle of the range).
    """

    def __init__(self, latent_channels: int, cond_channels: Sequence[int], lambdas: Sequence[float],
                 reference_lambda: float = 1.0, default_quality: float | None = None):
        super().__init__()
        if not 2 <= len(lambdas) <= MAX_QUALITIES or any(not (math.isfinite(v) and v > 0) for v in lambdas):
            raise ValueError(f"rate: lambdas must be 2 to {MAX_QUALITIES} positive numbers, got {list(lambdas)[:8]}")
        if any(a <= b for a, b in zip(lambdas, lambdas[1:])):
            raise ValueError(f"rate: lambdas must decrease from the lowest quality to the highest, got {list(lambdas)}")
        self.lambdas = tuple(float(v) for v in lambdas)
        self.reference_lambda = float(reference_lambda)
        low, high = self.quality_range
        self.default_quality = (low + high) / 2 if default_quality is None else float(default_quality)
        if not low <= self.default_quality <= high:
            raise ValueError(f"rate: default_quality {default_quality} outside [{low:g}, {high:g}]")
        log_gain = -0.5 * torch.log(torch.tensor(self.lambdas) / reference_lambda)
        self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, latent_channels))
        self.log_inverse_gain = nn.Parameter(-self.log_gain.detach().clone())
        self.cond_scale = nn.ParameterList(nn.Parameter(torch.zeros(len(lambdas), c)) for c in cond_channels)
        self.cond_shift = nn.ParameterList(nn.Parameter(torch.zeros(len(lambdas), c)) for c in cond_channels)

    @property
    def quality_range(self) -> tuple[float, float]:
        """The lowest and highest quality, [1, L]."""
        return LOWEST_QUALITY, LOWEST_QUALITY + len(self.lambdas) - 1

    def check(self, rate: RateCondition | None) -> RateCondition:
        """``rate`` itself; ValueError when it is missing, not finite or outside :attr:`quality_range`."""
        low, high = self.quality_range
        if rate is None:
            raise ValueError(f"this variable-rate model needs a quality in [{low:g}, {high:g}]")
        q = rate.quality
        if not bool(torch.isfinite(q).all()) or float(q.min()) < low or float(q.max()) > high:
            raise ValueError(f"quality must be in [{low:g}, {high:g}], got {q.tolist()}")
        return rate

    def interpolate(self, table: Tensor, rate: RateCondition) -> Tensor:
        """Rows of ``table`` (L, C) at each image's quality, linear between integer qualities: (B, C)."""
        position = (rate.quality.to(table.device, torch.float32) - LOWEST_QUALITY).clamp(0, len(self.lambdas) - 1)
        lower = position.floor().clamp(max=len(self.lambdas) - 2).long()
        weight = (position - lower)[:, None]
        return table[lower] * (1 - weight) + table[lower + 1] * weight

    def lmbda(self, rate: RateCondition) -> Tensor:
        """lambda(q) of each image (B,), log-linear between the table's entries."""
        logs = torch.log(torch.tensor(self.lambdas, device=rate.quality.device))[:, None]
        return self.interpolate(logs, rate)[:, 0].exp()

    def scale_latent(self, y: Tensor, rate: RateCondition) -> Tensor:
        """y_c = y * g(q): the latent the prior codes."""
        return y * self.interpolate(self.log_gain, rate).exp()[:, :, None, None].to(y.dtype)

    def unscale_latent(self, y_hat: Tensor, rate: RateCondition) -> Tensor:
        """y_hat = Q(y_c) * g'(q): the latent D and C see."""
        return y_hat * self.interpolate(self.log_inverse_gain, rate).exp()[:, :, None, None].to(y_hat.dtype)

    def modulate(self, cond: list[Tensor], rate: RateCondition) -> list[Tensor]:
        """c_k * (1 + a_k(q)) + b_k(q) for each level k of the conditioning pyramid."""
        out = []
        for c, scale, shift in zip(cond, self.cond_scale, self.cond_shift):
            a = self.interpolate(scale, rate)[:, :, None, None].to(c.dtype)
            b = self.interpolate(shift, rate)[:, :, None, None].to(c.dtype)
            out.append(c * (1 + a) + b)
        return out


__all__ = ["LOWEST_QUALITY", "MAX_QUALITIES", "RateCondition", "RateControl"]
