"""The base phase: the learned base codec (encoder E, prior, end-to-end decoder D) trained alone for
rate-distortion, as CompressAI trains its models (Ballé et al. 2018, eq. 2; docs/training.md)::

    L = lambda * R + w_dist * d(x, D(y_hat))

No score network runs in the step (it and the conditioning network are frozen), so a step costs a fraction
of a joint step and the same hours give the codec many more updates; the score network then trains on the
frozen codec (``ScoreTraining`` with ``freeze: [encoder, prior]``). The learning rate is flat, then
multiplied by ``lr_factor`` at each of ``lr_milestones`` (the published codecs' schedule: flat, then drops of
3-10x at the end). Validation codes real bytes in eval mode and decodes them end to end (``val/bpp_real``,
``val/psnr_e2e_real``): training-mode bpp mixes noise and straight-through estimates and misleads.

A variable-rate model (docs/variable_rate.md) draws a quality per image and its loss is
``lambda(q) * R + w_dist * d``: images at low qualities (large lambda) weigh many times more than those at high
ones (lambda 32 against 0.125: losses of about 1.9 against 0.12 on the shipped model), and the shared transforms
move towards the low rates at the high ones' expense. ``quality_balance`` p weighs each image's whole loss by
``(lambda(q) / reference_lambda) ** -p``: p = 0.5 brings the losses of every quality of the shipped model to
within a factor of about 1.4 of one another (0.35, 0.27, 0.25, 0.33
at qualities 1, 3, 6, 9 on training crops); the model's RD trade-off at each quality is unchanged (both terms
of an image carry the same weight).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from corrdiff.image_io import to_image_range
from corrdiff.losses import build_distortion
from corrdiff.modules.rate import RateCondition
from corrdiff.training.lit import CodecTraining, mean_psnr
from corrdiff.training.terms import Intermediates, StepTerms


class RateDistortionTraining(CodecTraining):
    """The base phase (see the module doc).

    Args:
        distortion_weight, distortion: w_dist and d (``mse`` on the [0, 1] scale, or ``ms_ssim``), as in
            :class:`~corrdiff.training.lit.JointTraining` (the shipped codec: lambda 1, w_dist 150).
        lr_milestones: steps at which the learning rate is multiplied by ``lr_factor`` (cumulatively).
        quality_balance: p of the per-image weight ``(lambda(q) / reference_lambda) ** -p`` of a variable-rate
            model (see the module doc; 0: every image weighs 1).
        Other arguments as :class:`~corrdiff.training.lit.CodecTraining`; ``score_net`` and ``conditioner`` are
        always frozen here.
    """

    trains_decoder = True
    phase = "rate_distortion"

    def __init__(self, distortion_weight: float = 150.0, distortion: str = "mse",
                 lr_milestones: list[int] | None = None, lr_factor: float = 0.1, quality_balance: float = 0.0,
                 **kwargs: Any):
        kwargs["freeze"] = list(dict.fromkeys([*(kwargs.get("freeze") or []), "score_net", "conditioner"]))
        super().__init__(**kwargs)
        if self.codec.base is not None:
            raise ValueError("a base codec that is not learned has nothing to train in the base phase")
        if not 0 < lr_factor <= 1:
            raise ValueError(f"lr_factor must be in (0, 1], got {lr_factor}")
        self.distortion_weight, self.distortion = distortion_weight, build_distortion(distortion)
        self.lr_milestones, self.lr_factor = sorted(int(m) for m in lr_milestones or ()), float(lr_factor)
        self.quality_balance = float(quality_balance)

    def learning_rate_at(self, step: int) -> float:
        """The main parameter group's learning rate at ``step``: lr times lr_factor per milestone passed."""
        return self.lr * self.lr_factor ** sum(step >= m for m in self.lr_milestones)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        optimizer = self.optimizers()
        optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
        optimizer.param_groups[0]["lr"] = self.learning_rate_at(self.global_step)

    def image_weights(self, rate: RateCondition) -> Tensor | float:
        """``(lambda(q) / reference_lambda) ** -quality_balance`` per image (see the module doc)."""
        if not self.quality_balance:
            return 1.0
        control = self.codec.rate_control
        return (control.lmbda(rate) / control.reference_lambda) ** -self.quality_balance

    def compute_terms(self, x: Tensor) -> tuple[StepTerms, Intermediates]:
        terms, inter = self._rate_and_diffusion(x, None, decode_e2e=True)
        if inter.rate is None or not self.quality_balance:
            terms.add("distortion", self.distortion(x, inter.x0_e), self.distortion_weight)
        else:  # each image's distortion under its weight, as its rate in _rate_and_diffusion
            each = torch.stack([self.distortion(x[i:i + 1], inter.x0_e[i:i + 1]) for i in range(x.shape[0])])
            terms.add("distortion", (each * self.image_weights(inter.rate)).mean(), self.distortion_weight)
        return terms, inter

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        """Real bytes in eval mode, decoded end to end (no sampling: the score network is not this phase's)."""
        if batch_idx > 0 or self.val_compress_images <= 0:
            return
        images = to_image_range(batch[: self.val_compress_images].float())
        results = [self.codec.encode(image[None], mode="e2e") for image in images]
        n = len(results)
        self.log("val/bpp_real", sum(r.bpp() for r in results) / n, batch_size=n)
        self.log("val/psnr_e2e_real", mean_psnr(torch.cat([r.reconstruction for r in results]), images.cpu()),
                 batch_size=n)


__all__ = ["RateDistortionTraining"]
