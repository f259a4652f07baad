"""The configs under experiments/ against corrdiff's LightningCLI, without training anything.

* every YAML config parses with ``corrdiff fit --config FILE --print_config`` (jsonargparse checks
  every key and type and exits before a model, datamodule or trainer is built, so data folders
  and ``init_from`` checkpoints need not exist), and its trainer, callbacks, logger and
  datamodule construct on this CPU;
* phase-2 configs start from their phase-1 run's ``last.ckpt`` with the same lambda;
* the W&B sweep files are well-formed sweeps whose command, with ``${args}`` expanded by wandb's
  own code for every grid point, is accepted by the same parser (and, when the ``sweeps`` package
  of ``wandb[sweeps]`` is installed, pass W&B's schema validation, offline);
* ``experiments/ladder/run.sh`` (``DRY_RUN=1``) gives each lambda and phase its own checkpoint
  folder and chains phase 1 -> phase 2 -> export through them;
* resuming with ``--ckpt_path`` (docs/training.md) gets through LightningCLI's hyper-parameter
  re-parsing, on the tiny config.

A few seconds in all; models are only built for the tiny preset.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import itertools
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
SWEEP_DIR = EXPERIMENTS / "sweeps"
LADDER_SCRIPT = EXPERIMENTS / "ladder" / "run.sh"
CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"
MODELS = {"corrdiff.training.ScoreTraining", "corrdiff.training.JointTraining", "corrdiff.training.AdversarialTraining",
          "corrdiff.training.BaseScoreTraining", "corrdiff.training.RateDistortionTraining"}
DATA = {"corrdiff.training.ImageDataModule": "train_dirs", "corrdiff.training.PairDataModule": "pairs_dir"}


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


CONFIGS = [p for p in _yaml_files(EXPERIMENTS) if SWEEP_DIR not in p.parents]
SWEEPS = _yaml_files(SWEEP_DIR)


def _id(path: Path) -> str:
    return str(path.relative_to(EXPERIMENTS))


def print_config(argv: list[str]) -> dict[str, Any]:
    """``corrdiff <argv> --print_config`` in-process: the fully resolved config as a dict.

    Run from the repository root, as the configs, the ladder script and sweep agents are; a
    config the parser rejects fails the test with jsonargparse's message.
    """
    code, out, err = _print_config(tuple(argv))
    if code not in (0, None):
        pytest.fail(f"corrdiff {shlex.join(argv)}: rejected by the CLI parser ({code}):\n{err}")
    config = yaml.safe_load(out)
    return copy.deepcopy(config["fit"] if "fit" in config else config)


@functools.lru_cache(maxsize=None)
def _print_config(argv: tuple[str, ...]) -> tuple[Any, str, str]:
    from corrdiff.training.cli import run_lightning_cli

    out, err = io.StringIO(), io.StringIO()
    code: Any = "returned without exiting"
    cwd = os.getcwd()
    os.chdir(ROOT)
    # sys.argv is pytest's: LightningCLI warns when it differs from args
    try:
        with mock.patch.object(sys, "argv", ["corrdiff"]), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                run_lightning_cli([*argv, "--print_config"])
            except SystemExit as exc:
                code = exc.code
    finally:
        os.chdir(cwd)
    return code, out.getvalue(), err.getvalue()


def fit_config(path: Path, *overrides: str) -> dict[str, Any]:
    return print_config(["fit", "--config", str(path), *overrides])


def data_of(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(class path, arguments) of a parsed config's data module (ImageDataModule unless it names another)."""
    data = config["data"]
    return data["class_path"], data["init_args"]


def has_checkpoint_callback(config: dict[str, Any]) -> bool:
    return any(c["class_path"] == CHECKPOINT for c in config["trainer"]["callbacks"] or [])


def checkpoint_callback(config: dict[str, Any]) -> dict[str, Any]:
    """init_args of the config's ModelCheckpoint, which must be the last callback (overrides target it)."""
    callbacks = config["trainer"]["callbacks"] or []
    assert callbacks, "no callbacks: add a ModelCheckpoint with save_last: true"
    assert callbacks[-1]["class_path"] == CHECKPOINT, (
        "ModelCheckpoint must be the LAST callback: --trainer.callbacks.init_args.dirpath=... "
        "(experiments/ladder/run.sh, the sweeps) is applied by jsonargparse to the last one"
    )
    assert sum(c["class_path"] == CHECKPOINT for c in callbacks) == 1
    return callbacks[-1]["init_args"]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder, W&B disabled: whatever a constructor writes lands in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return tmp_path


