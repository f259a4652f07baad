"""Training (issue 4): both phases through the CLI, resume, DDP, bf16, W&B offline, loss going down."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

import corrdiff
from corrdiff.cli import main as cli_main
from corrdiff.errors import ModelLoadError
from corrdiff.model_io import export_checkpoint, load_model
from corrdiff.training import ImageDataModule, JointTraining, ScoreTraining

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "tiny"


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """scikit-image's bundled photos as train/ and val/ PNG folders."""
    spec = importlib.util.spec_from_file_location("skimage_photos", ROOT / "experiments/tools/skimage_photos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("photos")
    module.write_photos(out)
    return out


def _cli_args(photos: Path, run_dir: Path, phase: int, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(TINY / f"phase{phase}.yaml"),
        "--data.train_dirs", str(photos / "train"), "--data.val_dirs", str(photos / "val"),
        "--data.crop_size", "32", "--data.train_repeat", "1",
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.logger.init_args.save_dir", str(run_dir),
        "--trainer.callbacks.init_args.dirpath", str(run_dir / "checkpoints"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.val_check_interval", "2",
        *extra,
    ]


def _trainer(**kwargs) -> L.Trainer:
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(**{**defaults, **kwargs})


def _data(photos: Path, **kwargs) -> ImageDataModule:
    defaults = dict(train_dirs=str(photos / "train"), val_dirs=str(photos / "val"), crop_size=32,
                    batch_size=2, num_workers=0, cache=True)
    return ImageDataModule(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def phase1_checkpoint(photos, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("phase1")
    assert cli_main(_cli_args(photos, run, 1, "--trainer.max_steps", "2")) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


def test_fast_dev_run_both_phases_through_cli(photos, phase1_checkpoint, tmp_path):
    assert cli_main(_cli_args(photos, tmp_path / "p1", 1, "--trainer.fast_dev_run", "true")) == 0
    assert cli_main(_cli_args(photos, tmp_path / "p2", 2, "--trainer.fast_dev_run", "true",
                              "--model.init_args.init_from", str(phase1_checkpoint))) == 0


def test_phase2_resumes_through_cli_without_the_phase1_file(photos, phase1_checkpoint, tmp_path):
    """`corrdiff fit --ckpt_path` rebuilds the model from the checkpoint's own codec_config."""
    import shutil

    phase1_copy = tmp_path / "phase1.ckpt"
    shutil.copy(phase1_checkpoint, phase1_copy)
    run = tmp_path / "p2"
    common = ["--model.init_args.init_from", str(phase1_copy)]
    assert cli_main(_cli_args(photos, run, 2, "--trainer.max_steps", "2", *common)) == 0
    phase1_copy.unlink()  # e.g. runs moved to another machine
    assert cli_main(_cli_args(photos, run, 2, "--trainer.max_steps", "4", *common,
                              "--ckpt_path", str(run / "checkpoints" / "last.ckpt"))) == 0
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 4


def test_phase2_starts_from_phase1_weights(phase1_checkpoint):
    checkpoint = torch.load(phase1_checkpoint, map_location="cpu", weights_only=True)
    model = JointTraining(init_from=str(phase1_checkpoint))
    for key, value in model.codec.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][f"codec.{key}"]), key
    assert model.codec_config == checkpoint["hyper_parameters"]["codec_config"]


def test_phase2_refuses_mismatched_phase1_checkpoint(phase1_checkpoint):
    with pytest.raises(ModelLoadError, match="does not fit"):
        JointTraining(init_from=str(phase1_checkpoint), codec={"latent_channels": 40}, preset="tiny")


def test_phase2_fine_tunes_from_a_model_file(phase1_checkpoint, tmp_path):
    """init_from also takes an exported model file: its weights, config and (EMA) score network."""
    model_file = tmp_path / "model.pt"
    exported = export_checkpoint(phase1_checkpoint, model_file)
    model = JointTraining(init_from=str(model_file))
    assert model.codec_config == exported.config
    for key, value in exported.state_dict().items():
        assert torch.equal(model.codec.state_dict()[key], value), key
    for key, value in exported.score_net.state_dict().items():
        assert torch.equal(model.ema.module.state_dict()[key], value), key
    with pytest.raises(ModelLoadError, match="does not fit"):
        JointTraining(init_from=str(model_file), codec={"latent_channels": 40}, preset="tiny")


def test_resume_continues_step_count(photos, tmp_path):
    model = ScoreTraining(preset="tiny", val_compress_images=0)
    ckpt_dir = tmp_path / "ckpt"
    callback = L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True, every_n_train_steps=1)
    trainer = _trainer(max_steps=3, enable_checkpointing=True, callbacks=[callback], limit_val_batches=0)
    trainer.fit(model, _data(photos))
    assert trainer.global_step == 3

    resumed = ScoreTraining(preset="tiny", val_compress_images=0)
    seen_steps = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            seen_steps.append(trainer.global_step)

    trainer2 = _trainer(max_steps=5, callbacks=[Record()], limit_val_batches=0)
    trainer2.fit(resumed, _data(photos), ckpt_path=str(ckpt_dir / "last.ckpt"))
    assert seen_steps == [3, 4]
    assert trainer2.global_step == 5
    assert all(torch.isfinite(p).all() for p in resumed.parameters())


def test_loss_goes_down_on_real_photos(photos):
    L.seed_everything(0)
    model = ScoreTraining(preset="tiny", lr=1e-3, val_compress_images=0)
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            losses.append(float(trainer.callback_metrics["train/loss"]))

    _trainer(max_steps=40, callbacks=[Record()], limit_val_batches=0).fit(
        model, _data(photos, crop_size=64, batch_size=4, train_repeat=8)
    )
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.6 * first, (first, last)


def test_nonfinite_loss_is_skipped_then_stops(photos):
    class Exploding(ScoreTraining):
        def compute_terms(self, x):
            terms, inter = super().compute_terms(x)
            terms.add("exploding", torch.tensor(float("nan")))
            return terms, inter

    model = Exploding(preset="tiny", val_compress_images=0, max_nonfinite_steps=3)
    before = {k: v.clone() for k, v in model.codec.score_net.state_dict().items()}
    with pytest.warns(UserWarning, match="non-finite loss"), pytest.raises(RuntimeError, match="NaN/Inf for 3 steps"):
        _trainer(max_steps=10, limit_val_batches=0).fit(model, _data(photos))
    assert model.skipped_steps == 3
    for key, value in model.codec.score_net.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed although every step was skipped"


def test_validation_logs_real_bpp_and_quality(photos):
    model = ScoreTraining(preset="tiny", val_compress_images=1)
    trainer = _trainer(max_steps=1, limit_val_batches=1)
    metrics = trainer.validate(model, _data(photos))[0]
    for key in ("val/bpp_real", "val/bpp_estimated", "val/psnr", "val/ms_ssim", "val/psnr_e2e"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert metrics["val/bpp_real"] > 0


def test_test_loop_reports_metrics(photos):
    model = ScoreTraining(preset="tiny")
    metrics = _trainer().test(model, _data(photos, test_dirs=str(photos / "val"), val_batch_size=2))[0]
    assert metrics["test/bpp"] > 0 and 0 < metrics["test/psnr"] < 100


def test_export_loads_and_strips_ddp_prefixes(phase1_checkpoint, tmp_path):
    checkpoint = torch.load(phase1_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()}
    ddp_style = tmp_path / "ddp.ckpt"
    torch.save(checkpoint, ddp_style)
    exported = export_checkpoint(ddp_style, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.fingerprint() == exported.fingerprint()
    ema = {k[len("module.ema.module."):]: v for k, v in checkpoint["state_dict"].items()
           if k.startswith("module.ema.module.")}
    for key, value in loaded.score_net.state_dict().items():
        assert torch.equal(value, ema[key]), f"export must use the EMA weights ({key})"
    image = torch.rand(1, 3, 20, 30)
    assert loaded.decompress(loaded.compress(image)).shape == image.shape


def test_in_memory_export_is_the_exported_file(phase1_checkpoint, tmp_path):
    """CodecTraining.export_codec builds the codec as `corrdiff export` does (one path): same weights."""
    model = ScoreTraining.load_from_checkpoint(phase1_checkpoint)
    exported = export_checkpoint(phase1_checkpoint, tmp_path / "model.pt")
    assert model.export_codec().fingerprint() == exported.fingerprint()


def test_export_sets_the_default_steps(phase1_checkpoint, tmp_path):
    """``corrdiff export --steps N``: the model compresses with N steps unless told otherwise."""
    assert cli_main(["export", str(phase1_checkpoint), "-o", str(tmp_path / "m.pt"), "--steps", "3"]) == 0
    model = load_model(tmp_path / "m.pt")
    assert model.config["steps"] == 3
    assert corrdiff.bitstream.unpack(model.compress(torch.rand(1, 3, 16, 16))).steps == 3
    plain = export_checkpoint(phase1_checkpoint, tmp_path / "plain.pt")
    assert plain.fingerprint() != model.fingerprint() and plain.config["steps"] != 3


def test_export_cli_refuses_pickled_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"codec_config": {}}, "evil": Path("x")}, bad)
    assert cli_main(["export", str(bad), "-o", str(tmp_path / "m.pt")]) == 2
    assert "pickled" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_unreadable_images_are_skipped_and_counted(photos, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.open(photos / "train" / "astronaut.png").save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.jpg").write_text("hello")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        dm = _data(photos, train_dirs=str(folder), val_dirs=None)
        dm.setup("fit")
    assert dm.train_set.skipped == 2 and len(dm.train_set) == 1
    assert dm.train_set[0].shape == (3, 32, 32)


@pytest.mark.slow
def test_bf16_mixed_step(photos):
    model = ScoreTraining(preset="tiny", val_compress_images=0)
    trainer = _trainer(max_steps=1, precision="bf16-mixed", limit_val_batches=0)
    trainer.fit(model, _data(photos, crop_size=32, batch_size=1))
    assert trainer.global_step == 1
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_wandb_offline_writes_a_run(photos, tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(project="corrdiff-test", save_dir=str(tmp_path), offline=True)
    model = ScoreTraining(preset="tiny", val_compress_images=1)
    _trainer(max_steps=2, logger=logger, limit_val_batches=1, val_check_interval=2).fit(model, _data(photos))
    logger.experiment.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs, "no offline W&B run directory was written"
    assert any(p.suffix == ".wandb" for p in runs[0].iterdir())


DDP_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys, warnings
    warnings.filterwarnings("ignore")
    import lightning as L, torch
    from corrdiff.training import AdversarialTraining, ImageDataModule, ScoreTraining

    photos, out, phase = sys.argv[1], sys.argv[2], sys.argv[3]
    L.seed_everything(0)
    if phase == "adversarial":  # two optimisers, R1's double backward, both under DDP
        model = AdversarialTraining(preset="tiny", val_compress_images=1, r1_weight=1.0, feature_matching_weight=1.0)
    else:
        model = ScoreTraining(preset="tiny", val_compress_images=1)
    dm = ImageDataModule(photos + "/train", photos + "/val", crop_size=32, batch_size=2, num_workers=0,
                         train_repeat=4)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=1, val_check_interval=3, check_val_every_n_epoch=None)
    trainer.fit(model, dm)
    digest = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        if "_quantized_cdf" not in k:
            digest.update(v.detach().cpu().contiguous().numpy().tobytes())
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
        json.dump({"digest": digest.hexdigest(), "step": trainer.global_step, "metrics": metrics}, f)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["score", "adversarial"])
