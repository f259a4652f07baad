"""Section ``training``: the time of one optimisation step of each training phase, as Lightning runs it.

Each measurement is a ``lightning.Trainer.fit`` of the phase's own LightningModule on one fixed batch
(CPU, fp32, no logger, checkpoints or validation), so the step is the module's own ``training_step``:
its loss terms, its guarded step (backward, gradient clipping, the optimisers of its
``configure_optimizers``), its EMA update and, for the adversarial phase, the discriminator's step.
:class:`StepTimer` reads the wall time of every step.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterable, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader

from corrdiff.bench.inputs import demo_photo, training_batch
from corrdiff.bench.measure import Timing

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


class StepTimer(L.Callback):
    """Wall time of every training step, from one batch's start to the next's (the last: to the end
    of the epoch), so that the module's own ``on_train_batch_end`` (the EMA update), which Lightning
    calls after the callbacks', is inside. Also keeps every step's loss (None: a skipped step)."""

    def __init__(self) -> None:
        self.marks: list[float] = []
        self.losses: list[float | None] = []

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.marks.append(time.perf_counter())

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.losses.append(None if loss is None else float(loss.detach()))

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.marks.append(time.perf_counter())

    @property
    def times(self) -> list[float]:
        """Seconds of each step, in order."""
        return [end - start for start, end in zip(self.marks, self.marks[1:])]


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Without Lightning's start-up notes (devices, tips) and its small-dataloader warnings."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def fit_steps(module: L.LightningModule, batch: torch.Tensor, steps: int, warmup: int = 0) -> StepTimer:
    """``warmup + steps`` optimisation steps of ``module`` on ``batch`` by a ``lightning.Trainer``.

    The Trainer's optimiser comes from ``module.configure_optimizers`` afresh on every call. One pass
    over the batches: a step the module skips (non-finite loss) is not repeated.
    """
    total = warmup + steps
    timer = StepTimer()
    with quiet_lightning():
        trainer = L.Trainer(
            accelerator="cpu", devices=1, max_steps=total, max_epochs=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
            callbacks=[timer],
        )
        trainer.fit(module, train_dataloaders=DataLoader([batch] * total, batch_size=None))
    return timer


def training_section(codec_config: dict[str, Any], batch_sizes: Iterable[int], crop: int, steps: int,
                     warmup: int, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Section ``training``: step time and samples/s of each phase for the model's architecture."""
    from corrdiff.training import AdversarialTraining, JointTraining, RateDistortionTraining, ScoreTraining

    photo, rows = demo_photo(), []
    phases = (("phase 1 (ScoreTraining)", ScoreTraining), ("phase 2 (JointTraining)", JointTraining),
              ("adversarial (AdversarialTraining)", partial(AdversarialTraining, r1_weight=1.0)),
              ("base (RateDistortionTraining)", RateDistortionTraining))
    for phase, cls in phases:
        torch.manual_seed(0)
        module = cls(preset=None, codec=codec_config)
        for batch_size in batch_sizes:
            progress(f"training {phase}, batch {batch_size}")
            timer = fit_steps(module, training_batch(batch_size, crop, photo=photo), steps, warmup)
            timing = Timing(timer.times[warmup:], warmup)
            rows.append({"phase": phase, "batch": batch_size, "crop": crop, "step_s": timing.median,
                         "samples_per_s": batch_size / timing.median, "timing": timing.to_json(),
                         "loss_finite": all(v is not None and math.isfinite(v) for v in timer.losses)})
    return rows