# ---------------------------------------------------------------------------------------- YAML configs
def test_there_are_configs():
    names = {_id(p) for p in CONFIGS}
    for expected in ("tiny/phase1.yaml", "tiny/phase2.yaml", "paper/phase1.yaml", "paper/phase2.yaml",
                     "ladder/phase1.yaml", "ladder/phase2.yaml"):
        assert expected in names
    assert {p.name for p in SWEEPS} >= {"lambda.yaml", "rho.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_config_parses(path):
    config = fit_config(path)
    assert config["model"]["class_path"] in MODELS
    data_class, data = data_of(config)
    assert data[DATA[data_class]], f"data.{DATA[data_class]} is required"
    if not has_checkpoint_callback(config):
        return  # e.g. a config for `corrdiff test` only
    settings = checkpoint_callback(config)
    assert settings["save_last"], "phase 2 and resuming read last.ckpt: set save_last: true"
    # Lightning writes last.ckpt only when a save triggers (on_train_end only if none ever did):
    # otherwise the final steps would be missing from the last.ckpt that phase 2 and export read
    steps, every = config["trainer"]["max_steps"], settings["every_n_train_steps"]
    if every:
        assert steps % every == 0, f"max_steps {steps} is not a multiple of every_n_train_steps {every}"


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_config_trainer_and_data_construct(path, in_tmp):
    """The trainer (moved to this CPU), its callbacks and logger, and the datamodule build from the config."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.cli import instantiate_class

    from corrdiff.training.data import ImageDataModule

    config = fit_config(path)
    kwargs = dict(config["trainer"])
    logger = kwargs.pop("logger")
    callbacks = [instantiate_class((), c) for c in kwargs.pop("callbacks")]
    # taken before the Trainer appends its default callbacks to this list
    checkpoint = callbacks[-1] if has_checkpoint_callback(config) else None
    if isinstance(logger, dict):
        logger = instantiate_class((), logger)
    kwargs.update(accelerator="cpu", devices=1, num_nodes=1, enable_progress_bar=False)
    trainer = Trainer(logger=logger, callbacks=callbacks, **kwargs)
    assert trainer.max_steps == config["trainer"]["max_steps"]
    if checkpoint is not None:
        assert trainer.checkpoint_callback is checkpoint
    data_class, data = data_of(config)
    datamodule = instantiate_class((), {"class_path": data_class, "init_args": data})  # folders are read in setup()
    assert datamodule.batch_size == data["batch_size"]


def test_tiny_phase1_model_builds(in_tmp):
    from lightning.pytorch.cli import instantiate_class

    config = fit_config(EXPERIMENTS / "tiny" / "phase1.yaml")
    model = instantiate_class((), config["model"])
    assert model.codec_config["latent_channels"] > 0


PHASE_FOLDERS = sorted({p.parent for p in CONFIGS if p.name == "phase2.yaml"})


@pytest.mark.parametrize("folder", PHASE_FOLDERS, ids=lambda p: p.name)
def test_phase2_starts_from_phase1(folder):
    """phase2.yaml's init_from is phase1.yaml's last.ckpt, in another checkpoint folder."""
    phase1, phase2 = fit_config(folder / "phase1.yaml"), fit_config(folder / "phase2.yaml")
    assert phase2["model"]["class_path"] == "corrdiff.training.JointTraining"
    assert phase1["model"]["class_path"] == "corrdiff.training.ScoreTraining"
    ckpt1, ckpt2 = checkpoint_callback(phase1)["dirpath"], checkpoint_callback(phase2)["dirpath"]
    assert ckpt1 != ckpt2, "phase 2 would overwrite phase 1's checkpoints"
    init_from = phase2["model"]["init_args"]["init_from"]
    assert os.path.normpath(init_from) == os.path.normpath(f"{ckpt1}/last.ckpt")
    if folder.name in ("paper", "ladder"):  # one RD point: the same rate weight in both phases
        assert phase2["model"]["init_args"]["lmbda"] == phase1["model"]["init_args"]["lmbda"]


@pytest.mark.parametrize("phase", [1, 2])
def test_paper_configs_are_paper_scale(phase):
    config = fit_config(EXPERIMENTS / "paper" / f"phase{phase}.yaml")
    trainer, data, model = config["trainer"], data_of(config)[1], config["model"]["init_args"]
    assert (trainer["accelerator"], trainer["strategy"], trainer["precision"]) == ("gpu", "ddp", "bf16-mixed")
    assert data["crop_size"] == 256 and data["batch_size"] == 8
    logger = trainer["logger"]
    assert logger["class_path"] == "lightning.pytorch.loggers.WandbLogger"
    assert logger["init_args"]["project"] == "corrdiff" and logger["init_args"]["log_model"] is False
    callbacks = {c["class_path"] for c in trainer["callbacks"]}
    assert "lightning.pytorch.callbacks.LearningRateMonitor" in callbacks
    if phase == 1:
        assert model["preset"] == "paper"
    else:
        assert model["rho"] > 0 and model["perceptual"] == {"name": "lpips", "net": "alex"}


# ---------------------------------------------------------------------------------------- W&B sweeps
def _load_sweep(path: Path) -> dict[str, Any]:
    from wandb.sdk.launch.sweeps.utils import load_sweep_config  # what `wandb sweep FILE` reads with

    config = load_sweep_config(str(path))
    assert isinstance(config, dict), f"{path}: not a YAML mapping"
    return config


def _grid(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the parameters' values (a fixed ``value`` counts as one)."""
    names = sorted(parameters)
    choices = [parameters[n].get("values", [parameters[n].get("value")]) for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*choices)]


