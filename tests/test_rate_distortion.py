"""The base phase (corrdiff/training/rate_distortion.py): E, prior and D alone for rate-distortion."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from corrdiff.training import RateDistortionTraining


def _fit(module, steps: int, val: bool = False):
    images = torch.rand(steps, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=1 if val else 0, val_check_interval=steps if val else None)
    loaders = DataLoader(list(images), batch_size=1)
    trainer.fit(module, train_dataloaders=loaders, val_dataloaders=DataLoader(list(images[:2]), batch_size=2) if val else None)
    return trainer


def test_the_base_phase_trains_the_codec_and_leaves_the_score_network_alone():
    torch.manual_seed(0)
    module = RateDistortionTraining(preset="tiny", val_compress_images=0)
    before = {k: v.clone() for k, v in module.codec.state_dict().items()}
    terms, inter = module.compute_terms(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert set(terms.values) == {"bpp", "distortion"} and inter.cond == []
    _fit(module, 2)
    after = module.codec.state_dict()
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert {"encoder", "decoder", "prior"} <= moved
    assert not moved & {"score_net", "conditioner"}


def test_the_learning_rate_is_flat_then_drops_at_each_milestone():
    module = RateDistortionTraining(preset="tiny", lr=1e-3, lr_milestones=[2, 4], lr_factor=0.5, val_compress_images=0)
    assert [module.learning_rate_at(s) for s in (0, 1, 2, 3, 4, 9)] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]
    seen = []
    module.on_before_optimizer_step = lambda optimizer: seen.append(optimizer.param_groups[0]["lr"])
    _fit(module, 3)
    assert seen == [1e-3, 1e-3, 5e-4]


def test_validation_codes_real_bytes_decoded_end_to_end():
    module = RateDistortionTraining(preset="tiny", val_compress_images=2)
    trainer = _fit(module, 1, val=True)
    metrics = trainer.callback_metrics
    assert float(metrics["val/bpp_real"]) > 0 and float(metrics["val/psnr_e2e_real"]) > 0


def test_a_model_with_a_base_codec_has_no_base_phase():
    with pytest.raises(ValueError, match="nothing to train"):
        RateDistortionTraining(preset="avif_tiny")


def test_quality_balance_weighs_each_image_of_a_variable_rate_batch():
    """With p = quality_balance, the loss is mean_i (lambda_i / ref) ** -p * (lambda_i * R_i + w * d_i); p = 0 is
    the plain variable-rate loss mean_i lambda_i * R_i + w * mean_i d_i."""
    from corrdiff.losses.distortion import mse
    from corrdiff.losses.rate import bits_per_pixel_each
    from corrdiff.modules.rate import RateCondition

    rate = {"lambdas": [4.0, 1.0, 0.25], "reference_lambda": 1.0}
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    qualities = torch.tensor([1.0, 2.0, 3.0])
    for p in (0.0, 0.5):
        torch.manual_seed(0)
        module = RateDistortionTraining(preset="tiny", codec={"rate": rate}, quality_balance=p, val_compress_images=0)
        module.training_rate = lambda batch: RateCondition(qualities)
        torch.manual_seed(2)  # the same training noise for both computations
        loss, _ = module.compute_loss(x)
        torch.manual_seed(2)
        y_hat, likelihoods = module.codec.analyse(x, RateCondition(qualities))
        x0_e = module.codec.decode_e2e(y_hat)
        lambdas = torch.tensor([4.0, 1.0, 0.25])
        weights = lambdas ** -p
        bpp = bits_per_pixel_each(likelihoods, 32 * 32)
        each_d = torch.stack([mse(x[i:i + 1], x0_e[i:i + 1]) for i in range(3)])
        expected = module.lmbda * (weights * lambdas * bpp).mean() + module.distortion_weight * (weights * each_d).mean()
        assert float(loss) == pytest.approx(float(expected), rel=1e-5)
