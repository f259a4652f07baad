"""Training on your own photos (docs/training.md): a re-run of the tiny configs overwrites last.ckpt, which phase 2
reads; ``corrdiff test`` and ``validate`` need no training folders (``fit`` says it needs them); a run's folders
move together with three documented overrides."""

from __future__ import annotations

import re
import shlex
import sys
from unittest import mock

import numpy as np
import pytest
from PIL import Image
from test_configs import EXPERIMENTS, ROOT, checkpoint_callback, fit_config, print_config

TINY = EXPERIMENTS / "tiny"


@pytest.mark.parametrize("phase", [1, 2])
def test_a_rerun_of_the_tiny_configs_overwrites_last_ckpt(phase):
    """Lightning's version counter wrote last-v1.ckpt beside an earlier run's last.ckpt, and phase 2 went on
    from the old one."""
    from lightning.pytorch.cli import instantiate_class

    config = fit_config(TINY / f"phase{phase}.yaml")
    assert checkpoint_callback(config)["enable_version_counter"] is False
    assert instantiate_class((), config["trainer"]["callbacks"][-1])._enable_version_counter is False


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """A folder of two small photos; the run's files land in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(folder / name)
    return folder


def corrdiff_test(*argv: str):
    from corrdiff.training.cli import run_lightning_cli  # what `corrdiff test ...` runs

    with mock.patch.object(sys, "argv", ["corrdiff"]):
        return run_lightning_cli(["test", *argv, "--trainer.logger=false", "--trainer.limit_test_batches=1"])


def test_corrdiff_test_runs_without_training_folders(photos, tmp_path):
    """`corrdiff test` stopped at "the following arguments are required: train_dirs" before it read a photo."""
    cli = corrdiff_test("--config", str(TINY / "phase1.yaml"), "--data.train_dirs=null", f"--data.val_dirs={photos}")
    assert cli.datamodule.train_dirs is None and len(cli.datamodule.test_set) == 2
    assert "test/psnr" in cli.trainer.callback_metrics
    config = tmp_path / "test_only.yaml"  # a config that names no training folder at all
    config.write_text(f"model:\n  class_path: corrdiff.training.ScoreTraining\n  init_args: {{preset: tiny}}\n"
                      f"data:\n  test_dirs: {photos}\n  crop_size: 64\n  num_workers: 0\n")
    assert "test/bpp" in corrdiff_test("--config", str(config), "--trainer.accelerator=cpu").trainer.callback_metrics


def test_fit_without_training_folders_says_so(photos):
    from corrdiff.training.data import ImageDataModule

    with pytest.raises(ValueError, match=r"training needs train_dirs .*--data.train_dirs FOLDER"):
        ImageDataModule(val_dirs=str(photos)).setup("fit")


def test_three_overrides_move_a_run_to_its_own_folder():
    """docs/training.md ("Your own photos"): the run folder, the logger's and the checkpoints'."""
    run = "runs/mine/phase1"
    config = fit_config(TINY / "phase1.yaml", f"--trainer.default_root_dir={run}",
                        f"--trainer.logger.init_args.save_dir={run}",
                        f"--trainer.callbacks.init_args.dirpath={run}/checkpoints")
    assert config["trainer"]["default_root_dir"] == config["trainer"]["logger"]["init_args"]["save_dir"] == run
    assert checkpoint_callback(config)["dirpath"] == f"{run}/checkpoints"
    phase2 = fit_config(TINY / "phase2.yaml", f"--model.init_args.init_from={run}/checkpoints/last.ckpt")
    assert phase2["model"]["init_args"]["init_from"] == f"{run}/checkpoints/last.ckpt"


def test_help_says_test_and_validate_need_no_training_folders(capsys):
    from corrdiff.cli.entry import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "data.test_dirs (default val_dirs; no train_dirs needed" in out
    assert "data.val_dirs (no train_dirs needed)" in out


def test_the_own_photos_commands_of_docs_training_parse():
    """Each command of docs/training.md's "Your own photos" block, $RUN expanded, parses and names its run folder
    under $RUN."""
    text = (ROOT / "docs" / "training.md").read_text()
    block = re.search(r"## Your own photos.*?```bash\n(.*?)```", text, flags=re.S).group(1)
    lines = block.replace("\\\n", " ").replace("$RUN", "runs/mine").splitlines()
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("corrdiff ")]
    assert [c[0] for c in commands] == ["fit", "fit", "test"]
    for argv in commands:
        config = print_config(argv)
        assert config["run"].startswith("runs/mine/phase")  # --run moves every folder into it (test_training_package)
        if argv[0] == "test":
            assert config["data"]["init_args"]["test_dirs"] == "photos/test" and config["ckpt_path"]
