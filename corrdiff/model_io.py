"""Model files: a config and weights, saved with torch.save and loaded with ``weights_only=True``.

A model file is a dict ``{"format": "corrdiff-model", "format_version": 1, "config": <JSON
string>, "state_dict": {...}, "metadata": {...}, "fingerprint": <hex>}``: plain tensors and strings
only, so loading never runs pickled code (a file carrying a pickled object is refused).
``load_model("default")`` loads the model shipped in the package.

Model files come from strangers too (shared checkpoints, downloaded ladders), so :func:`load_model`
validates them before use (:func:`check_model`, docs/reliability.md): every weight finite, the entropy
coder's tables consistent with compressai's coder (:func:`check_entropy_tables`), and the stored
fingerprint, when the file has one (files written before it existed have none), equal to the
recomputed one. :func:`save_model` runs the same checks before it writes.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from corrdiff.bitstream import MAGIC as CDF_MAGIC
from corrdiff.codec import CorrDiffCodec
from corrdiff.compressai_parts import EntropyBottleneck, GaussianConditional
from corrdiff.errors import DeviceError, ModelLoadError
from corrdiff.files import atomic_write
from corrdiff.model import CorrDiffModel, fingerprint_of
from corrdiff.modules.priors import CODER_PRECISION, MIN_SYMBOLS

FORMAT = "corrdiff-model"
FORMAT_VERSION = 1
# models shipped in the package, by name: ``smooth`` is the MSE-trained score network that ``default`` was
# before its adversarial fine-tuning (experiments/default_model/README.md), for those who want that decode
PACKAGED = {"default": "default.pt", "smooth": "smooth.pt"}
PHASE_KEY = "corrdiff_phase"  # the training phase a Lightning checkpoint records (CodecTraining.phase)
_ENTROPY_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive format


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = ("module.",)) -> dict:
    """Drop wrapper prefixes such as DDP's ``module.`` from every key."""
    out = {}
    for key, value in state_dict.items():
        for prefix in prefixes:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def under_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` whose keys start with ``prefix``, keyed without it: a training module's
    ``codec.*`` weights as the codec's, its ``ema.module.*`` as the score network's."""
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def load_codec_state(codec: CorrDiffModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strictly load weights into ``codec``, resizing the entropy coder's table buffers first.

    Raises ModelLoadError naming missing and unexpected keys.
    """
    if not isinstance(state_dict, Mapping) or not all(isinstance(k, str) for k in state_dict):
        raise ModelLoadError(f"weights must be a dict of tensors by name, got {type(state_dict).__name__}")
    state_dict = strip_prefixes(state_dict)
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ModelLoadError(f"weights must be tensors; not a tensor: {_few(not_tensors)}")
    for name, module in codec.named_modules():
        if isinstance(module, (EntropyBottleneck, GaussianConditional)):
            for buffer in _ENTROPY_BUFFERS:  # tables of the size they were built with, not the empty ones
                if f"{name}.{buffer}" in state_dict:
                    getattr(module, buffer).resize_(state_dict[f"{name}.{buffer}"].shape)
    expected = codec.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (config: {tuple(expected[k].shape)})"
             for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise ModelLoadError(f"weights do not match the model's config (another width?): shape of {_few(wrong, 3)}")
    try:
        result = codec.load_state_dict(dict(state_dict), strict=False)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise ModelLoadError(f"weights do not match the model's config ({_first_line(exc)})") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            "weights do not match the model's config: "
            f"missing {_few(result.missing_keys)}; unexpected {_few(result.unexpected_keys)}"
        )


def _few(keys: list[str], n: int = 5) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _stored(key: str, tensor: torch.Tensor, half: bool) -> torch.Tensor:
    """The tensor as written: float32 network weights may be stored as float16 (``half``); the
    entropy model (``prior.*``) always keeps full precision, its tables are integers anyway."""
    tensor = tensor.detach().cpu().clone()
    if half and tensor.dtype == torch.float32 and not key.startswith("prior."):
        return tensor.half()
    return tensor


def save_model(
    codec: CorrDiffCodec,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    half: bool = False,
    overwrite: bool = True,
) -> None:
    """Write a slim inference model (entropy tables built, no optimiser state), atomically.

    The model is validated first (:func:`check_model`: ModelLoadError, nothing written), and the
    file records the fingerprint of the model as :func:`load_model` will rebuild it.
    ``overwrite=False`` creates ``path`` exclusively (:func:`~corrdiff.files.atomic_write`).

    ``half=True`` stores the transforms', conditioner's and score network's weights as float16
    (half the file size); loading casts them back to float32, so the fingerprint and
    determinism are those of the loaded model.
    """
    codec.update(force=False)
    check_model(codec)
    state = codec.state_dict()
    stored = {k: _stored(k, v, half) for k, v in state.items()}
    as_loaded = {k: v.to(state[k].dtype) for k, v in stored.items()}  # what load_model will hold
    overflow = _not_finite(as_loaded)
    if overflow:
        raise ModelLoadError(f"weights overflow float16: {_few(overflow)}; save them without half precision")
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


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or DeviceError saying why this machine cannot use it
    (an unknown name, CUDA or MPS not available, a GPU index beyond the GPUs found)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {str(device)!r} (use cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU or driver found"
            raise DeviceError(f"device {str(device)!r}: CUDA is not available on this machine ({why}); "
                              "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                              f"numbered from 0")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {str(device)!r}: MPS (Apple GPU) is not available on this machine; use --device cpu")
    return dev


#: leading bytes of files passed by mistake where a model or checkpoint belongs, and what they are
_FILE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"BM", "a BMP image"),
    (CDF_MAGIC, "a compressed corrdiff file (.cdf)"),
)


def describe_file(head: bytes) -> str:
    """What a file starting with ``head`` (its first 16 bytes or more) looks like, for error messages."""
    if not head:
        return "an empty file"
    for signature, kind in _FILE_SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp":
        return "an AVIF/HEIF image or an MP4 video"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "a file of an unknown format"


def _head(path: Path, size: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def load_model(name_or_path: str | os.PathLike = "default", map_location: str | torch.device = "cpu") -> CorrDiffCodec:
    """Load a model file (or a packaged model by name, e.g. ``"default"``) as an eval-mode codec.

    ``map_location``: the device, checked first (DeviceError if this machine lacks it).
    """
    map_location = check_device(map_location)
    path = model_path(name_or_path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file (give a path or one of: {', '.join(PACKAGED)})")
    head = _head(path)
    if not head.startswith(ZIP_MAGIC):
        raise ModelLoadError(f"{path}: not a model file: it looks like {describe_file(head)} (a model file is "
                             "a torch zip archive written by `corrdiff export`)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(f"{path}: refused: the file carries pickled objects, not plain weights ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip or pickle: RuntimeError, IndexError, TypeError, ...
        raise ModelLoadError(f"{path}: not a readable model file ({_first_line(exc)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: not a corrdiff model file (export one with `corrdiff export CKPT -o MODEL.pt`)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: model format version {payload.get('format_version')} is not supported "
                             f"(this corrdiff reads {FORMAT_VERSION})")
    try:
        config = json.loads(payload["config"])
        codec = CorrDiffCodec(**config)
    except Exception as exc:  # noqa: BLE001 - any component may reject a forged config its own way (or run out of memory)
        raise ModelLoadError(f"{path}: the embedded config is invalid ({_first_line(exc)})") from None
    try:
        load_codec_state(codec, payload.get("state_dict"))
        if not codec.prior.entropy_tables_ready():
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


def check_model(codec: CorrDiffCodec) -> None:
    """The model-file validator: ModelLoadError naming what is wrong, else nothing.

    Weights finite (:func:`check_finite`) and entropy tables that keep the coder's contract
    (:func:`check_entropy_tables`). The stored fingerprint is checked by :func:`load_model`.
    """
    check_finite(codec)
    check_entropy_tables(codec)


def check_finite(codec: CorrDiffCodec) -> None:
    """ModelLoadError naming the first weights that hold NaN or infinity (a diverged run's export):
    such weights make the entropy coder index outside its tables (a crash) or loop (docs/reliability.md)."""
    bad = _not_finite(codec.state_dict())
    if bad:
        raise ModelLoadError(f"weights hold NaN or infinite values: {_few(bad)}; the training run that made "
                             "them diverged (export an earlier checkpoint)")


def _not_finite(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    return [name for name, t in state_dict.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def check_entropy_tables(codec: CorrDiffCodec) -> None:
    """ModelLoadError unless every entropy model's tables keep the contract of compressai 1.2.8's coder.

    The C++ rANS coder (``rans_interface.cpp``) trusts its tables: it only ``assert``s them, and
    release builds compile the asserts out, so a forged table reads or writes out of bounds (docs/reliability.md:
    a Gaussian table cut to one row crashed encode and decode; all-zero rows divided by zero). Per
    entropy model (``EntropyBottleneck``, ``GaussianConditional``) this checks:

    * ``_quantized_cdf`` (rows x width), ``_cdf_length`` and ``_offset`` (rows) are int32 with one
      row per table the coder is given an index of: a channel of the bottleneck, a scale of the
      Gaussian's ``scale_table``;
    * every length L satisfies 3 <= L <= width (the coder reads ``cdf[0 .. L-1]``, and ``L - 2``
      is its escape symbol);
    * every row starts at 0, ends at ``cdf[L-1] = 2^16`` (:data:`~corrdiff.modules.priors.CODER_PRECISION`
      is fixed in the C++ source) and strictly increases in between: each symbol has a frequency
      of at least 1 (the encoder divides by it; ``assert_cdfs`` states the same);
    * every offset lies in [-(L - 3), 0]: the coded range contains the mean's symbol, as compressai
      builds it, and keeps values far from int32's limits;
    * ``scale_table`` is finite, positive and strictly increasing;
    * the narrowest latent (1 x 1) still codes :data:`~corrdiff.modules.priors.MIN_SYMBOLS` symbols
      per stream (fewer overrun the encoder's buffer).
    """
    for name, module in codec.named_modules():
        if isinstance(module, (EntropyBottleneck, GaussianConditional)):
            rows = module.channels if isinstance(module, EntropyBottleneck) else module.scale_table.numel()
            problem = _table_problem(module, rows)
            if problem:
                raise ModelLoadError(f"the entropy tables of {name} are invalid: {problem}; the model file is "
                                     "damaged (re-export it with `corrdiff export`)")
    counts = getattr(codec.prior, "stream_symbols", None)
    if counts is not None and min(counts((1, 1))) < MIN_SYMBOLS:
        raise ModelLoadError(f"the config's latent is too narrow for the entropy coder: a 1 x 1 latent codes "
                             f"{min(counts((1, 1)))} symbols in a stream, it needs at least {MIN_SYMBOLS}")


def _table_problem(module: nn.Module, rows: int) -> str | None:
    """What is wrong with one entropy model's tables (see :func:`check_entropy_tables`), or None."""
    cdf, lengths, offsets = module._quantized_cdf, module._cdf_length, module._offset
    for key, t, dims in (("_quantized_cdf", cdf, 2), ("_cdf_length", lengths, 1), ("_offset", offsets, 1)):
        if t.dtype != torch.int32 or t.dim() != dims:
            return f"{key} must be a {dims}-D int32 tensor, got {t.dim()}-D {t.dtype}"
    if not cdf.shape[0] == lengths.numel() == offsets.numel() == rows:
        return (f"{cdf.shape[0]} CDF rows, {lengths.numel()} lengths and {offsets.numel()} offsets "
                f"for {rows} tables")
    width = cdf.shape[1]
    lengths, offsets, cdf = lengths.long(), offsets.long(), cdf.long()
    checks = (
        ((lengths < 3) | (lengths > width), f"CDF length outside 3..{width} (the row width)"),
        ((offsets > 0) | (offsets < 3 - lengths), "offset outside [-(length - 3), 0]"),
    )
    for bad, what in checks:
        if bool(bad.any()):
            return f"row {int(bad.nonzero()[0])}: {what}"
    last = cdf.gather(1, (lengths - 1)[:, None]).squeeze(1)
    inside = torch.arange(1, width)[None, :] < lengths[:, None]  # steps cdf[j] -> cdf[j + 1] within a row
    checks = (
        (cdf[:, 0] != 0, "CDF does not start at 0"),
        (last != 1 << CODER_PRECISION, f"CDF does not end at 2^{CODER_PRECISION}"),
        (((cdf[:, 1:] <= cdf[:, :-1]) & inside).any(1), "CDF does not strictly increase (a symbol of frequency 0)"),
    )
    for bad, what in checks:
        if bool(bad.any()):
            return f"row {int(bad.nonzero()[0])}: {what}"
    if isinstance(module, GaussianConditional):
        scales = module.scale_table
        if not bool(torch.isfinite(scales).all()) or bool((scales <= 0).any()) or bool((scales[1:] <= scales[:-1]).any()):
            return "scale_table must be finite, positive and strictly increasing"
    return None


def check_stored_fingerprint(codec: CorrDiffCodec, stored: Any) -> None:
    """ModelLoadError unless ``stored`` (a file's ``fingerprint`` entry; None in older files) is the
    hex of ``codec.fingerprint()``: a config or weights changed after export (with the same shapes,
    e.g. another noise schedule) would otherwise only be caught at decode time."""
    if stored is None:
        return
    actual = codec.fingerprint().hex()
    if not isinstance(stored, str):
        raise ModelLoadError(f"the stored fingerprint must be a hex string, got {type(stored).__name__}")
    if stored != actual:
        raise ModelLoadError(f"the stored fingerprint {stored[:40]} differs from the model's {actual}: its config or "
                             "weights were changed after export (use the exported file, or re-export it)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    if not text:
        return name
    plain = isinstance(exc, (RuntimeError, OSError, pickle.UnpicklingError, ModelLoadError))
    return text[0] if plain else f"{name}: {text[0]}"


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a Lightning checkpoint of corrdiff's training modules with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such checkpoint")
    head = _head(path)
    if not head.startswith(ZIP_MAGIC) and not head.startswith(b"\x80"):  # torch's zip or legacy pickle format
        raise ModelLoadError(f"{path}: not a Lightning checkpoint: it looks like {describe_file(head)} "
                             "(export takes the .ckpt file that `corrdiff fit` writes)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(f"{path}: refused: the checkpoint carries pickled objects ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip or pickle: RuntimeError, IndexError, TypeError, ...
        raise ModelLoadError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None
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
