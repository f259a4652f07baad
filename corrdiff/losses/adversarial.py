"""Adversarial losses on patch logits: non-saturating and hinge GAN losses, R1, feature matching.

For discriminator logits l_r on real and l_f on generated samples (means over patches and batch):

* ``non_saturating`` (Goodfellow et al. 2014, section 3):
  L_D = softplus(-l_r) + softplus(l_f),   L_G = softplus(-l_f)
* ``hinge`` (Lim & Ye 2017; Miyato et al. 2018):
  L_D = relu(1 - l_r) + relu(1 + l_f),    L_G = -l_f

R1 (Mescheder et al., ICML 2018, eq. 9): gamma/2 * E ||grad_x D(x)||^2 on real samples; the training
module multiplies by its weight (gamma/2). Feature matching (Salimans et al. 2016; pix2pixHD):
the mean L1 distance between the discriminator's activations on the real and the generated sample,
layer by layer. The warm-up ramps the generator's adversarial weight linearly from 0 (the
discriminator trains from the first step, so it is ahead when the term starts to count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class GanLoss:
    """A GAN objective: the discriminator's loss on (real, fake) logits and the generator's on fake."""

    discriminator: Callable[[Tensor, Tensor], Tensor]
    generator: Callable[[Tensor], Tensor]


GAN_LOSSES: dict[str, GanLoss] = {
    "non_saturating": GanLoss(
        discriminator=lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
        generator=lambda fake: F.softplus(-fake).mean(),
    ),
    "hinge": GanLoss(
        discriminator=lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
        generator=lambda fake: -fake.mean(),
    ),
}


def gan_loss(name: str) -> GanLoss:
    if name not in GAN_LOSSES:
        raise ValueError(f"adversarial loss must be one of {sorted(GAN_LOSSES)}, got {name!r}")
    return GAN_LOSSES[name]


def r1_penalty(real_logits: Tensor, real_input: Tensor) -> Tensor:
    """E ||d sum(D(x)) / d x||^2 over the batch; ``real_input`` must require grad (graph kept)."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_input, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def feature_matching(real_features: list[Tensor], fake_features: list[Tensor]) -> Tensor:
    """Mean over layers of the L1 distance between activations (real ones as constant targets)."""
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError("feature matching needs the same, non-empty list of layers for real and fake")
    return sum((f.float() - r.detach().float()).abs().mean() for r, f in zip(real_features, fake_features)) / len(real_features)


def warmup_factor(step: int, start: int, length: int) -> float:
    """0 before ``start``, then a linear ramp to 1 over ``length`` steps (1 at once when ``length`` <= 0)."""
    if step < start:
        return 0.0
    if length <= 0:
        return 1.0
    return min(1.0, (step - start + 1) / length)


__all__ = ["GAN_LOSSES", "GanLoss", "feature_matching", "gan_loss", "r1_penalty", "warmup_factor"]
