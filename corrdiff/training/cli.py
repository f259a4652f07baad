"""LightningCLI for ``corrdiff fit|validate|test --config experiments/....yaml``.

The model is any subclass of :class:`~corrdiff.training.lit.CodecTraining`
(``class_path: corrdiff.training.ScoreTraining`` or ``JointTraining``); components
inside ``codec:`` are chosen by registry name.

Two of Lightning's messages are silenced while the command runs, because they do not apply to the
``corrdiff`` command: the warning that ``args`` and ``sys.argv`` are both given (``corrdiff fit ...``
passes its own arguments on purpose), and the "Tip" lines that advertise Lightning's cloud services.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from corrdiff.training.data import ImageDataModule
from corrdiff.training.lit import CodecTraining

#: the start of LightningCLI's warning when both ``args`` and ``sys.argv`` hold arguments
ARGS_WARNING = "LightningCLI's args parameter is intended to run from within Python"
#: Lightning's logger of ``rank_zero_info`` messages, which carries its "Tip" lines
RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


def _not_a_tip(record: logging.LogRecord) -> bool:
    """A logging filter: False for Lightning's advertising tips (litlogger, litmodels)."""
    return not str(record.msg).lstrip("💡 ").startswith("Tip:")


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    logger = logging.getLogger(RANK_ZERO_LOGGER)
    logger.addFilter(_not_a_tip)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=ARGS_WARNING)
            yield
    finally:
        logger.removeFilter(_not_a_tip)


class CorrDiffCLI(LightningCLI):
    """LightningCLI whose ``data`` is any LightningDataModule (``class_path``), by default the image folders of
    :class:`~corrdiff.training.data.ImageDataModule`: a config whose ``data`` gives only its arguments still
    means that one."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"data": {"class_path": f"{ImageDataModule.__module__}.{ImageDataModule.__name__}"}})

    def before_instantiate_classes(self) -> None:
        """Hand ``trainer.accumulate_grad_batches`` to the model: corrdiff's phases optimise manually (one
        guarded step, corrdiff/training/lit.py), which Lightning's own accumulation refuses."""
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        k = config.trainer.get("accumulate_grad_batches") or 1
        if k != 1:
            config.model.init_args.accumulate_grad_batches = k
            config.trainer.accumulate_grad_batches = 1


def run_lightning_cli(argv: list[str]) -> LightningCLI:
    with _quiet_lightning():
        return CorrDiffCLI(
            CodecTraining,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=argv,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            parser_kwargs={"prog": "corrdiff"},
        )
