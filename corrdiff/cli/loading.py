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
    """The model files ``decompress`` may read: ``--model``'s, or every packaged one this installation has."""
    from corrdiff.model_io import PACKAGED

    if model is not None:
        return [model_path(model)]
    return [path for path in map(model_path, PACKAGED) if path.exists()]


class FileModels:
    """The model that decodes each file: ``--model`` for every file; without it, the packaged model whose
    fingerprint the file names, each loaded at most once, ``default`` first (``default`` when none does:
    its mismatch is then that file's error, naming ``--model``). ``--model`` is loaded at once (a model that
    does not load stops the command before any file), unless every job has already failed."""

    def __init__(self, model: str | None, device: str, jobs: list):
        self.model, self.device = model, device
        self.loaded: dict[str, object] = {}  # packaged name or --model -> codec
        self.fingerprints: dict[bytes, object] = {}
        if model is not None and any(job.error is None for job in jobs):
            self._load(model)

    def _load(self, name: str):
        from corrdiff.model_io import load_model

        if name not in self.loaded:
            codec = self.loaded[name] = load_model(name, map_location=self.device)
            self.fingerprints.setdefault(codec.fingerprint(), codec)
        return self.loaded[name]

    def for_avif(self):
        """The codec for a plain AVIF file: ``--model``, else the packaged AVIF-base model ``avif``."""
        return self._load(self.model if self.model is not None else "avif")

    def for_file(self, fingerprint: bytes):
        """The codec for a file whose header names ``fingerprint``."""
        from corrdiff.model_io import PACKAGED

        if self.model is not None:
            return self._load(self.model)
        for name in ["default", *PACKAGED]:
            if fingerprint in self.fingerprints:
                break
            if name not in self.loaded and model_path(name).exists():
                self._load(name)
        codec = self.fingerprints.get(fingerprint)
        return codec if codec is not None else self._load("default")
