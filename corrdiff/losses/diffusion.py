"""Diffusion (denoising score matching) loss, eps- or x0-prediction, optional min-SNR weighting.

x_t = sqrt(ab_t) x + sqrt(1 - ab_t) eps,  t ~ U{0, T-1}           (DDPM eq. 4)
L = w(t) * || f_theta(x_t, t, c) - target ||^2, target = eps or x   (DDPM eq. 14)

Min-SNR-gamma weighting (Hang et al., ICCV 2023): w(t) = min(SNR_t, g) / SNR_t for eps
prediction and min(SNR_t, g) for x0 prediction; ``min_snr_gamma=None`` gives w = 1.
"""

from __future__ import annotations

import torch
from torch import Tensor


def diffusion_loss(
    codec,
    x: Tensor,
    cond: list[Tensor],
    min_snr_gamma: float | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and the tensors a phase-2 step reuses: ``t``, ``x_t`` and the x0 estimate ``x0_d``."""
    schedule = codec.schedule
    b = x.shape[0]
    if t is None:
        t = torch.randint(0, schedule.num_timesteps, (b,), device=x.device)
    if noise is None:
        noise = torch.randn_like(x)
    x_t = schedule.add_noise(x, noise, t)
    output = codec.denoise(x_t, t, cond)
    prediction = codec.prediction
    target = noise if prediction == "eps" else x
    per_image = (output.float() - target.float()).pow(2).mean(dim=(1, 2, 3))
    if min_snr_gamma is not None:
        snr = schedule.snr(t).to(x.device)
        clipped = snr.clamp(max=min_snr_gamma)
        per_image = per_image * (clipped / snr if prediction == "eps" else clipped)
    ab = schedule.alpha_bar_at(t, x).float()
    x0_d = output.float() if prediction == "x0" else (x_t.float() - (1 - ab).sqrt() * output.float()) / ab.sqrt()
    return per_image.mean(), {"t": t, "x_t": x_t, "x0_d": x0_d}


__all__ = ["diffusion_loss"]
