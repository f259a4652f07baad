"""The training package's seams (docs/architecture.md): the start-up policy read once, per-step values carried by
the step's intermediates, any data module, and gradient accumulation decided in the guarded step."""

from __future__ import annotations

import sys
from unittest import mock

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from corrdiff.training import ScoreTraining
from corrdiff.training.startup import StartPolicy


class Batches(L.LightningDataModule):
    """A data module that is not an image folder: fixed random images."""

    def __init__(self, count: int = 4, size: int = 32):
        super().__init__()
        self.images = torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def train_dataloader(self) -> DataLoader:
        return DataLoader(list(self.images), batch_size=1)


def _trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, limit_val_batches=0, **kwargs)


def test_gradient_accumulation_makes_one_update_of_k_batches():
    torch.manual_seed(0)
    module = ScoreTraining(preset="tiny", val_compress_images=0, accumulate_grad_batches=2)
    steps = []
    original = module.guarded_step
    module.guarded_step = lambda pairs, batch_idx=0: steps.append(original(pairs, batch_idx)) or steps[-1]
    trainer = _trainer(max_epochs=1)
    trainer.fit(module, datamodule=Batches(4))
    assert steps == [False, True, False, True]
    assert trainer.global_step == 2 and int(module.ema.n_averaged) == 2


def test_accumulated_gradients_are_the_mean_of_the_batches_gradients():
    """Two batches accumulated give, at the optimiser's step, the gradient of their mean loss."""
    import copy

    torch.manual_seed(0)
    module = ScoreTraining(preset="tiny", val_compress_images=0, accumulate_grad_batches=2, grad_clip=None)
    reference = copy.deepcopy(module)
    compute, seeds = module.compute_terms, iter(range(10))

    def seeded(batch):  # the same timesteps and noise as the reference computation below
        torch.manual_seed(next(seeds))
        return compute(batch)

    module.compute_terms = seeded
    captured = {}
    module.on_before_optimizer_step = lambda optimizer: captured.setdefault(
        "grad", module.codec.score_net.conv_in.weight.grad.clone())
    data = Batches(2)
    _trainer(max_steps=1).fit(module, datamodule=data)
    for i, image in enumerate(data.images):
        torch.manual_seed(i)
        terms, _ = reference.compute_terms(image[None])
        (terms.total() / 2).backward()
    assert torch.allclose(captured["grad"], reference.codec.score_net.conv_in.weight.grad, rtol=1e-4, atol=1e-7)


def test_the_trainers_accumulate_grad_batches_is_handed_to_the_model(tmp_path):
    from corrdiff.training.cli import CorrDiffCLI
    from corrdiff.training.lit import CodecTraining

    class NoFit(CorrDiffCLI):
        def fit(self, model, datamodule=None, ckpt_path=None, **kwargs):
            self.fitted = model

    args = ["fit", "--config", "experiments/tiny/phase1.yaml", "--trainer.logger=false", "--trainer.accumulate_grad_batches",
            "3", f"--trainer.default_root_dir={tmp_path}", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false"]
    with mock.patch.object(sys, "argv", ["corrdiff"]):
        cli = NoFit(CodecTraining, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True, args=args,
                    save_config_callback=None, auto_configure_optimizers=False)
    assert cli.model.accumulate_grad_batches == 3 and cli.trainer.accumulate_grad_batches == 1


def test_a_step_hands_the_judged_pair_to_the_discriminator_through_its_intermediates():
    from corrdiff.training import AdversarialTraining

    module = AdversarialTraining(preset="tiny", target="x0_d")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    _, inter = module.compute_terms(x)
    assert set(inter.extra) == {"judged"}
    assert not any(isinstance(v, tuple) for k, v in vars(module).items() if "judged" in k)  # nothing kept on the module
    with mock.patch.object(module, "log"):
        (pair,) = module.extra_losses(inter)
    assert pair.name == "discriminator" and torch.isfinite(pair.loss)


def test_the_start_policy_is_checked_once_when_built():
    with pytest.raises(ValueError, match="unknown components"):
        StartPolicy.of(None, ["encoder", "nonsense"], None, None)
    with pytest.raises(ValueError, match="give init_from too"):
        StartPolicy.of(None, None, {"score_net": "default"}, None)
    module = ScoreTraining(preset="tiny", freeze=["encoder", "prior"])
    assert module.start_policy.freeze == ("encoder", "prior") == module.freeze
    assert not any(p.requires_grad for p in module.codec.encoder.parameters())


def test_freezing_the_gains_keeps_a_variable_rate_codec_and_trains_its_modulation():
    """``freeze: [encoder, prior, decoder, gains]``: the gain tables stay as given (so do the rates), the rate
    modulation of the conditioning still trains; only a variable-rate model has gains to freeze."""
    from corrdiff.training import JointTraining

    with pytest.raises(ValueError, match="unknown components"):
        StartPolicy.of(None, ["gains"], None, None)  # freeze only: gains are no component to skip or take
    with pytest.raises(ValueError, match="variable-rate"):
        JointTraining(preset="tiny", freeze=["gains"])
    torch.manual_seed(0)
    module = JointTraining(preset="tiny", codec={"rate": {"lambdas": [4.0, 1.0, 0.25]}},
                           freeze=["encoder", "prior", "decoder", "gains"], val_compress_images=0)
    control = module.codec.rate_control
    gains = control.log_gain.detach().clone()
    modulation = control.cond_scale[0].detach().clone()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=DataLoader(list(images), batch_size=1))
    assert torch.equal(control.log_gain, gains) and not control.log_gain.requires_grad
    assert not torch.equal(control.cond_scale[0], modulation)


def test_one_run_option_moves_every_output_folder(tmp_path):
    from corrdiff.training.cli import CorrDiffCLI
    from corrdiff.training.lit import CodecTraining

    class NoFit(CorrDiffCLI):
        def fit(self, model, datamodule=None, ckpt_path=None, **kwargs):
            pass

    run = tmp_path / "my-run"
    with mock.patch.object(sys, "argv", ["corrdiff"]):
        cli = NoFit(CodecTraining, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                    args=["fit", "--config", "experiments/tiny/phase1.yaml", "--run", str(run)],
                    save_config_callback=None, auto_configure_optimizers=False)
    assert cli.trainer.default_root_dir == str(run)
    assert cli.trainer.logger.save_dir == str(run)
    assert cli.trainer.checkpoint_callback.dirpath == str(run / "checkpoints")
