"""The image metrics (corrdiff/metrics/, docs/evaluation.md): each scores 8-bit images as its definition and
reference implementation do, whatever range it converts them to inside; FID and KID are their closed forms;
DISTS is torchmetrics' network without torchmetrics' code, and unavailable rather than random without weights."""

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


# --------------------------------------------------------------------------- FID and KID
def _with_moments(mean: list[float], cov: list[list[float]], n: int, seed: int) -> torch.Tensor:
    """n samples (float64) whose sample mean and covariance are exactly ``mean`` and ``cov``."""
    z = torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T  # sample covariance: identity
    return z @ torch.linalg.cholesky(torch.tensor(cov, dtype=torch.float64)).T + torch.tensor(mean, dtype=torch.float64)


def test_frechet_distance_is_the_closed_form_between_gaussians():
    # 2-D: tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det(S1 S2))), the square roots of the eigenvalues summed
    m1, s1, m2, s2 = [0.0, 1.0], [[2.0, 0.6], [0.6, 1.0]], [0.5, -1.0], [[1.0, -0.3], [-0.3, 0.5]]
    product = np.array(s1) @ np.array(s2)
    root_trace = math.sqrt(np.trace(product) + 2 * math.sqrt(np.linalg.det(product)))
    expected = 0.5 ** 2 + 2.0 ** 2 + np.trace(s1) + np.trace(s2) - 2 * root_trace
    real, fake = _with_moments(m1, s1, 50, 0), _with_moments(m2, s2, 70, 1)
    assert metrics.frechet_distance(real, fake) == pytest.approx(expected, rel=1e-9)
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    a, b = [4.0, 1.0, 0.25], [1.0, 1.0, 1.0]
    real = _with_moments([1.0, 0.0, 0.0], np.diag(a).tolist(), 40, 2)
    fake = _with_moments([0.0, 0.0, 0.0], np.diag(b).tolist(), 40, 3)
    expected = 1.0 + sum((math.sqrt(x) - math.sqrt(y)) ** 2 for x, y in zip(a, b))
    assert metrics.frechet_distance(real, fake) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_with_fewer_samples_than_dimensions():
    """Singular covariances (3 patches of many features): a set against itself is at distance 0."""
    features = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    scale = 2 * float(torch.cov(features.T).trace())  # ~ 128: the size of the terms that cancel
    assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6 * scale)
    assert metrics.frechet_distance(features, features + 1) == pytest.approx(64.0, abs=1e-6 * scale)


def _unbiased_cubic_mmd(a: np.ndarray, b: np.ndarray) -> float:
    """Closed form for 1-D features: (x y + 1)^3 = sum_j C(3, j) x^j y^j, so the unbiased MMD^2 is a sum over
    j of power sums S_j: (S_j(a)^2 - S_2j(a) + S_j(b)^2 - S_2j(b)) / (m (m - 1)) - 2 S_j(a) S_j(b) / m^2."""
    m = len(a)
    total = 0.0
    for j in (1, 2, 3):
        sa, sb = (a ** j).sum(), (b ** j).sum()
        within = sa ** 2 - (a ** (2 * j)).sum() + sb ** 2 - (b ** (2 * j)).sum()
        total += math.comb(3, j) * (within / (m * (m - 1)) - 2 * sa * sb / m ** 2)
    return total


def test_kid_is_the_closed_form_of_the_unbiased_cubic_mmd():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 1, generator=g, dtype=torch.float64)
    b = torch.randn(60, 1, generator=g, dtype=torch.float64) * 1.5 + 0.5
    expected = _unbiased_cubic_mmd(a.numpy()[:, 0], b.numpy()[:, 0])
    assert float(metrics.polynomial_mmd(a, b)) == pytest.approx(expected, rel=1e-9)
    # the kernel divides x.y by the dimension: a second, zero feature halves it
    scaled = [torch.cat([t * math.sqrt(2), torch.zeros_like(t)], 1) for t in (a, b)]
    assert float(metrics.polynomial_mmd(*scaled)) == pytest.approx(expected, rel=1e-9)
    # subsets as large as the sets are permutations of them: every subset gives the same value
    kid, kid_std = metrics.kernel_inception_distance(a, b, subsets=3)
    assert kid == pytest.approx(expected, rel=1e-9) and kid_std == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------- DISTS and the suite's table
def test_dists_equals_torchmetrics_network(random_weights_dir, monkeypatch):
    """The same VGG-16 weights in torchmetrics' DISTSNetwork (handed to it here, as it would download them)."""
    from torchmetrics.functional.image import dists as tm_dists
    from torchvision.models import vgg16

    state = torch.load(random_weights_dir / metrics.WEIGHT_FILES["vgg16"], weights_only=True)
    vgg = vgg16(weights=None)
    vgg.features.load_state_dict({k[len("features."):]: v for k, v in state.items()})
    monkeypatch.setattr(tm_dists, "vgg16", lambda weights=None: vgg)
    reference = tm_dists.DISTSNetwork().eval()
    ours = metrics.build_dists(random_weights_dir)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 80, generator=g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    with torch.no_grad():
        assert torch.allclose(ours(x, y), reference(x, y), atol=1e-6)
        assert torch.allclose(ours(y, x[[1, 0]]), reference(y, x[[1, 0]]), atol=1e-6)


def test_dists_is_built_without_torchmetrics_code(random_weights_dir):
    """Only torchmetrics' alpha/beta file is read: its module (and its VGG download) is never imported."""
    import subprocess
    import sys
    from pathlib import Path

    script = ("import sys; from corrdiff.metrics import build_dists; build_dists(sys.argv[1], offline=True); "
              "print(sorted(m for m in sys.modules if m.startswith('torchmetrics')))")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script, str(random_weights_dir)], capture_output=True, text=True,
                          cwd=repo, env={**__import__("os").environ, "PYTHONPATH": str(repo)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_dists_without_its_weights_is_unavailable_never_random(tmp_path, random_weights_dir, monkeypatch):
    from corrdiff.metrics import networks

    with pytest.raises(metrics.WeightsNotFound):
        metrics.build_dists(tmp_path, offline=True)
    suite = metrics.MetricSuite(["psnr-rgb", "dists"], weights_dir=tmp_path, offline=True)
    assert suite.image_metrics == ["psnr-rgb"] and "dists" in suite.missing_weights
    # another network's file under VGG-16's name
    from torchvision.models import alexnet

    (tmp_path / "checkpoints").mkdir()
    torch.save({f"features.{k}": v for k, v in alexnet(weights=None).features.state_dict().items()},
               tmp_path / "checkpoints" / metrics.WEIGHT_FILES["vgg16"])
    with pytest.raises(metrics.PerceptualUnavailable, match="not torchvision's VGG-16"):
        metrics.build_dists(tmp_path, offline=True)
    # alpha and beta not where torchmetrics keeps them
    monkeypatch.setattr(networks, "DISTS_ALPHA_BETA", ("no-such-file.pt",))
    with pytest.raises(metrics.PerceptualUnavailable, match="alpha/beta"):
        metrics.build_dists(random_weights_dir, offline=True)
    assert "alpha/beta" in metrics.MetricSuite(["dists"], weights_dir=random_weights_dir).unavailable["dists"]


def test_every_metric_of_the_table_names_a_function_of_the_package():
    from corrdiff.metric_names import METRICS

    for spec in METRICS.values():
        assert metrics.FUNCTIONS[spec.compute] is getattr(metrics, spec.compute), spec.name
