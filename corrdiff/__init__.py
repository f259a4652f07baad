"""corrdiff: CorrDiff diffusion-based perceptual image compression (Ma, Yang, Liu, ICML 2024).

Cheap to import: torch, compressai, Lightning and wandb load only when used.

    >>> import corrdiff
    >>> codec = corrdiff.CorrDiffCodec(**config)      # or corrdiff.load_model(path)
    >>> data = codec.compress(image)                   # (1, 3, H, W) in [0, 1] -> bytes
    >>> image_hat = codec.decompress(data)
"""

from __future__ import annotations

import importlib
from typing import Any

from corrdiff import registry
from corrdiff.errors import (BitstreamError, CorrDiffError, DeviceError, EntropyCoderError, ImageReadError,
                             ModelLoadError,
                             ModelMismatchError)

__version__ = "0.1.0"

_LAZY = {
    "CorrDiffCodec": "corrdiff.codec",
    "CorrDiffModel": "corrdiff.model",
    "EncodeResult": "corrdiff.encoding",
    "load_model": "corrdiff.model_io",
    "save_model": "corrdiff.model_io",
    "CorrectionConfig": "corrdiff.correction",
}

__all__ = [
    "registry", "BitstreamError", "CorrDiffError", "DeviceError", "EntropyCoderError", "ImageReadError",
    "ModelLoadError", "ModelMismatchError",
    "__version__", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'corrdiff' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
