"""LightningCLI for ``corrdiff fit|validate|test --config experiments/....yaml``.

The model is any subclass of :class:`~corrdiff.training.lit.CodecTraining`
(``class_path: corrdiff.training.ScoreTraining`` or ``JointTraining``); components
inside ``codec:`` are chosen by registry name.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from corrdiff.training.data import ImageDataModule
from corrdiff.training.lit import CodecTraining


def run_lightning_cli(argv: list[str]) -> LightningCLI:
    return LightningCLI(
        CodecTraining,
        ImageDataModule,
        subclass_mode_model=True,
        args=argv,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_kwargs={"prog": "corrdiff"},
    )
