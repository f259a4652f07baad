"""Gammas that vary over the image (issue 15): granularities, their closed forms, coding, the
rate-distortion choice, the weight-free sharpness objective, and gray images."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import estimate_triple, make_codec, random_image

from corrdiff import bitstream
from corrdiff.correction import (
    CorrectionConfig,
    GammaSolver,
    Granularity,
    apply_correction,
    code_step,
    correction_objective,
    gradient_gamma,
    step_gammas,
)
from corrdiff.losses.perceptual import HighFrequencyDeficit, build_perceptual


def triple(seed: int, shape=(1, 3, 40, 72)):
    """x, x0_d, x0_e whose best gamma differs between the left and the right half of the image."""
    x, x0_d, x0_e = estimate_triple(seed, shape, d_noise=0.4)
    x0_e[..., shape[-1] // 2 :] = x0_d[..., shape[-1] // 2 :] + 2 * (x - x0_d)[..., shape[-1] // 2 :]  # gamma 0.5 there
    return x, x0_d, x0_e


# --------------------------------------------------------------------------- granularities
@pytest.mark.parametrize("spec", ["scalar", "channel", "tile-16", "tile-32-linear", "tile-2048"])
def test_granularity_specs_round_trip_and_count(spec):
    gran = Granularity.parse(spec)
    assert gran.spec == spec
    counts = {"scalar": 1, "channel": 3, "tile-16": 3 * 5, "tile-32-linear": 2 * 3, "tile-2048": 1}
    assert gran.count(40, 72) == counts[spec]


@pytest.mark.parametrize("spec", ["tile", "tile-48", "tile-8", "tile-64-cubic", "pixel", "tile-4096"])
def test_bad_granularity_specs_are_refused(spec):
    with pytest.raises(ValueError, match="granularity|tile cell"):
        Granularity.parse(spec)


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_expand_and_adjoint_are_transposes(interpolation):
    gran = Granularity("tile", 16, interpolation)
    g = torch.Generator().manual_seed(0)
    gamma = torch.randn(2, gran.count(40, 72), generator=g)
    field = torch.randn(2, 3, 40, 72, generator=g)
    lhs = (gran.expand(gamma, 40, 72) * field).sum()
    rhs = (gamma * gran.adjoint(field)).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-4)


def test_linear_map_has_no_seams_and_interpolates_cell_centres():
    gran = Granularity.parse("tile-16-linear")
    gamma = torch.arange(15, dtype=torch.float32)[None]  # 3 x 5 cells over 40 x 72
    gmap = gran.expand(gamma, 40, 72)[0, 0]
    assert gmap[:8, :8].eq(0).all()  # up to cell (0, 0)'s centre (pixel 7.5) the map is its value
    # between centres, bilinear: rows 15-16 sit half-way between row centres 0 and 1 (5 cells apart)
    assert gmap[15:17, 23].mean().item() == pytest.approx(5 * 0.5 + (23.5 / 16 - 0.5), abs=1e-5)
    # neighbouring pixels never jump by more than one cell step (nearest jumps by a full cell value)
    assert (gmap[:, 1:] - gmap[:, :-1]).abs().max() <= 1 / 16 + 1e-6
    assert (gmap[1:] - gmap[:-1]).abs().max() <= 5 / 16 + 1e-6
    nearest = Granularity.parse("tile-16").expand(gamma, 40, 72)[0, 0]
    assert (nearest[:, 1:] - nearest[:, :-1]).abs().max() == 1.0


@pytest.mark.parametrize("spec", ["scalar", "channel", "tile-16", "tile-32", "tile-16-linear"])
def test_closed_form_is_the_least_squares_optimum(spec):
    """Eq. (3)/(4): no perturbation of the closed-form gammas lowers the MSE; gradient descent agrees."""
    gran = Granularity.parse(spec)
    x, x0_d, x0_e = triple(1)
    best = gran.closed_form(x, x0_d, x0_e)
    h, w = x.shape[-2:]
    loss = lambda g: correction_objective(apply_correction(x0_d, x0_e, gran.expand(g, h, w)), x).item()  # noqa: E731
    g = torch.Generator().manual_seed(2)
    for _ in range(10):
        assert loss(best) <= loss(best + 1e-2 * torch.randn(best.shape, generator=g)) + 1e-9
    grad = gradient_gamma(x, x0_d, x0_e, gran, iterations=50)
    assert loss(best) <= loss(grad) + 1e-7


def test_finer_granularities_fit_a_spatially_varying_correction_better():
    x, x0_d, x0_e = triple(3)
    h, w = x.shape[-2:]
    losses = {}
    for spec in ("scalar", "tile-32", "tile-16"):
        gran = Granularity.parse(spec)
        x0_c = apply_correction(x0_d, x0_e, gran.expand(gran.closed_form(x, x0_d, x0_e), h, w))
        losses[spec] = correction_objective(x0_c, x).item()
    assert losses["tile-16"] < losses["tile-32"] < losses["scalar"]


# --------------------------------------------------------------------------- coding
@pytest.mark.parametrize("quant", [0, 3, 7])
def test_tile_coding_quantises_residuals_to_the_stated_step(quant):
    gran = Granularity.parse("tile-16")
    gamma = torch.linspace(-1.3, 2.1, gran.count(40, 72))
    coded = code_step(gran, gamma, quant)
    back = step_gammas(coded)[0]
    assert coded.values[0] == torch.tensor(gamma.mean().item()).half().item()
    assert (back - gamma).abs().max() <= 2.0 ** -(quant + 2) + 1e-3
    coded.validate(40, 72)


def test_solver_choice_never_costs_more_than_the_scalar_gamma():
    """Eq. (5): the auto choice's D + lambda R at each step is at most the scalar candidate's."""
    for seed in range(6):
        x, x0_d, x0_e = triple(10 + seed)
        h, w = x.shape[-2:]
        for rate_weight in (0.0, 1e-3, 1e-1, 10.0):
            cfg = CorrectionConfig(granularity="auto", rate_weight=rate_weight)
            choice = GammaSolver(cfg).choose(x, x0_d, x0_e)
            scalar = code_step(Granularity("scalar"), Granularity("scalar").closed_form(x, x0_d, x0_e)[0])
            x0_c = apply_correction(x0_d, x0_e, Granularity("scalar").expand(step_gammas(scalar), h, w)).clamp(-1, 1)
            scalar_cost = correction_objective(x0_c, x).item() + rate_weight * bitstream.step_bits(scalar) / (h * w)
            assert choice.cost <= scalar_cost + 1e-9
            if rate_weight == 10.0:  # gamma bits expensive: the single float16 wins
                assert choice.coded.kind == "scalar"
            if rate_weight == 0.0:  # bits free: a tile map fits this image better
                assert choice.coded.kind == "tile"


# --------------------------------------------------------------------------- whole files
@pytest.fixture(scope="module")
def codec(tiny_codec):
    return tiny_codec


@pytest.mark.parametrize("gamma", [{"granularity": "tile-16"}, {"granularity": "tile-32-linear"},
                                   {"granularity": "auto", "rate_weight": 0.0}])
def test_tile_files_decode_exactly_to_the_encoders_reconstruction(codec, test_images, gamma):
    image = test_images["random67x131"]
    result = codec.encode(image, gamma=gamma)
    header = bitstream.unpack(result.data)
    assert header.version == bitstream.VERSION and header.steps == 8
    if gamma["granularity"] != "auto":
        assert header.granularities == ("tile",) * 8
        cell = 16 if gamma["granularity"] == "tile-16" else 32
        assert all(s.cell == cell and s.linear == ("linear" in gamma["granularity"]) for s in header.gamma_steps)
    assert torch.equal(codec.decompress(result.data), result.reconstruction)
    half = codec.decompress(result.data, gamma_scale=0.5)
    assert half.shape == image.shape and not torch.equal(half, result.reconstruction)


def test_auto_never_does_worse_than_the_scalar_gamma_on_an_image(codec, test_images):
    """Whole trajectory: final MSE + lambda * (gamma bits / pixel) of auto <= that of the scalar gamma."""
    for name in ("astronaut", "chelsea", "random67x131"):
        image = test_images[name]
        h, w = image.shape[-2:]
        costs = {}
        for granularity in ("scalar", "auto"):
            result = codec.encode(image, gamma={"granularity": granularity})
            bits = sum(bitstream.step_bits(s) for s in result.gamma_steps)
            mse = ((result.reconstruction * 2 - image * 2) ** 2).mean().item()  # L's scale, [-1, 1]
            costs[granularity] = mse + CorrectionConfig().rate_weight * bits / (h * w)
        assert costs["auto"] <= costs["scalar"] * (1 + 1e-6), (name, costs)


def test_encode_time_gamma_options_do_not_change_the_model(codec, test_images):
    before = codec.fingerprint()
    codec.encode(test_images["random17x33"], steps=2, gamma={"granularity": "auto", "candidates": ["scalar", "tile-16"]})
    assert codec.fingerprint() == before and codec.correction.granularity == "scalar"
    with pytest.raises(ValueError, match="unknown gamma option"):
        codec.encode(test_images["random17x33"], steps=1, gamma={"granulartiy": "auto"})
    with pytest.raises(ValueError, match="granularity"):
        codec.encode(test_images["random17x33"], steps=1, gamma={"granularity": "tile-7"})


def test_a_model_configured_with_tiles_encodes_tiles(codec, test_images):
    from corrdiff.model_io import load_codec_state

    tiled = make_codec(0, correction={"granularity": "tile-16"})
    load_codec_state(tiled, codec.state_dict())
    result = tiled.encode(test_images["random32x48"], steps=2)
    assert bitstream.unpack(result.data).granularities == ("tile", "tile")
    assert torch.equal(tiled.decompress(result.data), result.reconstruction)


# --------------------------------------------------------------------------- sharpness objective
def test_high_frequency_deficit_counts_only_missing_detail():
    hf = HighFrequencyDeficit(window=8)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert hf(x, x).abs().max() < 1e-5
    assert (hf(blurred, x) > 1e-3).all()
    assert hf(x, blurred).abs().max() < 1e-6  # more detail than the original: no penalty
    assert build_perceptual({"name": "hf", "window": 8}).spec == {"name": "hf", "window": 8}


def test_sharpness_objective_trades_mse_for_high_frequencies():
    """With rho > 0 the solver moves away from the blurry estimate: more Laplacian energy, more MSE."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 3, 32, 48, generator=g) * 2 - 1
    x0_e = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # blurry but faithful
    x0_d = (x0_e + 0.5 * (x - x0_e) + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)  # some detail
    hf = HighFrequencyDeficit()
    results = []
    for rho in (0.0, 0.3, 3.0):
        gamma = gradient_gamma(x, x0_d, x0_e, "scalar", rho=rho, perceptual=hf if rho else None)
        x0_c = apply_correction(x0_d, x0_e, gamma)
        results.append(((x0_c - x).pow(2).mean().item(), hf(x0_c, x).item(), gamma.item()))
    mses, deficits, gammas = zip(*results)
    assert mses[0] < mses[1] < mses[2]
    assert deficits[0] > deficits[1] > deficits[2]
    assert gammas[0] > gammas[1] > gammas[2]


