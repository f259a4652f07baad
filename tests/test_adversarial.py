"""Adversarial training: discriminators (a registry kind), GAN losses, the judged targets, the training
loop's extra optimiser, checkpoints (the discriminator is saved there and never in a model file)."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from corrdiff.losses.adversarial import GAN_LOSSES, feature_matching, gan_loss, r1_penalty, warmup_factor
from corrdiff.model_io import PHASE_KEY, codec_from_training_state, export_checkpoint, untrained_components
from corrdiff.modules.schedules import CosineSchedule
from corrdiff.registry import DISCRIMINATORS, ContractError
from corrdiff.training import AdversarialTraining, JointTraining
from corrdiff.training.adversarial import posterior_sample
from corrdiff.training.terms import StepTerms


def _fit(module: L.LightningModule, steps: int, batch: torch.Tensor | None = None, **kwargs) -> L.Trainer:
    batch = torch.rand(2, 3, 32, 32) * 2 - 1 if batch is None else batch
    options = dict(accelerator="cpu", devices=1, max_steps=steps, max_epochs=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)
    trainer = L.Trainer(**{**options, **kwargs})
    trainer.fit(module, DataLoader([batch] * steps, batch_size=None))
    return trainer


def _module(**kwargs) -> AdversarialTraining:
    torch.manual_seed(0)
    return AdversarialTraining(**{"preset": "tiny", "val_compress_images": 0, **kwargs})


# ----------------------------------------------------------------------------- discriminators
@pytest.mark.parametrize("name, uses_t", [("patch", False), ("timestep_patch", True)])
def test_discriminators_give_patch_logits_and_features(name, uses_t):
    disc = DISCRIMINATORS.build({"name": name, "channels": 8}, condition_channels=5)
    assert disc.uses_timestep is uses_t
    x, c, t = torch.randn(2, 3, 64, 48), torch.randn(2, 5, 64, 48), torch.tensor([3, 400])
    logits, features = disc(x, c, t if uses_t else None)
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] > 1 and len(features) == 4
    assert all(any("parametrizations" in n for n, _ in m.named_parameters()) for m in disc.layers)  # spectral norm
    if uses_t:
        assert not torch.allclose(disc(x, c, torch.tensor([900, 900]))[0], logits)
        with pytest.raises(ValueError, match="pass t"):
            disc(x, c)


def test_discriminator_sees_its_condition_and_checks_sizes():
    disc = DISCRIMINATORS.build("patch", condition_channels=3)
    x = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(disc(x, torch.zeros_like(x))[0], disc(x, torch.ones_like(x))[0])
    with pytest.raises(ValueError, match="differ in size"):
        disc(x, torch.zeros(1, 3, 16, 16))


def test_a_discriminator_without_the_contract_is_refused():
    with pytest.raises(ContractError, match="uses_timestep"):
        @DISCRIMINATORS.register("test_no_timestep_flag")
        class Bad(torch.nn.Module):
            def forward(self, sample, condition, t=None):
                return sample, []


# ----------------------------------------------------------------------------- losses
def test_gan_losses_on_known_logits():
    zero, big = torch.zeros(4), torch.full((4,), 10.0)
    ns, hinge = gan_loss("non_saturating"), gan_loss("hinge")
    assert ns.discriminator(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert ns.discriminator(big, -big).item() == pytest.approx(0, abs=1e-4)  # a perfect critic
    assert ns.generator(big).item() == pytest.approx(0, abs=1e-4) and ns.generator(-big).item() == pytest.approx(10, rel=1e-3)
    assert hinge.discriminator(zero, zero).item() == pytest.approx(2.0)
    assert hinge.discriminator(big, -big).item() == 0.0
    assert hinge.generator(big).item() == -10.0
    with pytest.raises(ValueError, match="one of"):
        gan_loss("wasserstein")
    for loss in GAN_LOSSES.values():  # the generator's gradient raises the fake logits
        fake = torch.zeros(3, requires_grad=True)
        loss.generator(fake).backward()
        assert (fake.grad < 0).all()


def test_r1_is_the_squared_input_gradient_of_real_logits():
    weights = torch.tensor([1.0, -2.0, 3.0])
    real = torch.randn(5, 3, requires_grad=True)
    logits = (real * weights).sum(1)  # d logit / d x = weights for every sample
    assert r1_penalty(logits, real).item() == pytest.approx(float(weights.pow(2).sum()))


def test_feature_matching_and_warmup():
    a = [torch.ones(2, 3), torch.zeros(2, 4)]
    assert feature_matching(a, a).item() == 0.0
    assert feature_matching(a, [torch.zeros(2, 3), torch.zeros(2, 4)]).item() == pytest.approx(0.5)
    assert [warmup_factor(s, 0, 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert warmup_factor(3, 5, 4) == 0.0 and warmup_factor(0, 0, 0) == 1.0


def test_posterior_sample_has_the_forward_process_marginal():
    """x_t ~ q(x_t | x0), then x_s ~ q(x_s | x_t, x0) must be distributed as q(x_s | x0) =
    N(sqrt(ab_s) x0, 1 - ab_s): a wrong mean or variance coefficient breaks this."""
    schedule = CosineSchedule()
    torch.manual_seed(0)
    x0 = torch.full((20000, 1, 1, 1), 0.6)
    t, s = torch.full((20000,), 500), torch.full((20000,), 375)
    x_t = schedule.add_noise(x0, torch.randn_like(x0), t)
    x_s = posterior_sample(schedule, x_t, x0, t, s, torch.randn_like(x0))
    ab_s = float(schedule.alpha_bar[375])
    assert x_s.mean().item() == pytest.approx(math.sqrt(ab_s) * 0.6, abs=0.02)
    assert x_s.var().item() == pytest.approx(1 - ab_s, rel=0.05)


def test_step_terms_sum_weighted_values_and_refuse_duplicates():
    terms = StepTerms()
    terms.add("a", torch.tensor(2.0), 0.5)
    terms.add("b", torch.tensor(3.0))
    assert terms.total().item() == 4.0
    with pytest.raises(ValueError, match="already"):
        terms.add("a", torch.tensor(1.0))


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("target, moves", [("x0_d", "score_net."), ("posterior", "score_net."), ("x0_e", "decoder.")])
def test_each_target_trains_its_generator_and_the_discriminator(target, moves):
    """Two steps: the judged network and the discriminator move, the frozen parts do not, and only the
    codec's optimiser counts training steps."""
    freeze = ["encoder", "prior"] if target == "x0_e" else ["encoder", "prior", "decoder"]
    module = _module(target=target, freeze=freeze, r1_weight=1.0, feature_matching_weight=1.0, distortion_weight=0.0)
    codec_before = {k: v.clone() for k, v in module.codec.state_dict().items()}
    disc_before = {k: v.clone() for k, v in module.discriminator.state_dict().items()}
    trainer = _fit(module, 2)
    assert trainer.global_step == 2
    after = module.codec.state_dict()
    moved = {k for k in codec_before if not torch.equal(codec_before[k], after[k])}
    assert any(k.startswith(moves) for k in moved)
    assert not any(k.startswith(tuple(f"{c}." for c in freeze)) for k in moved)
    assert any(not torch.equal(v, module.discriminator.state_dict()[k]) for k, v in disc_before.items())
    logged = set(trainer.callback_metrics)
    assert {"train/adversarial", "train/feature_matching", "train/discriminator_loss", "train/discriminator_r1",
            "train/discriminator_real_logit"} <= logged


