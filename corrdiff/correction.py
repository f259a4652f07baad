"""The CorrDiff correction: one transmitted scalar per sampling step (DESIGN.md section 1).

At each step the diffusion model's clean-image estimate x0_d is moved towards the
end-to-end decoder's estimate x0_e::

    x0_c = x0_d + gamma * (x0_e - x0_d)                                   (1)
    gamma = argmin_g  L(x, x0_d + g * (x0_e - x0_d))                      (2)

Only the encoder can evaluate (2), since only it sees x. For L = MSE, (2) is the
projection of the residual onto the correction direction::

    gamma = <x - x0_d, x0_e - x0_d> / ||x0_e - x0_d||^2                   (3)

(0 when the denominator vanishes, i.e. x0_e == x0_d). The paper (Ma, Yang, Liu,
ICML 2024) solves (2) by gradient descent, which admits perceptual objectives such as
MSE + rho * LPIPS; both solvers are here, (3) by default. The transmitted gamma is
float16: the encoder quantises it *before* using it, so the decoder, replaying the
same seed, steps and gammas, reproduces the encoder's trajectory exactly.

Granularity (our choice, not fixed by the paper): ``scalar`` sends one gamma per step
(the paper's), ``channel`` one per RGB channel per step (3 x 16 bits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

FLOAT16_MAX = 65504.0
GRANULARITIES = {"scalar": 1, "channel": 3}
SOLVERS = ("closed_form", "gradient")


@dataclass
class CorrectionConfig:
    """How the encoder chooses gamma.

    Attributes:
        solver: ``closed_form`` (eq. 3, MSE objective) or ``gradient`` (L-BFGS on eq. 2).
        granularity: ``scalar`` (paper) or ``channel``.
        rho: weight of the perceptual term in the gradient solver's objective, MSE + rho * P.
        perceptual: spec of the perceptual distance P (see :mod:`corrdiff.losses.perceptual`),
            used when rho > 0.
        iterations: L-BFGS iterations of the gradient solver.
    """

    solver: str = "closed_form"
    granularity: str = "scalar"
    rho: float = 0.0
    perceptual: dict[str, Any] = field(default_factory=lambda: {"name": "lpips", "net": "alex"})
    iterations: int = 20

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"gamma solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"gamma granularity must be one of {sorted(GRANULARITIES)}, got {self.granularity!r}")
        if self.rho < 0:
            raise ValueError(f"rho must be >= 0, got {self.rho}")
        if self.rho > 0 and self.solver != "gradient":
            raise ValueError("a perceptual term (rho > 0) needs solver: gradient; the closed form is MSE-only")

    @property
    def groups(self) -> int:
        return GRANULARITIES[self.granularity]


def _reduce_dims(groups: int) -> tuple[int, ...]:
    return (1, 2, 3) if groups == 1 else (2, 3)


def apply_correction(x0_d: Tensor, x0_e: Tensor, gamma: Tensor) -> Tensor:
    """Eq. (1); ``gamma`` has shape (B, G) with G = 1 (scalar) or C (per channel)."""
    return x0_d + gamma[:, :, None, None] * (x0_e - x0_d)


def closed_form_gamma(x: Tensor, x0_d: Tensor, x0_e: Tensor, groups: int = 1) -> Tensor:
    """Eq. (3), per image (groups = 1) or per channel (groups = C); shape (B, G), float32."""
    x, x0_d, x0_e = x.float(), x0_d.float(), x0_e.float()
    direction = x0_e - x0_d
    dims = _reduce_dims(groups)
    num = ((x - x0_d) * direction).sum(dims)
    den = (direction * direction).sum(dims)
    gamma = torch.where(den > 1e-12, num / den.clamp_min(1e-12), torch.zeros_like(num))
    return gamma.reshape(x.shape[0], groups)


def gradient_gamma(
    x: Tensor,
    x0_d: Tensor,
    x0_e: Tensor,
    groups: int = 1,
    rho: float = 0.0,
    perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
    iterations: int = 20,
) -> Tensor:
    """Eq. (2) by L-BFGS from gamma = 0 with objective MSE(x, x0_c) + rho * P(x, x0_c)."""
    if rho > 0 and perceptual is None:
        raise ValueError("rho > 0 needs a perceptual distance")
    x, x0_d, x0_e = x.detach().float(), x0_d.detach().float(), x0_e.detach().float()
    gamma = torch.zeros(x.shape[0], groups, dtype=torch.float32, device=x.device, requires_grad=True)
    optimiser = torch.optim.LBFGS([gamma], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        optimiser.zero_grad()
        x0_c = apply_correction(x0_d, x0_e, gamma)
        # sum over images: each image's gamma only affects its own term
        loss = (x0_c - x).pow(2).mean(dim=(1, 2, 3)).sum()
        if rho > 0:
            loss = loss + rho * perceptual(x0_c, x).sum()
        loss.backward()
        return loss

    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        optimiser.step(objective)
    return gamma.detach()


def quantize_gamma(gamma: Tensor) -> Tensor:
    """What is transmitted: float16 (16 bits per scalar), clamped to its finite range, NaN -> 0.

    Returned as float32 holding float16-representable values.
    """
    gamma = torch.nan_to_num(gamma.float(), nan=0.0, posinf=FLOAT16_MAX, neginf=-FLOAT16_MAX)
    return gamma.clamp(-FLOAT16_MAX, FLOAT16_MAX).half().float()


class GammaSolver:
    """Chooses gamma for one step from (x, x0_d, x0_e) according to a :class:`CorrectionConfig`."""

    def __init__(self, config: CorrectionConfig, perceptual: Callable[[Tensor, Tensor], Tensor] | None = None):
        self.config = config
        self.perceptual = perceptual

    def __call__(self, x: Tensor, x0_d: Tensor, x0_e: Tensor) -> Tensor:
        cfg = self.config
        if cfg.solver == "closed_form":
            gamma = closed_form_gamma(x, x0_d, x0_e, cfg.groups)
        else:
            gamma = gradient_gamma(x, x0_d, x0_e, cfg.groups, cfg.rho, self.perceptual, cfg.iterations)
        return quantize_gamma(gamma)