def test_ddp_two_processes_keep_parameters_identical(photos, tmp_path, phase):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(script), str(photos), str(tmp_path), phase], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == 3
    assert ranks[0]["digest"] == ranks[1]["digest"], "parameters differ between ranks after DDP training"
    assert ranks[0]["metrics"]["val/psnr"] == pytest.approx(ranks[1]["metrics"]["val/psnr"]), "metrics not synced"


def test_sweep_metrics_are_logged(photos):
    """Every W&B sweep ranks runs by a metric that a validation run really logs (issue 14, item 8: this was a
    search of lit.py's source text)."""
    import yaml

    sweeps = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))
    wanted = {yaml.safe_load(path.read_text())["metric"]["name"] for path in sweeps}
    model = JointTraining(preset="tiny", val_compress_images=1)
    trainer = _trainer(limit_val_batches=1)
    trainer.validate(model, _data(photos))
    assert wanted and wanted <= set(trainer.callback_metrics), (wanted, sorted(trainer.callback_metrics))


def test_phase1_export_warns_when_compressing_with_its_untrained_decoder(phase1_checkpoint, tmp_path, capsys):
    """Issue 13: a phase-1 export records that its end-to-end decoder is untrained; corrected and e2e
    compression say so, diffusion mode (which does not use the decoder) does not."""
    from corrdiff.model_io import untrained_components

    model = tmp_path / "phase1.pt"
    export_checkpoint(phase1_checkpoint, model)
    assert load_model(model).metadata["untrained"] == ["decoder"]
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    capsys.readouterr()
    for mode, warned in (("corrected", True), ("e2e", True), ("diffusion", False)):
        assert cli_main(["compress", str(image), "-o", str(tmp_path / f"{mode}.cdf"), "--model", str(model),
                         "--mode", mode, "--steps", "1"]) == 0
        err = capsys.readouterr().err
        assert ("end-to-end decoder was never trained" in err) == warned, err
    # phase 2, or phase 1 continued from a trained model: nothing is known to be untrained
    assert untrained_components({"distortion_weight": 400.0, "init_from": "phase1.ckpt"}) == []
    assert untrained_components({"lmbda": 0.05, "init_from": "models/default.pt"}) == []


def test_codec_config_overrides_merge_one_component_or_replace_it():
    """resolve_codec_config's merge (corrdiff/training/lit.py): a dict naming the base's component (or no
    name) changes only its keys; another ``name`` replaces the component; other values replace."""
    from corrdiff.training.lit import resolve_codec_config

    base = {"score_net": {"name": "unet", "prediction": "eps", "widths": [8, 16]}, "steps": 8}
    same = resolve_codec_config(None, {"score_net": {"prediction": "x0"}, "steps": 4}, base=base)
    assert same == {"score_net": {"name": "unet", "prediction": "x0", "widths": [8, 16]}, "steps": 4}
    named = resolve_codec_config(None, {"score_net": {"name": "unet", "widths": [4]}}, base=base)
    assert named["score_net"] == {"name": "unet", "prediction": "eps", "widths": [4]}
    other = resolve_codec_config(None, {"score_net": {"name": "other", "depth": 2}}, base=base)
    assert other["score_net"] == {"name": "other", "depth": 2}
    assert base["score_net"]["prediction"] == "eps"  # the base is not modified
