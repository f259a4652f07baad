"""The training phases of CorrDiff as LightningModules (the method: docs/training.md).

* :class:`ScoreTraining` (phase 1, cf. CDC, Yang & Mandt 2023): encoder, prior,
  conditioning network and score network::

      L1 = lambda * R + L_diff

* :class:`JointTraining` (phase 2): starts from a phase-1 checkpoint and adds the
  end-to-end decoder D::

      L2 = lambda * R + w_diff * L_diff + w_dist * d(x, x0_e) + rho * P(x, x0_c)
      x0_c = x0_d + gamma (x0_e - x0_d),  gamma from the closed form at the sampled t

* :class:`~corrdiff.training.adversarial.AdversarialTraining` adds a discriminator's term and
  its own optimiser to phase 2 (corrdiff/training/adversarial.py).

R is the estimated bpp, L_diff the denoising loss, d a distortion (MSE or MS-SSIM),
P LPIPS. Each phase returns its loss as named, weighted terms (:class:`~corrdiff.training.terms.StepTerms`,
each logged as ``train/<name>``). Optimisation is manual: :meth:`CodecTraining.guarded_step` is the one
step (one backward pass, NaN guard across ranks, gradient clipping, optimisers) that the codec's loss
and any extra (loss, optimiser) pair of a subclass go through. The entropy bottleneck's quantiles
are trained by the aux loss only, in their own parameter group of the codec's optimiser; both losses are back-propagated in one
pass (the aux loss touches only the quantiles, the main loss does not reach them).
The score network's weights are also tracked as an EMA, which validation, testing and
export use. The phase is recorded in every checkpoint (``corrdiff_phase``).

Numerically sensitive parts run in float32 under mixed precision: the prior and its
likelihoods (see :meth:`CorrDiffCodec.analyse`), the rate, gamma and the losses.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import lightning as L
import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MeanMetric
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.image import PeakSignalNoiseRatio

from corrdiff.codec import CorrDiffCodec
from corrdiff.correction import Granularity, apply_correction
from corrdiff.image_io import to_image_range
from corrdiff.losses import bits_per_pixel, bits_per_pixel_each, build_distortion, build_perceptual, diffusion_loss
from corrdiff.losses.distortion import ms_ssim_betas, ms_ssim_per_image
from corrdiff.model_io import PHASE_KEY, codec_from_training_state, load_codec_state, under_prefix
from corrdiff.modules.rate import RateCondition
from corrdiff.training.startup import COMPONENTS, StartPolicy, resolve_codec_config  # noqa: F401 (re-exported)
from corrdiff.training.terms import Intermediates, OptimiserLoss, StepTerms

# Lightning warns that a manually optimised module's checkpoint holds the weights after the step:
# that is what corrdiff's checkpoints are meant to hold (as with automatic optimisation).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")


def mean_psnr(reconstructions: Tensor, originals: Tensor) -> Tensor:
    """The mean over images of each image's PSNR in dB, both (B, 3, H, W) in [0, 1] (the real-bytes validation of
    the phases that decode a few images: one figure per image, then their mean)."""
    return peak_signal_noise_ratio(reconstructions, originals, data_range=1.0, reduction="none", dim=(1, 2, 3)).mean()


class CodecTraining(L.LightningModule):
    """Shared machinery of both phases: codec, optimisers, EMA, NaN guard, validation and test.

    Args:
        preset: a named codec config (``tiny``, ``small``, ``paper``) to start from; with neither
            ``preset``, ``codec`` nor ``init_from`` given, ``tiny``.
        codec: CorrDiffCodec keyword arguments merged over the preset, or over ``init_from``'s
            config when no preset is given.
        lmbda: weight of the rate R (bpp).
        lr, aux_lr: learning rates of the main and the aux (quantile) optimisers.
        grad_clip: max gradient norm of the main optimiser (None: no clipping).
        ema_decay: EMA decay of the score network's weights.
        min_snr_gamma: min-SNR weighting of the diffusion loss (None: uniform).
        val_compress_images: images of the first validation batch really compressed to bytes.
        max_nonfinite_steps: consecutive NaN/Inf losses tolerated (skipped) before stopping.
        codec_config: the resolved codec config as saved in checkpoints; when given it replaces
            ``preset``/``codec`` (this is how ``--ckpt_path`` and ``load_from_checkpoint`` rebuild the model).
        init_from: weights to start from: a Lightning checkpoint of either phase, or a corrdiff model
            file or packaged model name (``default``) to fine-tune (its score network, which holds the
            EMA weights, also seeds the EMA). Loaded strictly (mismatched keys are an error) except for
            the components in ``init_skip``. Optimiser state starts afresh; to continue a run with
            its optimiser, use ``--ckpt_path`` instead.
        init_skip: codec components (``encoder``, ``decoder``, ``prior``, ``conditioner``,
            ``score_net``) left at their fresh initialisation instead of loaded from ``init_from``:
            how a new score network (another ``prediction`` or ``e2e_input``) is trained on top of an
            already trained encoder, prior and end-to-end decoder.
        init_parts: components loaded from another weights file instead of ``init_from``, e.g.
            ``{score_net: a.pt, conditioner: a.pt}``: how a score network trained on one codec of a
            rate ladder starts the score networks of the others (same component configs required).
        freeze: codec components whose weights are not trained (``requires_grad`` off, invisible to
            DDP and the optimiser). Freezing ``encoder`` and ``prior`` keeps the rate and the latent
            of the starting model exactly; their entropy tables are rebuilt identically.
        quality_range: [low, high] of the qualities drawn per image when training a variable-rate model
            (default: the model's whole range; docs/variable_rate.md).
        accumulate_grad_batches: batches whose gradients make one update (:meth:`guarded_step`); the
            trainer's ``accumulate_grad_batches`` of a ``corrdiff fit`` config is handed here.
    """

    trains_decoder = False
    phase = "codec"  # recorded in checkpoints; each phase names itself
    automatic_optimization = False

    def __init__(
        self,
        preset: str | None = None,
        codec: dict[str, Any] | None = None,
        lmbda: float = 0.05,
        lr: float = 1e-4,
        aux_lr: float = 1e-3,
        grad_clip: float | None = 1.0,
        ema_decay: float = 0.999,
        min_snr_gamma: float | None = 5.0,
        val_compress_images: int = 2,
        max_nonfinite_steps: int = 20,
        codec_config: dict[str, Any] | None = None,
        init_from: str | None = None,
        init_skip: list[str] | None = None,
        init_parts: dict[str, str] | None = None,
        freeze: list[str] | None = None,
        quality_range: list[float] | None = None,
        accumulate_grad_batches: int = 1,
    ):
        super().__init__()
        self.save_hyperparameters()  # collects the subclass's __init__ arguments too
        # the start-up policy, read once (corrdiff/training/startup.py); when restoring (--ckpt_path,
        # load_from_checkpoint) the weights come from the checkpoint itself, so nothing is read here
        self.start_policy = StartPolicy.of(init_from, init_skip, init_parts, freeze)
        self.init_skip, self.init_parts, self.freeze = self.start_policy.init_skip, self.start_policy.init_parts, self.start_policy.freeze
        start = self.start_policy.read() if codec_config is None else None
        self.codec_config = self.start_policy.codec_config(preset, codec, codec_config, start)
        self.hparams["codec_config"] = self.codec_config
        self.codec = CorrDiffCodec(**self.codec_config)
        self.ema = AveragedModel(self.codec.score_net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        self.ema.requires_grad_(False)
        self.lmbda, self.lr, self.aux_lr, self.grad_clip = lmbda, lr, aux_lr, grad_clip
        self.min_snr_gamma = min_snr_gamma
        self.quality_range = tuple(quality_range) if quality_range else None
        if int(accumulate_grad_batches) < 1:
            raise ValueError(f"accumulate_grad_batches must be at least 1, got {accumulate_grad_batches}")
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self.val_compress_images = val_compress_images
        self.max_nonfinite_steps = max_nonfinite_steps
        self.nonfinite_in_a_row = 0
        self.skipped_steps = 0
        self._pending_clip: float | None = None  # the limit of the optimiser step under way (guarded_step)
        self.val_bpp_real = MeanMetric()
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_psnr_e2e = PeakSignalNoiseRatio(data_range=1.0)
        self.test_bpp = MeanMetric()
        self.test_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.test_psnr_e2e = PeakSignalNoiseRatio(data_range=1.0)
        self.val_ms_ssim = MeanMetric()  # of the per-image MS-SSIM (corrdiff.losses.distortion)
        if start is not None:
            self.start_policy.load(self.codec, self.ema, start)
        self.start_policy.set_trainable(self.codec, self.trains_decoder)  # before DDP wraps the module

    # ------------------------------------------------------------------ parameters and optimisers
    def configure_optimizers(self) -> Any:
        """The codec's Adam with two parameter groups: the main weights and the bottleneck quantiles (aux).

        Adam is per-parameter, so this is the same as two optimisers (CompressAI's main/aux split)
        while one ``optimizer.step()`` is one training step (``global_step``). Subclasses return this
        optimiser first, then their own (see :meth:`extra_optimizers`).
        """
        named = list(self.codec.named_parameters())
        main = [p for n, p in named if p.requires_grad and not n.endswith("quantiles")]
        aux = [p for n, p in named if n.endswith("quantiles")]
        codec_optimizer = torch.optim.Adam([
            {"params": main, "lr": self.lr, "name": "main"},
            {"params": aux, "lr": self.aux_lr, "name": "aux"},
        ])
        extra = self.extra_optimizers()
        return [codec_optimizer, *extra] if extra else codec_optimizer

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimisers of a subclass's own networks (e.g. a discriminator), stepped by :meth:`guarded_step`."""
        return []

    # ------------------------------------------------------------------ the step shared by every phase
    def compute_terms(self, x: Tensor) -> tuple[StepTerms, Intermediates]:  # pragma: no cover - abstract
        """The phase's weighted loss terms and the intermediates they were computed from."""
        raise NotImplementedError

    def _diffusion_term(self, inter: Intermediates) -> Tensor:
        """L_diff; fills ``inter``'s t, x_t and x0_d. The score network sees x0_e as sampling does
        (clipped) and trains neither D nor, through it, the encoder: D stays the distortion-optimal
        estimate that the correction pulls towards."""
        score_x0_e = inter.x0_e.detach().clamp(-1, 1) if self.codec.score_uses_e2e else None
        diff, sample = diffusion_loss(self.codec, inter.x, inter.cond, self.min_snr_gamma, x0_e=score_x0_e)
        inter.t, inter.x_t, inter.x0_d = sample["t"], sample["x_t"], sample["x0_d"]
        return diff

    def _rate_and_diffusion(self, x: Tensor, diffusion_weight: float | None,
                            decode_e2e: bool) -> tuple[StepTerms, Intermediates]:
        """The terms every phase starts with, ``bpp`` (weight ``lmbda``) and ``diffusion_loss`` (None: no
        diffusion term, and no conditioning computed), and the step's intermediates (x0_e only when
        ``decode_e2e``)."""
        rate = self.training_rate(x)
        y_hat, likelihoods = self.codec.analyse(x, rate)
        x0_e = self.codec.decode_e2e(y_hat) if decode_e2e else None
        cond = self.codec.condition(y_hat, rate) if diffusion_weight is not None else []
        inter = Intermediates(x=x, y_hat=y_hat, x0_e=x0_e, cond=cond, rate=rate)
        terms = StepTerms()
        bpp = bits_per_pixel_each(likelihoods, x.shape[-2] * x.shape[-1])
        if rate is None:
            terms.add("bpp", bpp.mean(), self.lmbda)
        else:  # each image's rate weighed by lambda(q) of its quality (docs/variable_rate.md); bpp only logged
            weighted = self.codec.rate_control.lmbda(rate) * bpp * self.image_weights(rate)
            terms.add("rate", weighted.mean(), self.lmbda)
            terms.add("bpp", bpp.mean(), 0.0)
        if diffusion_weight is not None:
            terms.add("diffusion_loss", self._diffusion_term(inter), diffusion_weight)
        return terms, inter

    def image_weights(self, rate: RateCondition) -> Tensor | float:
        """A weight per image of a variable-rate batch on its whole loss (1 here; the base phase can balance the
        qualities, :class:`~corrdiff.training.rate_distortion.RateDistortionTraining`)."""
        return 1.0

    def training_rate(self, x: Tensor) -> RateCondition | None:
        """A variable-rate model's quality for each image of the batch, uniform in ``quality_range``
        (default: the model's whole range); None for a fixed-rate model."""
        if self.codec.rate_control is None:
            return None
        low, high = self.quality_range or self.codec.quality_range
        return RateCondition(low + (high - low) * torch.rand(x.shape[0], device=x.device))

    def compute_loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted sum of :meth:`compute_terms` and each term's unweighted value."""
        terms, _ = self.compute_terms(x)
        return terms.total(), dict(terms.values)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor | None:
        """One guarded step of the codec's loss (its terms + the aux loss) and of every pair from
        :meth:`extra_losses`, then the EMA. Returns the codec loss (None: skipped as non-finite)."""
        terms, inter = self.compute_terms(batch)
        loss = terms.total()
        aux_loss = self.codec.aux_loss()
        pairs = [OptimiserLoss("codec", loss + aux_loss, 0, self.grad_clip), *self.extra_losses(inter)]
        stepped = self.guarded_step(pairs, batch_idx)
        if stepped is None:
            return None
        if stepped:
            self.ema.update_parameters(self.codec.score_net)
        batch_size = self.images_of(batch).shape[0]
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size, sync_dist=True)
        self.log("train/aux_loss", aux_loss.detach(), batch_size=batch_size, sync_dist=True)
        for name, value in terms.values.items():
            self.log(f"train/{name}", value.detach().float(), batch_size=batch_size, sync_dist=True)
        for pair in pairs[1:]:
            self.log(f"train/{pair.name}_loss", pair.loss.detach().float(), batch_size=batch_size, sync_dist=True)
        return loss.detach()

    def images_of(self, batch: Any) -> Tensor:
        """The original images of a batch, (B, 3, H, W) in [-1, 1]: the batch itself for the image folders of
        :class:`~corrdiff.training.data.ImageDataModule`; a phase with another data module (a ``data:
        class_path`` of the config) says where they are (e.g. ``batch["x"]``)."""
        return batch

    def extra_losses(self, inter: Intermediates) -> list[OptimiserLoss]:
        """A subclass's own (loss, optimiser) pairs for this step, e.g. a discriminator's (index 1 onwards
        of :meth:`configure_optimizers`). Their graphs must not reach the codec's weights."""
        return []

    def guarded_step(self, pairs: list[OptimiserLoss], batch_idx: int = 0) -> bool | None:
        """One backward pass of the sum of the pairs' losses, then each pair's optimiser steps, unless
        any loss is non-finite on any rank. Returns True when the optimisers stepped, False when the
        gradients were only accumulated (below), None when the batch was skipped as non-finite.

        * Gradient accumulation (``accumulate_grad_batches`` k > 1): each batch's gradients are
          added, scaled by 1/k, and the optimisers step (and their gradients are cleared) after every
          k-th batch, so one update is the mean gradient of k batches and ``global_step`` counts
          updates (Lightning's own ``Trainer(accumulate_grad_batches=...)`` does not apply to manual
          optimisation; ``corrdiff fit`` hands the trainer's value to the model). Under DDP every
          batch's gradients are synchronised (correct, not the cheapest).
        * One backward pass per step (the losses' graphs are disjoint in the parameters they reach):
          DDP synchronises every gradient in it, as it expects one backward per forward.
        * A non-finite loss (on any DDP rank) skips the whole step on every rank (a skipped step is
          not counted in ``global_step``: that counts updates); after ``max_nonfinite_steps`` in a row
          the run stops with a message.
        * Each pair's optimiser has the gradient norm of its first parameter group clipped to the
          pair's ``clip`` (after AMP's unscaling, in :meth:`on_before_optimizer_step`).
        * Only the first pair's (the codec's) optimiser step counts (Lightning's ``global_step``,
          ``max_steps`` and checkpoint intervals count codec updates); the others step through the
          same precision plugin without advancing it.
        """
        total = sum(pair.loss for pair in pairs)
        finite = bool(torch.isfinite(total).item())
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            self._skip_nonfinite(total)
            return None
        self.nonfinite_in_a_row = 0
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        k = self.accumulate_grad_batches
        if batch_idx % k == 0:
            for pair in pairs:
                optimizers[pair.optimizer_index].zero_grad()
        self.manual_backward(total / k if k > 1 else total)
        if (batch_idx + 1) % k != 0:
            return False
        try:
            for i, pair in enumerate(pairs):
                optimizer = optimizers[pair.optimizer_index]
                self._pending_clip = pair.clip
                if i == 0:
                    optimizer.step()
                else:
                    self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=lambda: None, model=self)
        finally:
            self._pending_clip = None
        return True

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Clip the first parameter group's gradient norm to the limit :meth:`guarded_step` set (gradients are
        unscaled here; the codec's aux quantiles, its second group, are left alone)."""
        if self._pending_clip:
            torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], self._pending_clip)

    def _skip_nonfinite(self, loss: Tensor) -> None:
        self.nonfinite_in_a_row += 1
        self.skipped_steps += 1
        warnings.warn(f"non-finite loss ({loss.item()}) at step {self.global_step}: step skipped", stacklevel=2)
        self.log("train/skipped_steps", float(self.skipped_steps))
        if self.nonfinite_in_a_row >= self.max_nonfinite_steps:
            raise RuntimeError(
                f"the loss was NaN/Inf for {self.nonfinite_in_a_row} steps in a row; stopping. "
                "Lower the learning rate, enable gradient clipping or resume from an earlier checkpoint."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the training phase explicitly (``corrdiff export`` reads it, see model_io)."""
        checkpoint[PHASE_KEY] = self.phase

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resize the entropy coder's table buffers to the checkpoint's before Lightning loads it."""
        state = under_prefix(checkpoint["state_dict"], "codec.")
        load_codec_state(self.codec, state)

    # ------------------------------------------------------------------ EMA
    @contextmanager
    def ema_weights(self) -> Iterator[None]:
        """Temporarily put the EMA weights into the score network."""
        backup = {k: v.detach().clone() for k, v in self.codec.score_net.state_dict().items()}
        self.codec.score_net.load_state_dict(self.ema.module.state_dict())
        try:
            yield
        finally:
            self.codec.score_net.load_state_dict(backup)

    def export_codec(self) -> CorrDiffCodec:
        """A standalone inference codec: EMA score-network weights, entropy tables built (in memory; the
        same weights as ``corrdiff export`` writes from this module's checkpoint)."""
        codec, _ = codec_from_training_state(self.codec_config, self.state_dict())
        codec.update(force=True)
        return codec.eval()

    # ------------------------------------------------------------------ validation and test
    def on_validation_epoch_start(self) -> None:
        self.codec.update(force=True)

    def on_test_epoch_start(self) -> None:
        self.codec.update(force=True)

    def _estimate(self, x: Tensor, prefix: str) -> Tensor:
        rate = self.codec.rate_condition(None, x.device)  # a variable-rate model at its default quality
        y_hat, likelihoods = self.codec.analyse(x, rate)
        bpp = bits_per_pixel(likelihoods, x.shape[-2] * x.shape[-1])
        cond = self.codec.condition(y_hat, rate)
        x0_e = self.codec.decode_e2e(y_hat).clamp(-1, 1)
        generator = torch.Generator(device="cpu").manual_seed(1234)
        t = torch.randint(0, self.codec.schedule.num_timesteps, (x.shape[0],), generator=generator).to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x)
        diff, _ = diffusion_loss(self.codec, x, cond, self.min_snr_gamma, t=t, noise=noise, x0_e=x0_e)
        self.log(f"{prefix}/bpp_estimated", bpp, batch_size=x.shape[0], sync_dist=True)
        self.log(f"{prefix}/diffusion_loss", diff, batch_size=x.shape[0], sync_dist=True)
        return x0_e

    def _compress_batch(self, x: Tensor, limit: int | None) -> tuple[list[float], Tensor]:
        """Really compress (bytes) up to ``limit`` images; returns bpp per image and reconstructions in [0, 1]."""
        bpps, recons = [], []
        for image in x[:limit]:
            result = self.codec.encode(to_image_range(image[None].float()))
            bpps.append(result.bpp())
            recons.append(result.reconstruction.to(x.device))
        return bpps, torch.cat(recons)

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        x = batch
        with self.ema_weights():
            x0_e = self._estimate(x, "val")
            self.val_psnr_e2e.update(to_image_range(x0_e), to_image_range(x))
            self.log("val/psnr_e2e", self.val_psnr_e2e, batch_size=x.shape[0])
            if batch_idx == 0 and self.val_compress_images > 0:
                bpps, recons = self._compress_batch(x, self.val_compress_images)
                target = to_image_range(x[: len(bpps)])
                for b in bpps:
                    self.val_bpp_real.update(b)
                self.val_psnr.update(recons, target)
                self.val_ms_ssim.update(ms_ssim_per_image(recons, target, ms_ssim_betas(min(target.shape[-2:]))))
                self.log("val/bpp_real", self.val_bpp_real, batch_size=len(bpps))
                self.log("val/psnr", self.val_psnr, batch_size=len(bpps))
                self.log("val/ms_ssim", self.val_ms_ssim, batch_size=len(bpps))
                self._log_images("val/reconstructions", target, recons)

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        x = batch
        with self.ema_weights():
            x0_e = self._estimate(x, "test")
            target = to_image_range(x)
            self.test_psnr_e2e.update(to_image_range(x0_e), target)
            bpps, recons = self._compress_batch(x, None)
        for b in bpps:
            self.test_bpp.update(b)
        self.test_psnr.update(recons, target)
        self.log("test/psnr_e2e", self.test_psnr_e2e, batch_size=x.shape[0])
        self.log("test/bpp", self.test_bpp, batch_size=x.shape[0])
        self.log("test/psnr", self.test_psnr, batch_size=x.shape[0])

    def _log_images(self, key: str, originals: Tensor, reconstructions: Tensor) -> None:
        """Side-by-side originals | reconstructions to W&B or TensorBoard (other loggers: skipped)."""
        if self.trainer is None or not self.trainer.is_global_zero:
            return
        pairs = torch.cat([originals, reconstructions], dim=-1).clamp(0, 1).cpu()
        for logger in self.loggers:
            if hasattr(logger, "log_image"):  # WandbLogger
                logger.log_image(key=key, images=list(pairs), step=self.global_step)
            elif hasattr(getattr(logger, "experiment", None), "add_images"):  # TensorBoard
                logger.experiment.add_images(key, pairs, self.global_step)


