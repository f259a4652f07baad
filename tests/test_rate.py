"""The rate term of training (corrdiff/losses/rate.py, docs/training.md): the bits of both latents, y and
the hyper-latent z, per image pixel, weighted by lambda in both phases' loss."""

from __future__ import annotations

import pytest
import torch

from corrdiff.losses.rate import bits_per_pixel
from corrdiff.training import JointTraining, ScoreTraining


def test_bits_per_pixel_counts_every_latent_per_image_pixel():
    # y: 8 symbols of probability 1/2 (1 bit each), z: 2 symbols of probability 1/4 (2 bits each), per image
    likelihoods = {"z": torch.full((2, 1, 1, 2), 0.25), "y": torch.full((2, 2, 2, 2), 0.5)}
    assert float(bits_per_pixel(likelihoods, num_pixels=4 * 6)) == pytest.approx((8 + 2 * 2) / 24)


@pytest.mark.parametrize("phase", [ScoreTraining, JointTraining])
def test_training_loss_weights_the_rate_of_y_and_z_per_pixel_by_lambda(phase):
    torch.manual_seed(0)
    module = phase(preset="tiny", lmbda=0.37).eval()  # eval: the prior quantises without noise
    x = torch.rand(1, 3, 32, 48) * 2 - 1  # not square: a rate per row or per column would show
    with torch.no_grad():
        terms, _ = module.compute_terms(x)
        _, likelihoods = module.codec.analyse(x)
    assert set(likelihoods) == {"y", "z"}
    bits = sum(-torch.log2(lik.clamp_min(1e-9)).sum() for lik in likelihoods.values())
    assert terms.weights["bpp"] == pytest.approx(0.37)
    assert float(terms.values["bpp"]) == pytest.approx(float(bits) / (32 * 48), rel=1e-5)
