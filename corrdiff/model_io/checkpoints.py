"""Training checkpoints to codecs and model files: reading a Lightning checkpoint safely, the one path
from a training module's weights to an inference codec (:func:`codec_from_training_state`, which
training's ``export_codec`` uses too) and ``corrdiff export`` (:func:`export_checkpoint`)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from corrdiff.codec import CorrDiffCodec
from corrdiff.errors import ModelLoadError
from corrdiff.model_io.checks import check_finite, check_model
from corrdiff.model_io.file_format import FORMAT, ZIP_MAGIC, describe_file, read_head
from corrdiff.model_io.loading import load_model
from corrdiff.model_io.messages import first_line
from corrdiff.model_io.saving import save_model
from corrdiff.model_io.state import load_codec_state, strip_prefixes, under_prefix

PHASE_KEY = "corrdiff_phase"  # the training phase a Lightning checkpoint records (CodecTraining.phase)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a Lightning checkpoint of corrdiff's training modules with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such checkpoint")
    head = read_head(path)
    if not head.startswith(ZIP_MAGIC) and not head.startswith(b"\x80"):  # torch's zip or legacy pickle format
        raise ModelLoadError(f"{path}: not a Lightning checkpoint: it looks like {describe_file(head)} "
                             "(export takes the .ckpt file that `corrdiff fit` writes)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(f"{path}: refused: the checkpoint carries pickled objects ({first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip or pickle: RuntimeError, IndexError, TypeError, ...
        raise ModelLoadError(f"{path}: not a readable checkpoint ({first_line(exc)})") from None
    if isinstance(checkpoint, dict) and checkpoint.get("format") == FORMAT:
        raise ModelLoadError(f"{path}: this is an exported corrdiff model already, not a training checkpoint; "
                             "use it as it is (--model)")
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ModelLoadError(f"{path}: not a Lightning checkpoint (no state_dict)")
    if "codec_config" not in checkpoint.get("hyper_parameters", {}):
        raise ModelLoadError(f"{path}: not a checkpoint of corrdiff's ScoreTraining/JointTraining (no codec_config)")
    return checkpoint


def untrained_components(hyper_parameters: Mapping[str, Any], phase: str | None = None) -> list[str]:
    """Components a checkpoint certainly never trained: a phase-1 run (``phase`` ``score``: ScoreTraining
    freezes the end-to-end decoder) that started from scratch (no ``init_from``) leaves the decoder at
    its random initialisation. Other histories (e.g. phase 1 started from a trained model) are not
    known: nothing is listed. Checkpoints written before the phase was recorded (``phase`` None) are
    recognised by the absence of phase 2's ``distortion_weight``."""
    phase_one = phase == "score" if phase is not None else "distortion_weight" not in hyper_parameters
    if phase_one and not hyper_parameters.get("init_from"):
        return ["decoder"]
    return []


def codec_from_training_state(
    config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]
) -> tuple[CorrDiffCodec, bool]:
    """The inference codec held by a training module's state dict (``CodecTraining.state_dict()`` or a
    checkpoint's ``state_dict``): its ``codec.*`` weights, with the EMA score-network weights
    (``ema.module.*``) in the score network where there are any. DDP-style ``module.`` prefixes are
    stripped. Entropy tables are not rebuilt (``codec.update(force=True)``).

    Returns (codec, whether EMA weights were found).
    """
    state = strip_prefixes(state_dict)
    codec = CorrDiffCodec(**config)
    load_codec_state(codec, under_prefix(state, "codec."))
    ema = under_prefix(state, "ema.module.")
    if ema:
        codec.score_net.load_state_dict(ema)
    return codec, bool(ema)


def export_checkpoint(
    checkpoint_path: str | os.PathLike, output: str | os.PathLike, half: bool = False, overwrite: bool = True,
    steps: int | None = None,
) -> CorrDiffCodec:
    """Checkpoint -> slim model file: EMA score-network weights, entropy tables, config; no optimiser state.

    ``steps`` replaces the config's default number of sampling steps (what ``corrdiff compress`` uses
    without ``--steps``); it changes the fingerprint, not the weights.

    Returns the codec as it will load from ``output`` (with ``half``, weights rounded to float16).
    The weights come from :func:`codec_from_training_state` (DDP-style ``module.`` prefixes stripped).
    """
    checkpoint = read_checkpoint(checkpoint_path)
    config = dict(checkpoint["hyper_parameters"]["codec_config"])
    if steps is not None:
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
        config["steps"] = steps
    codec, ema = codec_from_training_state(config, checkpoint["state_dict"])
    try:
        check_finite(codec)
        codec.update(force=True)
        check_model(codec)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{checkpoint_path}: {exc}") from None
    metadata = {
        "source_checkpoint": Path(checkpoint_path).name,
        "global_step": checkpoint.get("global_step"),
        "epoch": checkpoint.get("epoch"),
        "ema": ema,
        "untrained": untrained_components(checkpoint["hyper_parameters"], checkpoint.get(PHASE_KEY)),
    }
    save_model(codec, output, metadata=metadata, half=half, overwrite=overwrite)
    return load_model(output)