def test_sharpness_objective_through_the_codec_needs_no_weights(codec, test_images):
    image = test_images["astronaut"]
    sharp = codec.encode(image, steps=2, gamma={"solver": "gradient", "rho": 1.0, "perceptual": {"name": "hf"},
                                                "iterations": 5})
    assert torch.equal(codec.decompress(sharp.data), sharp.reconstruction)


# --------------------------------------------------------------------------- gray in, gray out
def test_gray_images_are_flagged_and_decode_gray(codec, natural_images):
    from conftest import to_tensor

    rgb = natural_images["astronaut"]
    gray = to_tensor(rgb).mean(1, keepdim=True).mul(255).round().div(255).expand(-1, 3, -1, -1)
    result = codec.encode(gray, steps=2)
    header = bitstream.unpack(result.data)
    assert header.gray
    decoded = codec.decompress(result.data)
    assert torch.equal(decoded, result.reconstruction)
    assert torch.equal(decoded[:, 0], decoded[:, 1]) and torch.equal(decoded[:, 1], decoded[:, 2])
    assert not bitstream.unpack(codec.encode(to_tensor(rgb), steps=1).data).gray
    assert math.isfinite(decoded.sum().item())


def test_random_image_helper_is_colour(codec):
    assert not bitstream.unpack(codec.encode(random_image(16, 16, seed=0), steps=1).data).gray


