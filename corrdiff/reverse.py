"""The one corrected reverse step (Ma, Yang, Liu, ICML 2024, Algorithm 1 and eq. (1)), shared by inference
(:func:`corrdiff.sampling.sample`), the diffusion loss (:mod:`corrdiff.losses.diffusion`), the adversarial
term (:mod:`corrdiff.training.adversarial`), the perceptual term of joint training and any later phase
(a distillation, an exported decode graph)::

    output = score_net(x_t, t, c[, x0_e])              the network (CorrDiffModel.denoise)
    x0_d   = x0(output, x_t, ab_t)                     its parametrisation (corrdiff/modules/parametrisations.py)
    x0_c   = x0_d + G(gamma) (x0_e - x0_d)             eq. (1): the correction (corrdiff/correction.py)
    x_prev = sampler.step(x0_c, t, x_t)                DDIM, eq. 12 of Song et al. 2021 (corrdiff/modules/samplers.py)

:func:`clean_estimate` is the first two lines (training stops there: its t are batched and nothing is
clipped), :func:`corrected_step` all four as sampling runs them (one timestep, estimates clipped to [-1, 1]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from corrdiff.correction import apply_correction
from corrdiff.modules.parametrisations import x0_from_output

if TYPE_CHECKING:  # the model is only read, never built here
    from corrdiff.model import CorrDiffModel


def clean_estimate(model: CorrDiffModel, x_t: Tensor, t: Tensor, cond: list[Tensor], alpha_bar: float | Tensor,
                   x0_e: Tensor | None = None, projected: bool = False) -> tuple[Tensor, Tensor]:
    """(the score network's raw output in float32, its clean-image estimate x0_d); ``alpha_bar``: ab_t, a float or
    a tensor broadcastable to x_t; ``x0_e`` goes to score networks that take it (``model.score_uses_e2e``);
    ``projected``: ``cond`` is already the network's projection (:func:`corrdiff.sampling.sampling_condition`)."""
    output = model.denoise(x_t, t, cond, projected=projected, x0_e=x0_e).float()
    return output, x0_from_output(output, x_t.float(), alpha_bar, model.prediction)


def corrected_step(model: CorrDiffModel, sampler: Any, x_t: Tensor, t: int, cond: list[Tensor], x0_e: Tensor,
                   gamma_of: Callable[[Tensor], Tensor], generator: torch.Generator | None = None,
                   projected: bool = False) -> tuple[Tensor, Tensor]:
    """One sampling step at timestep ``t``: (x0_c, x_prev). ``gamma_of(x0_d)`` gives the step's gamma map (shape
    broadcastable to x0_d) from the clipped diffusion estimate. Without autograd the clips work in place and each
    estimate is released as soon as it is used (the same values as the straightforward expressions)."""
    t_batch = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
    x0_d = clean_estimate(model, x_t, t_batch, cond, sampler.alpha_bar(t), x0_e, projected)[1]  # output freed
    inplace = not torch.is_grad_enabled()
    x0_d = x0_d.clamp_(-1, 1) if inplace else x0_d.clamp(-1, 1)
    x0_c = apply_correction(x0_d, x0_e, gamma_of(x0_d))
    del x0_d
    x0_c = x0_c.clamp_(-1, 1) if inplace else x0_c.clamp(-1, 1)
    return x0_c, sampler.step(x0_c, t, x_t, generator)


__all__ = ["clean_estimate", "corrected_step"]
