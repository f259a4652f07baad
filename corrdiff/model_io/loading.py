"""Reading a model file, or a model shipped in the package by name, as a validated eval-mode codec."""

from __future__ import annotations

import json
import os
import pickle
from importlib import resources
from pathlib import Path

import torch

from corrdiff.codec import CorrDiffCodec
from corrdiff.errors import ModelLoadError
from corrdiff.model_io.checks import check_model, check_stored_fingerprint
from corrdiff.model_io.devices import check_device
from corrdiff.model_io.file_format import FORMAT, FORMAT_VERSION, ZIP_MAGIC, describe_file, read_head
from corrdiff.model_io.messages import first_line
from corrdiff.model_io.state import load_codec_state

# models shipped in the package, by name: ``smooth`` is the MSE-trained score network that ``default`` was
# before its adversarial fine-tuning (experiments/default_model/README.md), for those who want that decode;
# ``variable`` is one model for every rate (docs/variable_rate.md), ``--quality``/``--bpp``/``--size``;
# ``variable-v1`` the first ``variable`` (its codec trained at one rate), kept so that its files still decode
PACKAGED = {"default": "default.pt", "smooth": "smooth.pt", "variable": "variable.pt", "avif": "avif.pt",
            "variable-v1": "variable_v1.pt"}


def model_path(name_or_path: str | os.PathLike) -> Path:
    """The file behind a model name: a packaged model's asset, or the path given."""
    key = str(name_or_path)
    return packaged_model_path(key) if key in PACKAGED else Path(key)


def packaged_model_path(name: str) -> Path:
    """Path of a model shipped inside the package."""
    path = Path(str(resources.files("corrdiff") / "assets" / PACKAGED[name]))
    if not path.exists():
        raise ModelLoadError(f"the packaged model {name!r} is missing from this installation ({path})")
    return path


def load_model(name_or_path: str | os.PathLike = "default", map_location: str | torch.device = "cpu") -> CorrDiffCodec:
    """Load a model file (or a packaged model by name, e.g. ``"default"``) as an eval-mode codec.

    ``map_location``: the device, checked first (DeviceError if this machine lacks it). The file is
    validated (:func:`~corrdiff.model_io.check_model`, the stored fingerprint) before the codec is returned.
    """
    map_location = check_device(map_location)
    path = model_path(name_or_path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file (give a path or one of: {', '.join(PACKAGED)})")
    head = read_head(path)
    if not head.startswith(ZIP_MAGIC):
        raise ModelLoadError(f"{path}: not a model file: it looks like {describe_file(head)} (a model file is "
                             "a torch zip archive written by `corrdiff export`)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(f"{path}: refused: the file carries pickled objects, not plain weights ({first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip or pickle: RuntimeError, IndexError, TypeError, ...
        raise ModelLoadError(f"{path}: not a readable model file ({first_line(exc)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: not a corrdiff model file (export one with `corrdiff export CKPT -o MODEL.pt`)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: model format version {payload.get('format_version')} is not supported "
                             f"(this corrdiff reads {FORMAT_VERSION})")
    try:
        config = json.loads(payload["config"])
        codec = CorrDiffCodec(**config)
    except Exception as exc:  # noqa: BLE001 - any component may reject a forged config its own way (or run out of memory)
        raise ModelLoadError(f"{path}: the embedded config is invalid ({first_line(exc)})") from None
    try:
        load_codec_state(codec, payload.get("state_dict"))
        if not codec.entropy_tables_ready():
            raise ModelLoadError("the model lacks entropy tables; re-export it (`corrdiff export`) "
                                 "or call codec.update() and save_model()")
        check_model(codec)
        check_stored_fingerprint(codec, payload.get("fingerprint"))
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    try:
        codec.metadata = json.loads(payload.get("metadata", "{}"))
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: the embedded metadata is invalid ({exc})") from None
    return codec.eval().to(map_location)
