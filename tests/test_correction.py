"""The CorrDiff correction (corrdiff.correction): gamma solvers, float16 transmission, optimality."""

from __future__ import annotations

import pytest
import torch

from corrdiff.correction import (
    FLOAT16_MAX,
    CorrectionConfig,
    GammaSolver,
    apply_correction,
    closed_form_gamma,
    gradient_gamma,
    quantize_gamma,
)

from conftest import estimate_triple


def triple(seed: int, shape=(2, 3, 8, 12)):
    return estimate_triple(seed, shape)


def mse(a: torch.Tensor, b: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Per image (groups=1) or per image and channel (groups=C) mean squared error, float64."""
    dims = (1, 2, 3) if groups == 1 else (2, 3)
    return ((a.double() - b.double()) ** 2).mean(dims)


# --------------------------------------------------------------------------- solvers
@pytest.mark.parametrize("groups", [1, 3], ids=["scalar", "channel"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_equals_gradient_solver(seed, groups):
    x, x0_d, x0_e = triple(seed)
    closed = closed_form_gamma(x, x0_d, x0_e, groups)
    grad = gradient_gamma(x, x0_d, x0_e, groups)
    assert closed.shape == grad.shape == (2, groups)
    assert closed.dtype == torch.float32
    torch.testing.assert_close(grad, closed, rtol=0, atol=1e-4)


def test_closed_form_is_the_projection_formula():
    x, x0_d, x0_e = triple(5, shape=(1, 3, 4, 4))
    d = (x0_e - x0_d).double()
    expected = ((x - x0_d).double() * d).sum() / (d * d).sum()
    assert closed_form_gamma(x, x0_d, x0_e).item() == pytest.approx(expected.item(), rel=1e-5)
    # channel granularity: one projection per channel
    for c in range(3):
        dc = d[:, c]
        expected_c = ((x - x0_d).double()[:, c] * dc).sum() / (dc * dc).sum()
        assert closed_form_gamma(x, x0_d, x0_e, 3)[0, c].item() == pytest.approx(expected_c.item(), rel=1e-5)


def test_closed_form_recovers_a_known_gamma():
    x, x0_d, x0_e = triple(6)
    target = apply_correction(x0_d, x0_e, torch.tensor([[0.3], [-1.7]]))
    torch.testing.assert_close(closed_form_gamma(target, x0_d, x0_e), torch.tensor([[0.3], [-1.7]]), rtol=0, atol=1e-5)


def test_zero_denominator_gives_zero():
    x, x0_d, _ = triple(7)
    for groups in (1, 3):
        gamma = closed_form_gamma(x, x0_d, x0_d.clone(), groups)
        assert torch.equal(gamma, torch.zeros(2, groups))
        assert torch.isfinite(gradient_gamma(x, x0_d, x0_d.clone(), groups)).all()
    # only one channel degenerate: that channel's gamma is 0, the others are not
    x, x0_d, x0_e = triple(8)
    x0_e[:, 1] = x0_d[:, 1]
    gamma = closed_form_gamma(x, x0_d, x0_e, 3)
    assert torch.equal(gamma[:, 1], torch.zeros(2))
    assert (gamma[:, [0, 2]] != 0).all()


def test_gradient_solver_with_perceptual_term():
    x, x0_d, x0_e = triple(9)

    def l1(a, b):
        return (a - b).abs().mean(dim=(1, 2, 3))

    mse_only = gradient_gamma(x, x0_d, x0_e)
    with_l1 = gradient_gamma(x, x0_d, x0_e, rho=10.0, perceptual=l1)
    assert with_l1.shape == (2, 1) and torch.isfinite(with_l1).all()
    assert not torch.allclose(with_l1, mse_only, atol=1e-3)
    with pytest.raises(ValueError, match="perceptual"):
        gradient_gamma(x, x0_d, x0_e, rho=1.0)


def test_apply_correction_endpoints():
    _, x0_d, x0_e = triple(10)
    assert torch.equal(apply_correction(x0_d, x0_e, torch.zeros(2, 1)), x0_d)
    torch.testing.assert_close(apply_correction(x0_d, x0_e, torch.ones(2, 1)), x0_e)
    per_channel = apply_correction(x0_d, x0_e, torch.tensor([[0.0, 1.0, 0.0]] * 2))
    assert torch.equal(per_channel[:, 0], x0_d[:, 0])
    torch.testing.assert_close(per_channel[:, 1], x0_e[:, 1])


# --------------------------------------------------------------------------- float16 transmission
def test_quantize_gamma_clamps_and_maps_nan_to_zero():
    raw = torch.tensor([0.1, 1.0, -2.5, 1e6, -1e6, 65519.0, float("inf"), float("-inf"), float("nan"), 1e-9])
    q = quantize_gamma(raw)
    assert q.dtype == torch.float32
    assert torch.equal(q.half().float(), q)  # float16-representable
    assert torch.isfinite(q).all()
    assert q[3] == q[5] == q[6] == FLOAT16_MAX == 65504.0
    assert q[4] == q[7] == -FLOAT16_MAX
    assert q[8] == 0.0
    assert q[1] == 1.0 and q[2] == -2.5
    assert abs(q[0] - 0.1) <= 2**-11 * 0.1  # round to nearest float16
    assert q[9] == 0.0 or abs(q[9] - 1e-9) < 1e-7


def test_quantize_gamma_is_idempotent():
    g = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 100
    q = quantize_gamma(g)
    assert torch.equal(quantize_gamma(q), q)
    assert torch.all((q - g).abs() <= g.abs() * 2**-11 + 1e-7)


def test_gamma_solver_quantises_what_it_returns():
    x, x0_d, x0_e = triple(11)
    for cfg, groups in ((CorrectionConfig(), 1), (CorrectionConfig(granularity="channel"), 3),
                        (CorrectionConfig(solver="gradient"), 1)):
        gamma = GammaSolver(cfg)(x, x0_d, x0_e)
        assert gamma.shape == (2, groups)
        assert torch.equal(gamma.half().float(), gamma)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"solver": "adam"}, "solver"),
        ({"granularity": "tile"}, "granularity"),
        ({"rho": -1.0}, "rho"),
        ({"rho": 0.5}, "solver: gradient"),
    ],
)
def test_correction_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CorrectionConfig(**kwargs)


def test_correction_config_granularities():
    assert [g.spec for g in CorrectionConfig().granularities] == ["scalar"]
    assert [g.spec for g in CorrectionConfig(granularity="channel").granularities] == ["channel"]
    assert [g.spec for g in CorrectionConfig(granularity="tile-64-linear").granularities] == ["tile-64-linear"]
    auto = CorrectionConfig(granularity="auto", candidates=["scalar", "tile-32"])
    assert [g.spec for g in auto.granularities] == ["scalar", "tile-32"]
    assert CorrectionConfig(solver="gradient", rho=0.1).rho == 0.1
    # what a model file stores: the first format's five fields, so shipped fingerprints do not change
    assert set(auto.stored()) == {"solver", "granularity", "rho", "perceptual", "iterations"}


# --------------------------------------------------------------------------- optimality
@pytest.mark.parametrize("groups", [1, 3], ids=["scalar", "channel"])
def test_per_step_corrected_estimate_is_never_worse(groups):
    """With the closed-form gamma, MSE(x, x0_c) <= MSE(x, x0_d) and <= MSE(x, x0_e) at every step.

    Both gamma = 0 and gamma = 1 are candidates of the minimisation, and both are float16
    values, so the property survives quantisation and the [-1, 1] clipping (a projection onto
    a convex set containing x).
    """
    for seed in range(20):
        x, x0_d, x0_e = triple(100 + seed)
        raw = closed_form_gamma(x, x0_d, x0_e, groups)
        for gamma in (raw, quantize_gamma(raw)):
            x0_c = apply_correction(x0_d, x0_e, gamma)
            for candidate in (x0_c, x0_c.clamp(-1, 1)):
                err = mse(x, candidate, groups)
                assert torch.all(err <= mse(x, x0_d, groups) * (1 + 1e-6) + 1e-12), seed
                assert torch.all(err <= mse(x, x0_e, groups) * (1 + 1e-6) + 1e-12), seed
    # and strictly better than both unless one of them is already optimal
    x, x0_d, x0_e = triple(3)
    x0_c = apply_correction(x0_d, x0_e, closed_form_gamma(x, x0_d, x0_e, groups))
    assert torch.all(mse(x, x0_c, groups) < torch.minimum(mse(x, x0_d, groups), mse(x, x0_e, groups)))


def _img_mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()) ** 2).mean().item()


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_whole_image_corrected_beats_diffusion_and_e2e(tiny_codec, test_images, encoded, name):
    """Whole trajectory, tiny random model: corrected vs the diffusion- and e2e-mode decodes of the same file.

    corrected <= e2e is guaranteed (the last step's gamma is MSE-optimal and gamma = 1, a float16
    value, reproduces x0_e); corrected <= diffusion is not guaranteed in general (the trajectories
    differ), but it must hold by a wide margin here.
    """
    image = test_images[name]
    result = encoded(name)
    corrected = _img_mse(result.reconstruction, image)
    diffusion = _img_mse(tiny_codec.decompress(result.data, mode="diffusion"), image)
    e2e = _img_mse(tiny_codec.decompress(result.data, mode="e2e"), image)
    assert corrected <= e2e * (1 + 1e-5) + 1e-10
    assert corrected < diffusion


def test_perceptual_network_of_the_solver_stays_out_of_the_model():
    """An encode with solver gradient and rho > 0 must not change state_dict() or the fingerprint
    (the perceptual network was registered as a submodule; issue 14, item 5)."""
    from conftest import make_codec

    codec = make_codec(correction={"solver": "gradient", "rho": 0.5, "iterations": 3})
    before = (codec.fingerprint(), set(codec.state_dict()))

    class Distance(torch.nn.Module):  # a network with weights, like LPIPS
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, a, b):
            return self.scale * (a - b).abs().mean(dim=(1, 2, 3))

    codec.perceptual_distances.set(codec.correction.perceptual, Distance())
    result = codec.encode(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), steps=2)
    assert (codec.fingerprint(), set(codec.state_dict())) == before
    assert torch.equal(codec.decompress(result.data), result.reconstruction)
