"""Per-image metrics that need no pretrained weights, on (H, W, 3) uint8 arrays.

* PSNR (dB, peak 255) and MS-SSIM (Wang, Simoncelli, Bovik 2003; scales reduced for small images,
  :func:`corrdiff.losses.distortion.ms_ssim_index`, the one MS-SSIM of the package).
* High-frequency energy ratio: ||Lap(x_hat)||^2 / ||Lap(x)||^2 with the 3x3 Laplacian;
  1 = as sharp as the original, < 1 = blurred (reported beside PSNR, since the MSE
  gamma trades sharpness for fidelity; docs/evaluation.md).
* Colour error: the largest per-channel difference of the mean colour, in 8-bit levels
  (a colour cast shows here even when PSNR hides it among noise; 0 = no cast).
* HaarPSI and GMSD through piq (imported when used).
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import numpy as np

from corrdiff.filters import laplacian
from corrdiff.image_io import to_tensor
from corrdiff.losses.distortion import ms_ssim_betas, ms_ssim_index


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels, data range 255."""
    error = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / error)) if error > 0 else float("inf")


def ms_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM (RGB, averaged), with as many of the 5 scales as the image size allows."""
    betas = ms_ssim_betas(min(reference.shape[:2]))
    return float(ms_ssim_index(to_tensor(test), to_tensor(reference), betas))


def high_frequency_ratio(reference: np.ndarray, test: np.ndarray) -> float:
    """Laplacian energy of ``test`` relative to ``reference`` (sharpness; 1 = same)."""

    def energy(rgb: np.ndarray) -> float:
        return float(laplacian(to_tensor(rgb)).pow(2).mean())

    ref = energy(reference)
    return energy(test) / ref if ref > 0 else float("nan")


def colour_error(reference: np.ndarray, test: np.ndarray) -> float:
    """max over R, G, B of |mean(test_c) - mean(reference_c)|, in 8-bit levels (a global colour cast)."""
    shift = test.reshape(-1, 3).astype(np.float64).mean(0) - reference.reshape(-1, 3).astype(np.float64).mean(0)
    return float(np.abs(shift).max())


def quiet_import(package: str) -> ModuleType:
    """Import ``package`` without its FutureWarnings (piq 0.8 warns about torch.jit.script)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return importlib.import_module(package)


def _piq(name: str, reference: np.ndarray, test: np.ndarray) -> float:
    metric = getattr(quiet_import("piq"), name)
    return float(metric(to_tensor(test), to_tensor(reference), data_range=1.0, reduction="none")[0])


def haarpsi(reference: np.ndarray, test: np.ndarray) -> float:
    """HaarPSI (Reisenhofer et al. 2018) via piq; NaN for images under 16 px a side."""
    if min(reference.shape[:2]) < 16:
        return float("nan")
    if np.array_equal(reference, test):
        return 1.0  # piq returns inf for identical flat images
    return _piq("haarpsi", reference, test)


def gmsd(reference: np.ndarray, test: np.ndarray) -> float:
    """GMSD (Xue et al. 2014) via piq; lower is better; NaN for images under 4 px a side."""
    if min(reference.shape[:2]) < 4:
        return float("nan")
    return _piq("gmsd", reference, test)
