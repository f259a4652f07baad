"""Diffusion (denoising score matching) loss for eps-, x0- or v-prediction, optional min-SNR weighting.

x_t = sqrt(ab_t) x + sqrt(1 - ab_t) eps,  t ~ U{0, T-1}                   (DDPM eq. 4)
L = w(t) * || f_theta(x_t, t, c) - target ||^2                             (DDPM eq. 14)
target = eps, x, or v = sqrt(ab_t) eps - sqrt(1 - ab_t) x                  (Salimans & Ho 2022)

In terms of the clean-image error, ||f - target||^2 = k(t) ||x0_theta - x||^2 with k = SNR_t (eps),
1 (x0) or SNR_t + 1 (v) (:func:`~corrdiff.modules.parametrisations.x0_error_factor`). So the parametrisation
alone sets how much each noise level counts: uniform eps-loss weighs the clean-image error by SNR
(the low-noise steps dominate), uniform x0-loss weighs every level alike, uniform v-loss by SNR + 1.

Min-SNR-gamma weighting (Hang et al., ICCV 2023) makes the clean-image weight min(SNR_t, g) for every
parametrisation: w(t) = min(SNR_t, g) / k(t), i.e. min(SNR, g)/SNR (eps), min(SNR, g) (x0),
min(SNR, g)/(SNR + 1) (v). ``min_snr_gamma=None`` gives w = 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from corrdiff.model import CorrDiffModel
from corrdiff.modules.parametrisations import prediction_target, x0_error_factor
from corrdiff import reverse


def diffusion_loss(
    model: CorrDiffModel,
    x: Tensor,
    cond: list[Tensor],
    min_snr_gamma: float | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    x0_e: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and the tensors a phase-2 step reuses: ``t``, ``x_t`` and the x0 estimate ``x0_d``.

    ``x0_e``: the end-to-end reconstruction in [-1, 1], for score networks that take it as an input
    (``model.score_uses_e2e``); ignored otherwise.
    """
    schedule = model.schedule
    b = x.shape[0]
    if t is None:
        t = torch.randint(0, schedule.num_timesteps, (b,), device=x.device)
    if noise is None:
        noise = torch.randn_like(x)
    x_t = schedule.add_noise(x, noise, t)
    ab = schedule.alpha_bar_at(t, x).float()
    output, x0_d = reverse.clean_estimate(model, x_t, t, cond, ab, x0_e)  # the reverse step's estimate (corrdiff/reverse.py)
    prediction = model.prediction
    target = prediction_target(x.float(), noise.float(), ab, prediction)
    per_image = (output - target).pow(2).mean(dim=(1, 2, 3))
    if min_snr_gamma is not None:
        snr = schedule.snr(t).to(x.device)
        per_image = per_image * snr.clamp(max=min_snr_gamma) / x0_error_factor(snr, prediction)
    return per_image.mean(), {"t": t, "x_t": x_t, "x0_d": x0_d}


__all__ = ["diffusion_loss"]
