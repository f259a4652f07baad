"""The model behind ``--model`` for the file commands: its file (which no output may replace), its one load for
all the files of a command, and the model chosen when ``--model`` is not given: ``compress`` takes ``variable``
for a rate option and ``default`` otherwise; ``decompress`` takes the packaged model the files were coded with."""

from __future__ import annotations

from pathlib import Path


def model_path(model: str) -> Path:
    """The file behind ``--model``: a packaged model's asset, or the path given."""
    from corrdiff.model_io import model_path as packaged_or_given

    return packaged_or_given(model)


def load_for(jobs: list, model: str, device: str):
    """The model, loaded once for all jobs (not at all when every job has already failed)."""
    from corrdiff.model_io import load_model

    return load_model(model, map_location=device) if any(job.error is None for job in jobs) else None


def compress_model(args) -> str:
    """``--model``, else the packaged ``variable`` when --quality/--bpp/--size ask for a rate, else ``default``."""
    if args.model is not None:
        return args.model
    return "variable" if any(getattr(args, name) is not None for name in ("quality", "bpp", "size")) else "default"


def decompress_model_files(model: str | None) -> list[Path]:
    """The model files ``decompress`` may read: ``--model``'s, or every packaged one."""
    from corrdiff.model_io import PACKAGED

    return [model_path(name) for name in ([model] if model is not None else PACKAGED)]


def load_for_files(jobs: list, model: str | None, device: str):
    """``--model`` loaded once; without it, the packaged model whose fingerprint the first readable file names
    (``default`` first; ``default`` when none does, whose mismatch each file then reports)."""
    from corrdiff.bitstream import unpack
    from corrdiff.errors import CorrDiffError
    from corrdiff.model_io import PACKAGED, load_model

    if model is not None or not any(job.error is None for job in jobs):
        return load_for(jobs, model or "default", device)
    fingerprint = None
    for job in jobs:
        try:
            fingerprint = unpack(job.input.read_bytes()).fingerprint
            break
        except (OSError, CorrDiffError):
            continue  # that file's own error is reported when it is decoded
    default = load_model("default", map_location=device)
    if fingerprint is None or fingerprint == default.fingerprint():
        return default
    for name in PACKAGED:
        if name != "default":
            codec = load_model(name, map_location=device)
            if codec.fingerprint() == fingerprint:
                return codec
    return default
