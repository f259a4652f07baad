"""Reverse-process samplers that expose each step's x0 estimate.

The shape follows diffusers' schedulers (``set_timesteps(n)`` then ``step(...)``), with
one difference CorrDiff needs: ``step`` takes the *clean-image estimate* x0 rather
than the raw model output, so the caller can correct x0 between the network and
the update (docs/gamma.md)::

    for t in sampler.set_timesteps(n):
        x0_d = x0_from_output(score_net(x_t, t, c), ...)     # diffusion estimate (parametrisations.py)
        x0_c = correct(x0_d)                                 # CorrDiff's correction
        x_t  = sampler.step(x0_c, t, x_t, generator)

* ``ddim``: Song, Meng, Ermon, "Denoising diffusion implicit models", ICLR 2021, eq. 12,
  with eta (eta = 0: deterministic, the paper's and our default).
* ``ddpm``: ancestral sampling from the posterior q(x_{t'} | x_t, x0) over the skipped
  timesteps, which is DDIM's eq. 12 with eta = 1 (Song et al. 2021, section 4.1).
* ``ddim_quadratic``: DDIM on timesteps t_i = (T-1)(1 - i/n)^2, dense at low noise (as in
  DDIM's own "quadratic" selection for CIFAR-10, Song et al. 2021, appendix D.2). The output is the
  last step's x0 estimate, which is a posterior mean: evenly spaced steps end at t = T/n (for T =
  1000, n = 8: t = 124, noise std 0.2 in [-1, 1] under the cosine schedule), where that mean is
  smooth; quadratic steps end at t ~ T/n^2 (t = 16, noise std 0.04), so the texture formed in the
  earlier steps survives (our choice for the few-step decodes of a codec, measured in
  experiments/default_model/README.md).

A sampler declares in ``recorded_params`` the constructor arguments a file must record for the
decoder to rebuild it (numbers, stored as float32; it exposes each as an attribute of that name):
adding a sampler with its own parameters is a change to this module alone (corrdiff.sampling).

Random numbers (the initial x_T and, for eta > 0, each step's noise) come from a
CPU ``torch.Generator`` seeded from the bitstream, so encoder and decoder draw the
same values on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from corrdiff.modules.parametrisations import PREDICTIONS, prediction_target, x0_error_factor, x0_from_output  # noqa: F401
from corrdiff.modules.schedules import NoiseSchedule
from corrdiff.registry import SAMPLERS

def seeded_noise(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """Standard normal noise drawn on the CPU from ``generator``, moved to ``like``'s device and dtype."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(like.device, like.dtype)


@SAMPLERS.register("ddim")
class DDIMSampler:
    """DDIM (Song et al. 2021, eq. 12) on ``n`` evenly spaced ("trailing") timesteps."""

    recorded_params = ("eta",)  # what a .cdf file records of this sampler (besides its name and the steps)

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0):
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        self.schedule = schedule
        self.eta = float(eta)
        self.timesteps: list[int] = []

    def set_timesteps(self, num_steps: int) -> list[int]:
        """Descending timesteps, the first at T-1 (pure noise), e.g. T=1000, n=8: 999, 874, ..., 124."""
        total = self.schedule.num_timesteps
        if not 1 <= num_steps <= total:
            raise ValueError(f"steps must lie in [1, {total}], got {num_steps}")
        self.timesteps = self._spacing(total, num_steps)
        return self.timesteps

    def _spacing(self, total: int, num_steps: int) -> list[int]:
        """Evenly spaced ("trailing") timesteps."""
        return [round(total - i * total / num_steps) - 1 for i in range(num_steps)]

    def alpha_bar(self, t: int) -> float:
        """alpha_bar_t, with alpha_bar_{-1} = 1 (the clean image after the last step)."""
        return 1.0 if t < 0 else float(self.schedule.alpha_bar[t])

    def previous(self, t: int) -> int:
        i = self.timesteps.index(t)
        return self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1

    def step(self, x0: Tensor, t: int, x_t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_{t'} = sqrt(ab') x0 + sqrt(1 - ab' - sigma^2) eps + sigma z, eps implied by (x_t, x0)."""
        t_prev = self.previous(t)
        ab, ab_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        eps = (x_t - ab**0.5 * x0) / (1 - ab) ** 0.5
        sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
        x_prev = ab_prev**0.5 * x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * eps
        if sigma > 0 and t_prev >= 0:
            if generator is None:
                raise ValueError("a stochastic step (eta > 0) needs the seeded generator")
            x_prev = x_prev + sigma * seeded_noise(tuple(x_t.shape), generator, x_t)
        return x_prev


@SAMPLERS.register("ddim_quadratic")
class QuadraticDDIMSampler(DDIMSampler):
    """DDIM on timesteps (T-1)(1 - i/n)^2, i = 0..n-1 (strictly descending), e.g. T=1000, n=8:
    999, 765, 562, 390, 250, 140, 62, 16."""

    def _spacing(self, total: int, num_steps: int) -> list[int]:
        steps = [round((total - 1) * (1 - i / num_steps) ** 2) for i in range(num_steps)]
        for i in range(num_steps - 2, -1, -1):  # keep them distinct where rounding merges two
            steps[i] = max(steps[i], steps[i + 1] + 1)
        return steps


@SAMPLERS.register("ddpm")
class DDPMSampler(DDIMSampler):
    """Ancestral DDPM sampling over the chosen timesteps: DDIM with eta = 1."""

    def __init__(self, schedule: NoiseSchedule, eta: float = 1.0):
        if eta != 1.0:
            raise ValueError("the ddpm sampler is DDIM with eta = 1; use sampler 'ddim' for other eta")
        super().__init__(schedule, eta=1.0)
