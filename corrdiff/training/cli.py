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
    """LightningCLI for corrdiff's phases:

    * ``data`` is any LightningDataModule (``class_path``), by default the image folders of
      :class:`~corrdiff.training.data.ImageDataModule`: a config whose ``data`` gives only its arguments still
      means that one;
    * ``--run DIR`` puts a whole run in one folder: the trainer's ``default_root_dir``, the logger's
      ``save_dir`` and every ModelCheckpoint's ``dirpath`` (``DIR/checkpoints``), so that a run on your own
      photos needs one option, not three (docs/training.md);
    * ``trainer.accumulate_grad_batches`` is handed to the model: corrdiff's phases optimise manually (one
      guarded step, corrdiff/training/lit.py), which Lightning's own accumulation refuses.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"data": {"class_path": f"{ImageDataModule.__module__}.{ImageDataModule.__name__}"}})
        parser.add_argument("--run", default=None, metavar="DIR",
                            help="one folder for the whole run: sets trainer.default_root_dir, the logger's save_dir "
                                 "and each ModelCheckpoint's dirpath (DIR/checkpoints)")

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        k = config.trainer.get("accumulate_grad_batches") or 1
        if k != 1:
            config.model.init_args.accumulate_grad_batches = k
            config.trainer.accumulate_grad_batches = 1
        if config.get("run"):
            _move_run(config, str(config.run))


def _move_run(config, run: str) -> None:
    """Point a parsed config's output folders into ``run`` (see :class:`CorrDiffCLI`)."""
    trainer = config.trainer
    trainer.default_root_dir = run
    loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
    for logger in loggers:
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and "save_dir" in init_args:
            init_args.save_dir = run
    for callback in trainer.callbacks or []:
        if str(getattr(callback, "class_path", "")).endswith("ModelCheckpoint"):
            callback.init_args.dirpath = f"{run}/checkpoints"


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
