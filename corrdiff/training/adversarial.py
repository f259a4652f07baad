"""Adversarial training: phase 2 plus a conditional discriminator's term and its own optimiser.

An MSE-trained x0 predictor learns the posterior mean E[x | x_t, y_hat], which is smooth; a
discriminator that tells decoded patches from real ones, given the same condition, is the signal
for texture that needs no pretrained network (HiFiC, Mentzer et al. 2020; MS-ILLM, Muckley et al.
2023; Denoising Diffusion GANs, Xiao et al. 2022). The loss of phase 2 (corrdiff/training/lit.py)
gains the generator's term::

    L = L2 + w_adv(step) * L_G(D(fake | c)) + w_fm * FM(D, real, fake)
    L_D = L_D(D(real | c), D(fake | c)) + w_r1 * R1(D, real)

(corrdiff/losses/adversarial.py), where ``target`` chooses what is judged:

* ``x0_d``: the score network's clean estimate at a timestep drawn from ``timestep_range`` (the
  low-noise range whose estimates become the decode: 8 DDIM steps end at t = 124, 2 steps at
  t = 499 for T = 1000); real = x, condition c = x0_e. With ``residual_scale`` s the discriminator
  judges the detail over the condition, s (x - x0_e) against s (x0_d - x0_e): the texture is a few
  hundredths of the image's range, and a critic that must first learn to subtract x0_e takes
  hundreds of steps longer to tell them apart (measured: docs/training.md).
* ``posterior`` (Denoising Diffusion GANs): the posterior sample x_s ~ q(x_s | x_t, x0_d), s = t - gap,
  judged against x_s ~ q(x_s | x_t, x) with the same noise; c = [x_t, x0_e], and the discriminator
  sees t (``timestep_patch``).
* ``x0_e``: the end-to-end decode (HiFiC-style, trains D's weights); real = x, c = y_hat upsampled
  to the image's size.

The discriminator is a registered component (corrdiff/modules/discriminators.py); it is saved in
checkpoints (runs resume with it) and never in an exported model or its fingerprint.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrdiff.losses.adversarial import feature_matching, gan_loss, r1_penalty, warmup_factor
from corrdiff import reverse
from corrdiff.registry import DISCRIMINATORS
from corrdiff.training.lit import JointTraining
from corrdiff.training.terms import Intermediates, OptimiserLoss, StepTerms

TARGETS = ("x0_d", "posterior", "x0_e")
DEFAULT_DISCRIMINATOR = {"x0_d": "patch", "posterior": "timestep_patch", "x0_e": "patch"}


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters take no gradient inside (a generator's loss passes through a critic)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class AdversarialTraining(JointTraining):
    """Phase 2 with a discriminator (see the module docstring).

    Args:
        target: what the discriminator judges: ``x0_d``, ``posterior`` or ``x0_e``.
        discriminator: spec of a registered discriminator (default: ``patch``, or ``timestep_patch``
            for ``posterior``); its ``condition_channels`` are wired from ``target``.
        adversarial_weight: w_adv, the generator term's weight after the warm-up.
        adversarial_loss: ``non_saturating`` or ``hinge``.
        r1_weight: weight of the R1 penalty on real samples (0: none).
        feature_matching_weight: w_fm (0: no feature matching; it follows the same warm-up).
        warmup_steps: steps over which w_adv ramps linearly from 0 (the discriminator trains from step 0).
        discriminator_lr: the discriminator's Adam learning rate (default 4x ``lr``, as MS-ILLM);
            betas (0.5, 0.999).
        timestep_range: [low, high] of the timesteps drawn for ``x0_d`` and ``posterior``.
        posterior_gap: t - s of the ``posterior`` target (T / steps: the gap of a sampler step).
        residual_scale: for ``x0_d``, judge s (sample - x0_e) instead of the sample (None: the sample).
        Other arguments as in :class:`~corrdiff.training.lit.JointTraining`.
    """

    phase = "adversarial"

    def __init__(
        self,
        target: str = "x0_d",
        discriminator: Mapping[str, Any] | str | None = None,
        adversarial_weight: float = 0.01,
        adversarial_loss: str = "non_saturating",
        r1_weight: float = 0.0,
        feature_matching_weight: float = 0.0,
        warmup_steps: int = 0,
        discriminator_lr: float | None = None,
        timestep_range: tuple[int, int] = (0, 500),
        posterior_gap: int = 125,
        residual_scale: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        low, high = (int(v) for v in timestep_range)
        if not 0 <= low <= high < self.codec.schedule.num_timesteps:
            raise ValueError(f"timestep_range must satisfy 0 <= low <= high < {self.codec.schedule.num_timesteps}, "
                             f"got {list(timestep_range)}")
        if target == "posterior" and not 0 < posterior_gap <= high:
            raise ValueError(f"posterior_gap must be in (0, {high}] (the range's high end), got {posterior_gap}")
        if target == "x0_e" and "decoder" in self.freeze:
            raise ValueError("target x0_e trains the end-to-end decoder: do not freeze it")
        if residual_scale is not None and (target != "x0_d" or not residual_scale > 0):
            raise ValueError(f"residual_scale (> 0) applies to target x0_d only, got {residual_scale} for {target}")
        self.target, self.timestep_range, self.posterior_gap = target, (low, high), int(posterior_gap)
        self.residual_scale = residual_scale
        self.adversarial_weight, self.r1_weight = adversarial_weight, r1_weight
        self.feature_matching_weight, self.warmup_steps = feature_matching_weight, warmup_steps
        self.discriminator_lr = discriminator_lr if discriminator_lr is not None else 4 * self.lr
        self.gan = gan_loss(adversarial_loss)
        condition_channels = {"x0_d": 3, "posterior": 6, "x0_e": self.codec.config["latent_channels"]}[target]
        self.discriminator = DISCRIMINATORS.build(discriminator or DEFAULT_DISCRIMINATOR[target],
                                                  condition_channels=condition_channels)

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.discriminator.parameters(), lr=self.discriminator_lr, betas=(0.5, 0.999))]

    # ------------------------------------------------------------------ what is judged
    def judged_pair(self, inter: Intermediates) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """(real, fake, condition, t) for :attr:`target`; ``fake`` keeps its graph to the generator."""
        x = inter.x
        if self.target == "x0_e":
            condition = F.interpolate(inter.y_hat.detach().float(), size=x.shape[-2:], mode="nearest")
            return x, inter.x0_e, condition, None
        low, high = self.timestep_range
        if self.target == "posterior":
            low = max(low, self.posterior_gap)
        t = torch.randint(low, high + 1, (x.shape[0],), device=x.device)
        noise = torch.randn_like(x)
        schedule = self.codec.schedule
        x_t = schedule.add_noise(x, noise, t)
        x0_e = inter.x0_e.detach().clamp(-1, 1)
        x0_d = reverse.clean_estimate(self.codec, x_t, t, inter.cond, schedule.alpha_bar_at(t, x).float(), x0_e)[1]
        if self.target == "x0_d":
            if self.residual_scale:
                return (x - x0_e) * self.residual_scale, (x0_d - x0_e) * self.residual_scale, x0_e, t
            return x, x0_d, x0_e, t
        s = t - self.posterior_gap
        z = torch.randn_like(x)
        real, fake = (posterior_sample(schedule, x_t.float(), x0.float(), t, s, z) for x0 in (x.float(), x0_d))
        return real, fake, torch.cat([x_t, x0_e], dim=1), t

    # ------------------------------------------------------------------ the two steps
    def compute_terms(self, x: Tensor) -> tuple[StepTerms, Intermediates]:
        terms, inter = super().compute_terms(x)
        real, fake, condition, t = self.judged_pair(inter)
        ramp = warmup_factor(self.global_step, 0, self.warmup_steps)
        with frozen(self.discriminator):
            fake_logits, fake_features = self.discriminator(fake, condition, t)
            terms.add("adversarial", self.gan.generator(fake_logits.float()), self.adversarial_weight * ramp)
            if self.feature_matching_weight > 0:
                with torch.no_grad():
                    _, real_features = self.discriminator(real, condition, t)
                terms.add("feature_matching", feature_matching(real_features, fake_features),
                          self.feature_matching_weight * ramp)
        inter.extra["judged"] = (real.detach(), fake.detach(), condition.detach(), t)
        return terms, inter

    def extra_losses(self, inter: Intermediates) -> list[OptimiserLoss]:
        """The discriminator's loss on the pair this step's generator term was judged on (the fake from
        before this step's update: both networks step together, from one backward pass)."""
        real, fake, condition, t = inter.extra["judged"]
        real = real.requires_grad_(self.r1_weight > 0)
        real_logits, _ = self.discriminator(real, condition, t)
        fake_logits, _ = self.discriminator(fake, condition, t)
        loss = self.gan.discriminator(real_logits.float(), fake_logits.float())
        logs = {"real_logit": real_logits.detach().float().mean(), "fake_logit": fake_logits.detach().float().mean()}
        if self.r1_weight > 0:
            r1 = r1_penalty(real_logits, real)
            loss = loss + self.r1_weight * r1
            logs["r1"] = r1.detach()
        for name, value in logs.items():
            self.log(f"train/discriminator_{name}", value, batch_size=real.shape[0], sync_dist=True)
        return [OptimiserLoss("discriminator", loss, 1, self.grad_clip)]


def posterior_sample(schedule, x_t: Tensor, x0: Tensor, t: Tensor, s: Tensor, noise: Tensor) -> Tensor:
    """x_s ~ q(x_s | x_t, x0) for s < t (DDPM eq. 6-7 over a gap of several steps):

    mean = sqrt(ab_s) (1 - a_ts) / (1 - ab_t) x0 + sqrt(a_ts) (1 - ab_s) / (1 - ab_t) x_t,
    var  = (1 - ab_s) / (1 - ab_t) (1 - a_ts),    a_ts = ab_t / ab_s.
    """
    ab_t, ab_s = schedule.alpha_bar_at(t, x_t), schedule.alpha_bar_at(s, x_t)
    a_ts = ab_t / ab_s
    mean = (ab_s.sqrt() * (1 - a_ts) / (1 - ab_t)) * x0 + (a_ts.sqrt() * (1 - ab_s) / (1 - ab_t)) * x_t
    std = ((1 - ab_s) / (1 - ab_t) * (1 - a_ts)).clamp(min=0).sqrt()
    return mean + std * noise


__all__ = ["AdversarialTraining", "TARGETS", "frozen", "posterior_sample"]
