"""Noise schedules: alpha_bar_t for t = 0 .. T-1 of the forward process
q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).

* ``linear``: Ho, Jain, Abbeel, "Denoising diffusion probabilistic models", NeurIPS 2020,
  beta_t linear in [beta_start, beta_end], alpha_bar_t = prod_{s<=t} (1 - beta_s).
* ``cosine``: Nichol & Dhariwal, "Improved DDPM", ICML 2021, eq. 17:
  alpha_bar_t = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) * pi/2), betas clipped at 0.999.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from corrdiff.registry import SCHEDULES


class NoiseSchedule(nn.Module):
    """Holds alpha_bar (float64 buffer, not saved: it is a pure function of the config)."""

    def __init__(self, alpha_bar: Tensor):
        super().__init__()
        self.register_buffer("alpha_bar", alpha_bar.double(), persistent=False)

    @property
    def num_timesteps(self) -> int:
        return self.alpha_bar.numel()

    def alpha_bar_at(self, t: Tensor, like: Tensor) -> Tensor:
        """alpha_bar_t gathered for a batch of integer timesteps, shaped to broadcast over ``like``."""
        ab = self.alpha_bar.to(like.device)[t.long()].to(like.dtype)
        return ab.view(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (DDPM eq. 4)."""
        ab = self.alpha_bar_at(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t), float32."""
        ab = self.alpha_bar[t.long().to(self.alpha_bar.device)]
        return (ab / (1 - ab)).float()


@SCHEDULES.register("linear")
class LinearSchedule(NoiseSchedule):
    def __init__(self, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2):
        betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
        super().__init__(torch.cumprod(1 - betas, dim=0))


@SCHEDULES.register("cosine")
class CosineSchedule(NoiseSchedule):
    def __init__(self, num_timesteps: int = 1000, offset: float = 0.008, max_beta: float = 0.999):
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
        super().__init__(torch.cumprod(1 - betas, dim=0))
