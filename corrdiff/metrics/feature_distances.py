"""Distances between two sets of features (N, D), in float64: FID's Fréchet distance and KID's kernel MMD.

Fréchet distance (Heusel et al. 2017) between the Gaussians fitted to the two sets:
``||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2))``. The trace of the matrix square root is the
sum of the square roots of the eigenvalues of ``S_r S_f``, which are real and non-negative up to
round-off (the product of two covariance matrices is similar to a positive semi-definite one); unlike a
matrix square root (``scipy.linalg.sqrtm``) this stays well defined when there are fewer samples than
feature dimensions and the covariances are singular, as with a few 256x256 patches of 2048-d Inception
features. It is also how torchmetrics computes FID, so values equal its.

KID (Binkowski et al. 2018): the unbiased estimate of the squared maximum mean discrepancy under the
cubic polynomial kernel ``k(a, b) = (a.b / D + 1)^3``, averaged over random subsets.
"""

from __future__ import annotations

import torch
from torch import Tensor


def covariance(features: Tensor) -> Tensor:
    """The (D, D) sample covariance (divisor N - 1) of (N, D) features."""
    d = features.shape[1]
    return torch.cov(features.T).reshape(d, d)


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FID between two feature sets (N, D) (see the module docstring), in float64."""
    real, fake = real.double(), fake.double()
    mean_gap = (real.mean(0) - fake.mean(0)).square().sum()
    s_real, s_fake = covariance(real), covariance(fake)
    root_trace = torch.linalg.eigvals(s_real @ s_fake).sqrt().real.sum()
    return float(mean_gap + s_real.trace() + s_fake.trace() - 2 * root_trace)


def polynomial_mmd(a: Tensor, b: Tensor, degree: int = 3, coef: float = 1.0) -> Tensor:
    """Unbiased MMD^2 between two samples of equal size m under ``k(x, y) = (x.y / D + coef)^degree``:
    the mean of k over distinct pairs within each sample, less twice its mean over all cross pairs."""
    m, d = a.shape

    def kernel(x: Tensor, y: Tensor) -> Tensor:
        return (x @ y.T / d + coef) ** degree

    k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
    within = (k_aa.sum() - k_aa.diagonal().sum()) + (k_bb.sum() - k_bb.diagonal().sum())
    return within / (m * (m - 1)) - 2 * k_ab.sum() / m ** 2


def kernel_inception_distance(real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID: mean and std over ``subsets`` random subsets of :func:`polynomial_mmd`; the subset size is
    capped at the number of samples (at least 2 of each)."""
    n = min(len(real), len(fake))
    size = min(subset_size, n)
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        a = real[torch.randperm(len(real), generator=generator)[:size]].double()
        b = fake[torch.randperm(len(fake), generator=generator)[:size]].double()
        values.append(polynomial_mmd(a, b))
    v = torch.stack(values)
    return float(v.mean()), float(v.std(unbiased=False))