class ScoreTraining(CodecTraining):
    """Phase 1: L1 = lambda * R + L_diff (see the module docstring). The decoder D is frozen.

    Terms: ``bpp`` (weight ``lmbda``) and ``diffusion_loss`` (weight 1).
    """

    trains_decoder = False
    phase = "score"

    def compute_terms(self, x: Tensor) -> tuple[StepTerms, Intermediates]:
        return self._rate_and_diffusion(x, 1.0, decode_e2e=self.codec.score_uses_e2e)


class JointTraining(CodecTraining):
    """Phase 2: L2 = lambda * R + w_diff * L_diff + w_dist * d(x, x0_e) + rho * P(x, x0_c).

    Args:
        init_from: as in :class:`CodecTraining`; typically the phase-1 checkpoint, or a model file to
            fine-tune.
        diffusion_weight, distortion_weight, rho: w_diff, w_dist and rho.
        distortion: ``mse`` or ``ms_ssim`` (d above; MSE on the [0, 1] scale).
        perceptual: spec of P (LPIPS, real pretrained weights required, or the weight-free ``hf``;
            see losses.perceptual).
        freeze_score_net: train only encoder, prior and D (the same as ``freeze: [score_net, conditioner]``).
        gamma_granularity: the correction x0_c of the P term uses the MSE-optimal gammas of this
            granularity (``scalar``, ``channel``, ``tile-N``, ``tile-N-linear``), so the networks learn
            with the correction they will get; default: the codec's ``correction.granularity``
            (``auto`` trains with ``scalar``, the granularity of all its steps but the last).
        Other arguments as in :class:`CodecTraining`.
    """

    trains_decoder = True
    phase = "joint"

    def __init__(
        self,
        init_from: str | None = None,
        preset: str | None = None,
        codec: dict[str, Any] | None = None,
        diffusion_weight: float = 1.0,
        distortion_weight: float = 400.0,
        distortion: str = "mse",
        rho: float = 0.0,
        perceptual: dict[str, Any] | None = None,
        freeze_score_net: bool = False,
        gamma_granularity: str | None = None,
        **kwargs: Any,
    ):
        if freeze_score_net:
            kwargs["freeze"] = list(dict.fromkeys([*(kwargs.get("freeze") or []), "score_net", "conditioner"]))
        super().__init__(preset=preset, codec=codec, init_from=init_from, **kwargs)
        self.diffusion_weight, self.distortion_weight, self.rho = diffusion_weight, distortion_weight, rho
        self.distortion = build_distortion(distortion)
        self.perceptual = build_perceptual(perceptual or {"name": "lpips", "net": "alex"}) if rho > 0 else None
        self.gamma_granularity = Granularity.parse(gamma_granularity or self.codec.correction.granularities[0].spec)

    def compute_terms(self, x: Tensor) -> tuple[StepTerms, Intermediates]:
        terms, inter = self._rate_and_diffusion(x, self.diffusion_weight, decode_e2e=True)
        terms.add("distortion", self.distortion(x, inter.x0_e), self.distortion_weight)
        if self.perceptual is not None:
            x0_d = inter.x0_d.clamp(-1, 1)
            with torch.autocast(x.device.type, enabled=False):
                gran, (h, w) = self.gamma_granularity, x.shape[-2:]
                gamma = gran.closed_form(x, x0_d.detach(), inter.x0_e.detach().float())
                inter.x0_c = apply_correction(x0_d.float(), inter.x0_e.float(), gran.expand(gamma, h, w))
                terms.add("perceptual", self.perceptual(inter.x0_c, x.float()).mean(), self.rho)
        return terms, inter
