"""The model behind ``--model`` for the file commands: its file (which no output may replace), its one load for
all the files of a command, and the model chosen when ``--model`` is not given: ``compress`` takes
:data:`DEFAULT_MODEL` (``avif``); ``decompress`` takes the packaged model the files were coded with,
and a file of another model than the one given is an error that names the packaged model that coded it."""

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


#: The packaged model the commands use without ``--model``: CorrDiff on the AVIF base (docs/avif_base.md), which
#: beats the learned ``default`` in fidelity and texture on the held-out photos; the learned models keep their names.
DEFAULT_MODEL = "avif"


def compress_model(args) -> str:
    """``--model``, else :data:`DEFAULT_MODEL` (it takes --quality, --bpp and --size as well)."""
    return args.model if args.model is not None else DEFAULT_MODEL


def decompress_model_files(model: str | None) -> list[Path]:
    """The model files ``decompress`` may read: ``--model``'s, or every packaged one this installation has."""
    from corrdiff.model_io import PACKAGED

    if model is not None:
        return [model_path(model)]
    return [path for path in map(model_path, PACKAGED) if path.exists()]


def stored_fingerprint(path: Path) -> bytes | None:
    """The ``fingerprint`` entry of a model file (:func:`~corrdiff.model_io.save_model` writes it), read without
    reading its weights (memory-mapped): finding which packaged model coded a file then loads none of the others.
    None for a file that stores none (written before the entry existed) or cannot be read so."""
    import torch

    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("fingerprint")
        return bytes.fromhex(stored) if isinstance(stored, str) else None
    except Exception:  # noqa: BLE001 - any unreadable file: its fingerprint is then computed from the loaded model
        return None


class FileModels:
    """The model that decodes each file: ``--model`` for every file; without it, the packaged model whose
    fingerprint the file names (:meth:`packaged_name`), each loaded at most once (``default`` when none does).
    A file that the chosen model did not code is a :class:`~corrdiff.errors.ModelMismatchError` that names the
    packaged model that did, or says that none did. ``--model`` is loaded at once (a model that does not load
    stops the command before any file), unless every job has already failed."""

    def __init__(self, model: str | None, device: str, jobs: list):
        self.model, self.device = model, device
        self.loaded: dict[str, object] = {}  # packaged name or --model -> codec
        self.fingerprints: dict[str, bytes] = {}  # the same -> its fingerprint (a hash of every weight: once)
        self.stored: dict[str, bytes | None] = {}  # packaged name -> the fingerprint its file stores
        if model is not None and any(job.error is None for job in jobs):
            self._load(model)

    def _load(self, name: str):
        from corrdiff.model_io import load_model

        if name not in self.loaded:
            self.loaded[name] = load_model(name, map_location=self.device)
            self.fingerprints[name] = self.loaded[name].fingerprint()
        return self.loaded[name]

    def for_avif(self):
        """The codec for a plain AVIF file: ``--model``, else the packaged AVIF-base model ``avif``."""
        return self._load(self.model if self.model is not None else "avif")

    def for_file(self, path: Path, fingerprint: bytes):
        """The codec for the file ``path`` whose header names ``fingerprint``; ModelMismatchError when it
        did not code it, saying which model to pass instead."""
        from corrdiff.errors import ModelMismatchError

        name = self.model if self.model is not None else self.packaged_name(fingerprint) or "default"
        codec = self._load(name)
        if self.fingerprints[name] != fingerprint:
            raise ModelMismatchError(self._mismatch(path, fingerprint, name))
        return codec

    def packaged_name(self, fingerprint: bytes) -> str | None:
        """The packaged model whose fingerprint is ``fingerprint``: by the fingerprint each packaged file stores
        (no model loaded), else by loading those that store none (older files), one at a time; None when no
        packaged model of this installation has it."""
        from corrdiff.model_io import PACKAGED

        names = [name for name in PACKAGED if model_path(name).exists()]
        for name in names:
            if name not in self.stored:
                self.stored[name] = stored_fingerprint(model_path(name))
            if self.stored[name] == fingerprint:
                return name
        for name in (name for name in names if self.stored[name] is None):
            self._load(name)
            if self.fingerprints[name] == fingerprint:
                return name
        return None

    def _mismatch(self, path: Path, fingerprint: bytes, name: str) -> str:
        from corrdiff.model_io.retired import retired_model

        owner = self.packaged_name(fingerprint)
        if owner is not None:  # only with --model: without it, the owner decodes the file
            return f"{path} was coded with the packaged model {owner!r}: drop --model or pass --model {owner}"
        given = f"--model {name}" if self.model is not None else f"the packaged model {name!r}"
        retired = retired_model(fingerprint)
        if retired is not None:
            return (f"{path} was coded with {retired.describe()} (fingerprint {fingerprint.hex()}; {given} is "
                    f"{self.fingerprints[name].hex()}): {retired.where()}")
        return (f"{path} was coded with a model that is not packaged (fingerprint {fingerprint.hex()}; "
                f"{given} is {self.fingerprints[name].hex()}): pass --model PATH of the model file that coded it")