@pytest.mark.parametrize("path", SWEEPS, ids=_id)
def test_sweep_file_is_well_formed(path):
    config = _load_sweep(path)
    assert config["method"] in {"grid", "random", "bayes"}
    assert config["metric"]["goal"] in {"minimize", "maximize"}
    assert config["metric"]["name"]  # that training logs it: tests/test_training.py::test_sweep_metrics_are_logged
    assert config["parameters"]
    for name, spec in config["parameters"].items():
        keys = {"values", "value", "distribution", "min", "max"}
        assert set(spec) & keys, f"parameter {name}: needs values, value or a distribution"
        if config["method"] == "grid":
            assert "values" in spec or "value" in spec, f"grid sweep: parameter {name} needs values"
    command = config["command"]
    assert command[:2] == ["corrdiff", "fit"], "the command must be `corrdiff fit ...`"
    assert command.count("${args}") == 1, "`${args}` must be one element of the command list"
    macros = [c for c in command if "${" in str(c)]
    assert macros == ["${args}"], f"unexpected macros {macros}"


@pytest.mark.parametrize("path", SWEEPS, ids=_id)
def test_sweep_commands_parse(path):
    """Each grid point's command line, as the agent builds it, is accepted by `corrdiff fit`."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args  # the agent's own expansion

    config = _load_sweep(path)
    assert config["method"] == "grid" or all("values" in s for s in config["parameters"].values())
    for point in _grid(config["parameters"]):
        expanded = create_sweep_command_args({"args": {k: {"value": v} for k, v in point.items()}})["args"]
        argv = []
        for chunk in config["command"][1:]:
            argv += expanded if chunk == "${args}" else [str(chunk)]
        parsed = print_config(argv)
        for name, value in point.items():
            node: Any = parsed
            for key in name.split("."):
                node = node[key]
            assert node == value, f"{name}={value} came out as {node}"
        # runs of one sweep share the command, so checkpoints must go to a per-run folder
        dirpath = checkpoint_callback(parsed)["dirpath"]
        assert dirpath is None, "set --trainer.callbacks.init_args.dirpath=null in the command"


@pytest.mark.parametrize("path", SWEEPS, ids=_id)
def test_sweep_point_builds_its_trainer_on_this_cpu(path, in_tmp):
    """A grid point's trainer, as the sweep's command configures it (accelerator, devices, strategy,
    precision: nothing overridden here), builds on a machine without a GPU: `accelerator: gpu` of the
    paper configs stopped a sweep tried on a CPU with "No supported gpu backend found" (docs/sweeps.md)."""
    from lightning.pytorch import Trainer
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    config = _load_sweep(path)
    point = _grid(config["parameters"])[0]
    expanded = create_sweep_command_args({"args": {k: {"value": v} for k, v in point.items()}})["args"]
    argv = [a for chunk in config["command"][1:] for a in (expanded if chunk == "${args}" else [str(chunk)])]
    trainer = print_config(argv)["trainer"]
    assert trainer["accelerator"] == "auto"
    kwargs = {k: v for k, v in trainer.items() if k not in ("logger", "callbacks")}
    built = Trainer(**{**kwargs, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False})
    assert built.num_devices == 1


@pytest.mark.parametrize("path", SWEEPS, ids=_id)
def test_sweep_schema_of_wandb(path):
    """W&B's own sweep-config schema (the `sweeps` package of `pip install wandb[sweeps]`), offline."""
    sweeps = pytest.importorskip("sweeps", reason="W&B's schema needs `pip install wandb[sweeps]`")
    assert sweeps.schema_violations_from_proposed_config(_load_sweep(path)) == []