def test_the_generator_term_reaches_the_score_network_only_through_the_discriminator():
    """With diffusion and rate weights 0 the codec moves by the adversarial term alone; the
    discriminator's parameters get no gradient from it (they are frozen inside the term)."""
    module = _module(adversarial_weight=1.0, lmbda=0.0, diffusion_weight=0.0, distortion_weight=0.0,
                     freeze=["encoder", "prior", "decoder"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    terms, _ = module.compute_terms(x)
    terms.total().backward()
    assert all(p.grad is None for p in module.discriminator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.codec.score_net.parameters())


def test_residual_judging_subtracts_the_condition():
    module = _module(residual_scale=10.0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    terms, inter = module.compute_terms(x)
    real, fake, condition, t = inter.extra["judged"]
    x0_e = inter.x0_e.detach().clamp(-1, 1)
    assert torch.allclose(real, (x - x0_e) * 10.0) and torch.equal(condition, x0_e)


def test_each_optimiser_clips_its_first_parameter_group(monkeypatch):
    """grad_clip applies to the codec's main weights (not its aux quantiles) and to the discriminator."""
    module = _module(grad_clip=0.5)
    clipped = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, limit: clipped.append(({id(p) for p in params}, limit)) or real(params, limit))
    _fit(module, 1)
    main = {id(p) for n, p in module.codec.named_parameters() if p.requires_grad and not n.endswith("quantiles")}
    assert clipped == [(main, 0.5), ({id(p) for p in module.discriminator.parameters()}, 0.5)]


def test_warmup_scales_the_adversarial_weight():
    module = _module(adversarial_weight=0.5, warmup_steps=4)
    terms, _ = module.compute_terms(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert terms.weights["adversarial"] == pytest.approx(0.5 * 0.25)  # step 0 of 4


def test_a_nonfinite_discriminator_loss_skips_the_whole_step():
    module = _module()
    original = module.gan
    module.gan = type(original)(discriminator=lambda r, f: original.discriminator(r, f) * float("nan"),
                                generator=original.generator)
    weights = [p.detach().clone() for p in module.parameters()]  # (not the power-iteration buffers)
    with pytest.warns(UserWarning, match="non-finite loss"):
        trainer = _fit(module, 1)
    assert trainer.global_step == 0 and module.skipped_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(weights, module.parameters()))


def test_options_are_checked():
    with pytest.raises(ValueError, match="target"):
        _module(target="x_t")
    with pytest.raises(ValueError, match="timestep_range"):
        _module(timestep_range=(10, 5000))
    with pytest.raises(ValueError, match="posterior_gap"):
        _module(target="posterior", timestep_range=(0, 100), posterior_gap=200)
    with pytest.raises(ValueError, match="residual_scale"):
        _module(target="posterior", residual_scale=10.0)
    with pytest.raises(ValueError, match="do not freeze"):
        _module(target="x0_e", freeze=["decoder"])


def test_discriminator_is_in_checkpoints_and_resumes_but_never_in_a_model_file(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    module = _module(r1_weight=1.0)
    callback = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=2)
    _fit(module, 2, enable_checkpointing=True, callbacks=[callback])
    checkpoint = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint[PHASE_KEY] == "adversarial"
    assert any(k.startswith("discriminator.") for k in checkpoint["state_dict"])
    assert len(checkpoint["optimizer_states"]) == 2
    # resumed: the discriminator and both optimisers come back, the step count continues
    resumed = _module(r1_weight=1.0)
    seen = []

    class Record(L.Callback):
        def on_train_start(self, trainer, module):
            seen.append({k: v.clone() for k, v in module.discriminator.state_dict().items()})

    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()])
    trainer.fit(resumed, DataLoader([torch.rand(2, 3, 32, 32) * 2 - 1] * 3, batch_size=None),
                ckpt_path=str(tmp_path / "last.ckpt"))
    assert trainer.global_step == 3
    saved = {k[len("discriminator."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("discriminator.")}
    assert all(torch.equal(seen[0][k], v) for k, v in saved.items())
    # exported: no discriminator, and the fingerprint is that of the codec's weights alone
    exported = export_checkpoint(tmp_path / "last.ckpt", tmp_path / "model.pt")
    assert not any("discriminator" in k for k in exported.state_dict())
    without = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("discriminator.")}
    codec, _ = codec_from_training_state(checkpoint["hyper_parameters"]["codec_config"], without)
    codec.update(force=True)
    assert codec.fingerprint() == exported.fingerprint()


def test_checkpoints_record_their_phase():
    assert untrained_components({}, "score") == ["decoder"]
    assert untrained_components({}, "joint") == untrained_components({}, "adversarial") == []
    assert untrained_components({"distortion_weight": 1.0}, "score") == ["decoder"]  # the record wins
    assert JointTraining.phase == "joint" and AdversarialTraining.phase == "adversarial"


@pytest.mark.slow
def test_bf16_mixed_adversarial_step():
    module = _module(target="posterior", r1_weight=1.0)
    trainer = _fit(module, 1, precision="bf16-mixed")
    assert trainer.global_step == 1
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in module.parameters())
