"""Image quality metrics on 8-bit images: every function takes (H, W, 3) uint8 arrays, so every method is
scored on exactly what it would write to disk (8-bit-rounded).

One module per job:

* :mod:`~corrdiff.metrics.weight_free`: PSNR, MS-SSIM, high-frequency ratio, colour error, HaarPSI, GMSD;
* :mod:`~corrdiff.metrics.bandpass`: the band-pass (Laplacian pyramid) distribution distance;
* :mod:`~corrdiff.metrics.networks`: the pretrained networks (LPIPS, DISTS, FID's Inception), found or
  downloaded by :mod:`corrdiff.weights`, and the per-image metrics made of them;
* :mod:`~corrdiff.metrics.dists_network`: the DISTS network itself;
* :mod:`~corrdiff.metrics.feature_distances`: Fréchet distance and KID between feature sets;
* :mod:`~corrdiff.metrics.patch_fid`: FID/KID on 256x256 patches (HiFiC protocol);
* :mod:`~corrdiff.metrics.suite`: :class:`MetricSuite`, the metrics of one ``corrdiff eval`` run
  (docs/evaluation.md), looked up by name in :data:`corrdiff.metric_names.METRICS`.

The names below are importable from here; torchvision, torchmetrics and piq load only when a metric
that needs them is built or computed.
"""

from __future__ import annotations

from corrdiff.filters import laplacian
from corrdiff.image_io import to_tensor, to_uint8
from corrdiff.metrics.bandpass import bandpass_distance, bandpass_levels
from corrdiff.metrics.feature_distances import frechet_distance, kernel_inception_distance, polynomial_mmd
from corrdiff.metrics.networks import (build_dists, build_inception, build_lpips, dists, lpips_alex, lpips_vgg,
                                       network_score)
from corrdiff.metrics.patch_fid import PATCH_SIZE, PatchFID, extract_patches, fid_patches
from corrdiff.metrics.suite import FUNCTIONS, MetricSuite
from corrdiff.metrics.weight_free import colour_error, gmsd, haarpsi, high_frequency_ratio, ms_ssim, psnr
from corrdiff.weights import WEIGHT_FILES, PerceptualUnavailable, WeightsNotFound, find_weights

__all__ = [
    "FUNCTIONS", "MetricSuite", "PATCH_SIZE", "PatchFID", "PerceptualUnavailable", "WEIGHT_FILES", "WeightsNotFound",
    "bandpass_distance", "bandpass_levels", "build_dists", "build_inception", "build_lpips", "colour_error", "dists",
    "extract_patches", "fid_patches", "find_weights", "frechet_distance", "gmsd", "haarpsi", "high_frequency_ratio",
    "kernel_inception_distance", "laplacian", "lpips_alex", "lpips_vgg", "ms_ssim", "network_score",
    "polynomial_mmd", "psnr", "to_tensor", "to_uint8",
]
