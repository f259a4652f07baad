"""The device a model is loaded onto: checked before anything is read, with the reason it cannot be used."""

from __future__ import annotations

import torch

from corrdiff.errors import DeviceError


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