def test_auto_needs_scalar_first():
    with pytest.raises(ValueError, match="'scalar' as its first candidate"):
        CorrectionConfig(granularity="auto", candidates=["tile-64", "scalar"])


# --------------------------------------------------------------------------- training
def test_joint_training_learns_with_the_correction_it_will_get():
    from corrdiff.training import JointTraining

    torch.manual_seed(0)
    model = JointTraining(preset="tiny", rho=1.0, perceptual={"name": "hf"}, gamma_granularity="tile-16")
    assert model.gamma_granularity.spec == "tile-16"
    loss, logs = model.compute_loss(torch.rand(2, 3, 32, 48) * 2 - 1)
    assert torch.isfinite(loss) and logs["perceptual"] > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.codec.score_net.parameters())
    # by default the codec's own granularity (a channel model trained its P term with scalar gammas before)
    channel = JointTraining(preset="tiny", codec={"correction": {"granularity": "channel"}})
    assert channel.gamma_granularity.spec == "channel"
    auto = JointTraining(preset="tiny", codec={"correction": {"granularity": "auto"}})
    assert auto.gamma_granularity.spec == "scalar"


@pytest.mark.parametrize("spec", ["tile-16", "channel"])
def test_joint_training_corrects_with_its_granularity(spec):
    """The P term's x0_c is the correction of the configured granularity, not the scalar one."""
    from corrdiff.correction import apply_correction
    from corrdiff.training import JointTraining

    torch.manual_seed(0)
    model = JointTraining(preset="tiny", rho=1.0, perceptual={"name": "hf"}, gamma_granularity=spec)
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    terms, inter = model.compute_terms(x)
    assert torch.isfinite(terms.total()) and terms.values["perceptual"] > 0

    def corrected(gran: Granularity) -> torch.Tensor:
        x0_d, x0_e = inter.x0_d.clamp(-1, 1).detach(), inter.x0_e.detach()
        return apply_correction(x0_d, x0_e, gran.expand(gran.closed_form(x, x0_d, x0_e), 32, 48))

    assert torch.allclose(inter.x0_c, corrected(Granularity.parse(spec)), atol=1e-6)
    assert not torch.allclose(inter.x0_c, corrected(Granularity.parse("scalar")), atol=1e-4)


