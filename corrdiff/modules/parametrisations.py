"""The network's parametrisations: how a score network's output (eps, x0 or v) maps to the clean-image
estimate x0 and back, for x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps (DDPM, Ho et al. 2020, eq. 4).

One home for the three, which the sampling loop, the diffusion loss, the adversarial term and any later
distillation all read (through :mod:`corrdiff.reverse`, the one corrected reverse step).
"""

from __future__ import annotations

import torch
from torch import Tensor

PREDICTIONS = ("eps", "x0", "v")


def x0_from_output(output: Tensor, x_t: Tensor, alpha_bar_t: float | Tensor, prediction: str) -> Tensor:
    """Clean-image estimate from the network output, for x_t = sqrt(ab) x0 + sqrt(1 - ab) eps.

    * ``eps``: x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)          (DDPM eq. 15)
    * ``x0``:  the output itself
    * ``v``:   x0 = sqrt(ab) x_t - sqrt(1 - ab) v,  v = sqrt(ab) eps - sqrt(1 - ab) x0
      (Salimans & Ho, "Progressive distillation", ICLR 2022, section 4 and appendix D)

    eps-prediction divides by sqrt(ab), which is ~0.006 at the cosine schedule's last timestep: any
    error of the network at the first sampling step is amplified ~150x there (a colour cast after
    clipping). x0 and v stay bounded at every timestep.
    """
    if prediction == "x0":
        return output
    if prediction == "eps":
        return (x_t - (1 - alpha_bar_t) ** 0.5 * output) / alpha_bar_t**0.5
    if prediction == "v":
        return alpha_bar_t**0.5 * x_t - (1 - alpha_bar_t) ** 0.5 * output
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def prediction_target(x0: Tensor, noise: Tensor, alpha_bar_t: Tensor, prediction: str) -> Tensor:
    """What the network is trained to output for x_t = sqrt(ab) x0 + sqrt(1 - ab) noise (inverse of
    :func:`x0_from_output`): noise, x0, or v = sqrt(ab) noise - sqrt(1 - ab) x0."""
    if prediction == "x0":
        return x0
    if prediction == "eps":
        return noise
    if prediction == "v":
        return alpha_bar_t.sqrt() * noise - (1 - alpha_bar_t).sqrt() * x0
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def x0_error_factor(snr: Tensor, prediction: str) -> Tensor:
    """k(t) with ||output error||^2 = k(t) ||x0 error||^2: SNR for eps, 1 for x0, SNR + 1 for v.

    (eps error = -sqrt(ab/(1-ab)) x0 error at fixed x_t; v error = -x0 error / sqrt(1 - ab).)
    """
    if prediction == "x0":
        return torch.ones_like(snr)
    if prediction == "eps":
        return snr
    if prediction == "v":
        return snr + 1
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


__all__ = ["PREDICTIONS", "prediction_target", "x0_error_factor", "x0_from_output"]
