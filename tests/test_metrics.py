"""Input ranges of the image metrics (corrdiff/metrics.py, docs/evaluation.md): each metric scores 8-bit
images as their definition and reference implementation do, whatever range it converts them to inside."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from corrdiff import metrics


def _pair(seed: int = 0, h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    test = np.clip(reference.astype(int) + rng.integers(-20, 21, reference.shape), 0, 255).astype(np.uint8)
    return reference, test


def _as_255(rgb: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W) float64 in [0, 255]: the references below get the 8-bit values and data_range=255."""
    return torch.from_numpy(rgb.astype(np.float64)).permute(2, 0, 1)[None]


def test_psnr_uses_the_8_bit_data_range():
    reference = np.full((8, 8, 3), 100, dtype=np.uint8)
    assert metrics.psnr(reference, reference + 1) == pytest.approx(20 * math.log10(255))


def test_ms_ssim_equals_the_reference_on_8_bit_values():
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as reference_ms_ssim

    from corrdiff.losses.distortion import ms_ssim_betas

    reference, test = _pair(h=100, w=120)
    expected = reference_ms_ssim(_as_255(test), _as_255(reference), data_range=255.0, betas=ms_ssim_betas(100))
    assert metrics.ms_ssim(reference, test) == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("name", ["haarpsi", "gmsd"])
def test_piq_metrics_equal_piq_on_8_bit_values(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import piq
    reference, test = _pair()
    expected = getattr(piq, name)(_as_255(test), _as_255(reference), data_range=255.0)
    assert getattr(metrics, name)(reference, test) == pytest.approx(float(expected), rel=1e-4)


def test_bandpass_distance_compares_bt601_luma():
    # the same texture in the red channel of one image and in the blue channel of the other: on BT.601
    # luma (0.299 R + 0.587 G + 0.114 B) the coefficients of the second are 0.114 / 0.299 of the first
    texture = np.random.default_rng(1).integers(-60, 61, (128, 128))
    red, blue = np.full((128, 128, 3), 128), np.full((128, 128, 3), 128)
    red[..., 0] += texture
    blue[..., 2] += texture
    distance = metrics.bandpass_distance(red.astype(np.uint8), blue.astype(np.uint8))
    assert distance == pytest.approx((0.299 - 0.114) / 0.299, rel=1e-6)


def test_ms_ssim_of_anti_correlated_images_is_the_references_zero_not_nan():
    """A negative contrast term counts as 0, as torchmetrics' default ``normalize="relu"`` makes it."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as reference_ms_ssim

    from corrdiff.losses.distortion import ms_ssim_betas

    reference, _ = _pair(h=100, w=120)
    inverted = 255 - reference
    expected = reference_ms_ssim(_as_255(inverted), _as_255(reference), data_range=255.0, betas=ms_ssim_betas(100))
    assert float(expected) == 0.0 and metrics.ms_ssim(reference, inverted) == 0.0


def test_ms_ssim_per_image_is_what_the_validation_metric_averages():
    from corrdiff.losses.distortion import ms_ssim_index, ms_ssim_per_image

    a = torch.rand(3, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    b = (a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    per_image = ms_ssim_per_image(a, b, (0.5, 0.5))
    assert per_image.shape == (3,)
    assert float(per_image[1]) == pytest.approx(float(ms_ssim_index(a[1:2], b[1:2], (0.5, 0.5))), abs=1e-7)
    assert float(per_image.mean()) == pytest.approx(float(ms_ssim_index(a, b, (0.5, 0.5))), abs=1e-7)
