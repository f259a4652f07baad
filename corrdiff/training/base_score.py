"""Training the score network of a model whose base codec is not learned (the AVIF base, docs/avif_base.md).

The base's decode x0_e is fixed by its bytes, so only the conditioning network C and the score network learn,
from cached (x, x0_e, quality) pairs (:mod:`corrdiff.training.pairs`)::

    L = L_diff(x; C(condition_input(x0_e, q)), x0_e)       (docs/training.md, the diffusion loss)

with the score network seeing x0_e as sampling does. Validation logs the diffusion loss at fixed noise and
timesteps, and really compresses the first images of the first batch at the model's default quality: the
corrected decode's PSNR (``val/psnr``) beside the base's own (``val/psnr_base``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from corrdiff.image_io import to_image_range
from corrdiff.losses import diffusion_loss
from corrdiff.modules.rate import RateCondition
from corrdiff.training.lit import CodecTraining, mean_psnr
from corrdiff.training.terms import Intermediates, StepTerms


class BaseScoreTraining(CodecTraining):
    """The score-network phase of a base-codec model; arguments as :class:`~corrdiff.training.lit.CodecTraining`
    (``lmbda`` and ``aux_lr`` unused: the base's rate is not trained). Batches are
    :class:`~corrdiff.training.pairs.PairDataModule`'s dicts."""

    phase = "base_score"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        if self.codec.base is None:
            raise ValueError("BaseScoreTraining trains a model with a base codec (e.g. preset avif_small); "
                             "the learned base trains with ScoreTraining")

    def images_of(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["x"]

    def compute_terms(self, batch: dict[str, Tensor]) -> tuple[StepTerms, Intermediates]:
        x, x0_e = batch["x"], batch["x0_e"]
        rate = RateCondition(batch["quality"].float())
        inter = Intermediates(x=x, y_hat=x0_e, x0_e=x0_e, cond=self.codec.condition(x0_e, rate), rate=rate)
        terms = StepTerms()
        terms.add("diffusion_loss", self._diffusion_term(inter), 1.0)
        return terms, inter

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        x, x0_e = batch["x"], batch["x0_e"]
        n = x.shape[0]
        with self.ema_weights():
            rate = RateCondition(batch["quality"].float())
            generator = torch.Generator(device="cpu").manual_seed(1234 + batch_idx)
            t = torch.randint(0, self.codec.schedule.num_timesteps, (n,), generator=generator).to(x.device)
            noise = torch.randn(x.shape, generator=generator).to(x)
            diff, _ = diffusion_loss(self.codec, x, self.codec.condition(x0_e, rate), self.min_snr_gamma, t=t,
                                     noise=noise, x0_e=x0_e.clamp(-1, 1))
            self.log("val/diffusion_loss", diff, batch_size=n, sync_dist=True)
            if batch_idx == 0 and self.val_compress_images > 0:
                images = to_image_range(x[: self.val_compress_images].float())
                corrected = [self.codec.encode(image[None]) for image in images]
                base = [self.codec.encode(image[None], mode="e2e") for image in images]
                for key, results in (("val/psnr", corrected), ("val/psnr_base", base)):
                    self.log(key, mean_psnr(torch.cat([r.reconstruction for r in results]), images.cpu()),
                             batch_size=len(images))
                self.log("val/bpp_real", sum(r.bpp() for r in corrected) / len(images), batch_size=len(images))


__all__ = ["BaseScoreTraining"]