def test_linear_maps_with_too_many_cells_are_refused_not_allocated():
    x = torch.zeros(1, 3, 2048, 2560)
    with pytest.raises(ValueError, match="linear maps allow"):
        Granularity.parse("tile-16-linear").closed_form(x, x, x)


# --------------------------------------------------------------------------- review findings
def test_one_extreme_cell_does_not_spoil_the_others():
    """The base is the cells' median: a cell without correction direction (gamma 1e5) is clamped alone."""
    gran = Granularity.parse("tile-16")
    gamma = torch.full((gran.count(40, 72),), 0.75)
    gamma[3] = 1e5
    back = step_gammas(code_step(gran, gamma, 6))[0]
    assert torch.equal(back[torch.arange(len(back)) != 3], torch.full((len(back) - 1,), 0.75))


def test_maps_of_thin_images_cost_the_map_not_a_dense_basis():
    gran = Granularity.parse("tile-16-linear")
    gamma = torch.linspace(0, 1, gran.count(65535, 32))[None]
    gmap = gran.expand(gamma, 65535, 32)
    assert gmap.shape == (1, 1, 65535, 32) and torch.isfinite(gmap).all()


def test_encoder_map_is_built_as_the_decoder_builds_it():
    from corrdiff.correction import gamma_map

    x, x0_d, x0_e = triple(5)
    choice = GammaSolver(CorrectionConfig(granularity="tile-16-linear")).choose(x, x0_d, x0_e)
    assert torch.equal(choice.map, gamma_map(choice.coded, *x.shape[-2:]))


def test_a_perceptual_override_is_not_replaced_by_the_custom_distance(codec, test_images):
    class Refuse(torch.nn.Module):
        def forward(self, a, b):
            raise AssertionError("the custom distance stands for the model's own spec only")

    codec.perceptual_distances.set(codec.correction.perceptual, Refuse())
    try:
        codec.encode(test_images["random17x33"], steps=1,
                     gamma={"solver": "gradient", "rho": 0.5, "perceptual": {"name": "hf"}, "iterations": 2})
    finally:
        codec.perceptual_distances.set(codec.correction.perceptual, None)


def test_iterations_must_be_a_positive_integer():
    for bad in (0, -3, "abc", 2.5):
        with pytest.raises(ValueError, match="iterations"):
            CorrectionConfig(iterations=bad)


def test_the_encoders_perceptual_distances_are_kept_per_device(monkeypatch):
    """One distance per spec and device (corrdiff/gamma_distances.py), built once; a distance given with set()
    serves every device."""
    from corrdiff import gamma_distances

    built = []

    def build(spec):
        built.append(spec)
        return torch.nn.Identity()

    monkeypatch.setattr(gamma_distances, "build_perceptual", build)
    distances = gamma_distances.PerceptualDistances()
    first = distances.get({"name": "hf"}, "cpu")
    assert distances.get({"name": "hf"}, torch.device("cpu")) is first and len(built) == 1
    moved = []
    monkeypatch.setattr(torch.nn.Identity, "to", lambda self, device: moved.append(str(device)) or self)
    distances.get({"name": "hf"}, "meta")
    assert len(built) == 2 and moved == ["meta"]
    given = object()
    distances.set({"name": "hf"}, given)
    assert distances.get({"name": "hf"}, "cpu") is given and distances.get({"name": "hf"}, "meta") is given