# ---------------------------------------------------------------------------------------- lambda ladder
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_ladder_script_paths(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "LAMBDAS": "0.01 0.2", "ROOT": str(tmp_path / "ladder")}
    result = subprocess.run(
        ["bash", str(LADDER_SCRIPT), "--trainer.max_steps=10000"], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert [c[1] for c in commands] == ["fit", "fit", "export"] * 2
    assert not list(tmp_path.iterdir()), "DRY_RUN must not create anything"
    seen_dirs = set()
    for lmbda, (fit1, fit2, export) in zip((0.01, 0.2), (commands[0:3], commands[3:6])):
        assert fit1[0] == "corrdiff"
        phase1, phase2 = print_config(fit1[1:]), print_config(fit2[1:])
        dir1, dir2 = checkpoint_callback(phase1)["dirpath"], checkpoint_callback(phase2)["dirpath"]
        for config, folder in ((phase1, dir1), (phase2, dir2)):
            assert config["model"]["init_args"]["lmbda"] == lmbda
            assert config["trainer"]["max_steps"] == 10000
            assert folder.startswith(str(tmp_path / "ladder" / f"lambda_{lmbda}"))
            assert config["trainer"]["logger"]["init_args"]["save_dir"] == os.path.dirname(folder)
        assert os.path.normpath(phase2["model"]["init_args"]["init_from"]) == os.path.join(dir1, "last.ckpt")
        assert export[2] == os.path.join(dir2, "last.ckpt")
        seen_dirs |= {dir1, dir2}
    assert len(seen_dirs) == 4, "two ladder runs share a checkpoint folder"


# ---------------------------------------------------------------------------------------- resuming
def test_resume_with_ckpt_path(in_tmp):
    """`corrdiff fit --config ... --ckpt_path last.ckpt` (docs/training.md) reaches Trainer.fit."""
    import torch
    from lightning.pytorch.cli import LightningCLI

    from corrdiff.training.data import ImageDataModule
    from corrdiff.training.lit import CodecTraining

    class NoFitCLI(LightningCLI):  # a `fit` method on the CLI replaces Trainer.fit
        def fit(self, model, datamodule=None, ckpt_path=None, **kwargs):
            self.fit_args = (model, ckpt_path)

    def cli(*extra: str) -> NoFitCLI:
        args = ["fit", "--config", str(EXPERIMENTS / "tiny" / "phase1.yaml"), "--trainer.logger=false",
                "--seed_everything=false", *extra]
        with mock.patch.object(sys, "argv", ["corrdiff"]):
            return NoFitCLI(CodecTraining, ImageDataModule, subclass_mode_model=True, args=args,
                            save_config_callback=None, auto_configure_optimizers=False)

    first = cli()
    path = in_tmp / "last.ckpt"
    torch.save({"state_dict": first.model.state_dict(), "hyper_parameters": dict(first.model.hparams),
                "global_step": 0, "epoch": 0}, path)
    resumed = cli("--ckpt_path", str(path))
    assert resumed.fit_args[1] == str(path)
    assert resumed.fit_args[0].codec_config == first.model.codec_config
