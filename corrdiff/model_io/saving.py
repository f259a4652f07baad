"""Writing a model file: validated first, optionally float16, atomically (:func:`save_model`)."""

from __future__ import annotations

import io
import json
import os
from typing import Any, Mapping

import torch

from corrdiff.errors import ModelLoadError
from corrdiff.files import atomic_write
from corrdiff.model import CorrDiffModel, fingerprint_of
from corrdiff.model_io.checks import check_model, not_finite
from corrdiff.model_io.file_format import FORMAT, FORMAT_VERSION
from corrdiff.model_io.messages import few


def stored_tensor(key: str, tensor: torch.Tensor, half: bool) -> torch.Tensor:
    """The tensor as written: float32 network weights may be stored as float16 (``half``); the
    entropy model (``prior.*``) always keeps full precision, its tables are integers anyway."""
    tensor = tensor.detach().cpu().clone()
    if half and tensor.dtype == torch.float32 and not key.startswith("prior."):
        return tensor.half()
    return tensor


def save_model(
    codec: CorrDiffModel,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    half: bool = False,
    overwrite: bool = True,
) -> None:
    """Write a slim inference model (entropy tables built, no optimiser state), atomically.

    The model is validated first (:func:`~corrdiff.model_io.check_model`: ModelLoadError, nothing
    written), and the file records the fingerprint of the model as :func:`~corrdiff.model_io.load_model`
    will rebuild it. ``overwrite=False`` creates ``path`` exclusively (:func:`~corrdiff.files.atomic_write`).

    ``half=True`` stores the transforms', conditioner's and score network's weights as float16
    (half the file size); loading casts them back to float32, so the fingerprint and
    determinism are those of the loaded model.
    """
    codec.update(force=False)
    check_model(codec)
    state = codec.state_dict()
    stored = {k: stored_tensor(k, v, half) for k, v in state.items()}
    as_loaded = {k: v.to(state[k].dtype) for k, v in stored.items()}  # what load_model will hold
    overflow = not_finite(as_loaded)
    if overflow:
        raise ModelLoadError(f"weights overflow float16: {few(overflow)}; save them without half precision")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(codec.config, sort_keys=True),
        "state_dict": stored,
        "metadata": json.dumps(dict(metadata or {}), sort_keys=True, default=str),
        "fingerprint": fingerprint_of(codec.config, as_loaded).hex(),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, buf.getvalue(), overwrite=overwrite)
