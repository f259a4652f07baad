"""Score-network recipes (issue 12): eps/x0/v prediction, their loss weightings, x0_e conditioning,
training a new score network on a frozen codec, multi-scale crops, the colour-error metric and the
long-training driver."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import corrdiff
from corrdiff.losses import diffusion_loss
from corrdiff.metrics import colour_error
from corrdiff.modules.samplers import PREDICTIONS, prediction_target, x0_error_factor, x0_from_output
from corrdiff.training import ImageDataModule, ScoreTraining
from corrdiff.training.data import ImageCrops
from conftest import make_codec

ROOT = Path(__file__).resolve().parents[1]


def _noisy(seed: int = 0, shape=(2, 3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    ab = torch.tensor([0.9, 0.02], dtype=torch.float64).view(-1, 1, 1, 1)
    return x0, noise, ab, ab.sqrt() * x0 + (1 - ab).sqrt() * noise


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_each_prediction_target_maps_back_to_x0(prediction):
    x0, noise, ab, x_t = _noisy()
    target = prediction_target(x0, noise, ab, prediction)
    assert torch.allclose(x0_from_output(target, x_t, ab, prediction), x0, atol=1e-12)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_output_error_is_x0_error_times_the_documented_factor(prediction):
    """||f - target||^2 = k(t) ||x0_f - x0||^2 with k = SNR, 1, SNR + 1: what min-SNR weighting divides by."""
    x0, noise, ab, x_t = _noisy(1)
    target = prediction_target(x0, noise, ab, prediction)
    output = target + 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out_err = (output - target).pow(2).flatten(1).sum(1)
    x0_err = (x0_from_output(output, x_t, ab, prediction) - x0).pow(2).flatten(1).sum(1)
    snr = (ab / (1 - ab)).flatten()
    assert torch.allclose(out_err, x0_error_factor(snr, prediction) * x0_err, rtol=1e-9)


def test_unknown_prediction_is_refused():
    with pytest.raises(ValueError, match="prediction must be one of"):
        make_codec(score_net={**corrdiff.presets.preset("tiny")["score_net"], "prediction": "score"})


def _tiny_score_net(**options) -> dict:
    return {**corrdiff.presets.preset("tiny")["score_net"], **options}


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_min_snr_loss_is_the_same_x0_space_loss_for_every_parametrisation(prediction):
    """With min-SNR weighting, a network whose x0 estimate is off by the same amount costs the same."""
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    codec = make_codec(score_net=_tiny_score_net(prediction=prediction))
    t = torch.tensor([100, 800])
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    ab = codec.schedule.alpha_bar_at(t, x)
    x_t = codec.schedule.add_noise(x, noise, t)
    x0_wrong = x * 0.5  # every parametrisation's output is set to mean this x0 estimate
    if prediction == "x0":
        output = x0_wrong
    else:
        eps_wrong = (x_t - ab.sqrt() * x0_wrong) / (1 - ab).sqrt()
        output = eps_wrong if prediction == "eps" else ab.sqrt() * eps_wrong - (1 - ab).sqrt() * x0_wrong
    codec.denoise = lambda *args, **kwargs: output
    loss, _ = diffusion_loss(codec, x, [], min_snr_gamma=5.0, t=t, noise=noise)
    snr = codec.schedule.snr(t)
    expected = (snr.clamp(max=5.0) * (x0_wrong - x).pow(2).mean(dim=(1, 2, 3))).mean()
    assert math.isclose(float(loss), float(expected), rel_tol=1e-4)


def test_residual_score_net_starts_at_the_end_to_end_reconstruction():
    """e2e_input residual: x0_theta = x0_e + f, f's output layer starts at zero."""
    codec = make_codec(score_net=_tiny_score_net(prediction="x0", e2e_input="residual"))
    x_t, x0_e = torch.randn(1, 3, 16, 16), torch.rand(1, 3, 16, 16) * 2 - 1
    cond = codec.condition(torch.zeros(1, 32, 1, 1))
    assert torch.equal(codec.denoise(x_t, torch.tensor([500]), cond, x0_e=x0_e), x0_e)
    with pytest.raises(ValueError, match="needs x0_e"):
        codec.score_net(x_t, torch.tensor([500]), cond)


def test_residual_needs_x0_prediction_and_inputs_are_checked():
    with pytest.raises(ValueError, match="needs prediction 'x0'"):
        make_codec(score_net=_tiny_score_net(prediction="v", e2e_input="residual"))
    with pytest.raises(ValueError, match="e2e_input must be one of"):
        make_codec(score_net=_tiny_score_net(e2e_input="add"))


@pytest.mark.parametrize("options", [{"prediction": "v"}, {"prediction": "x0", "e2e_input": "residual"},
                                     {"prediction": "eps", "e2e_input": "concat"}])
def test_recipes_round_trip_bit_exactly(options):
    codec = make_codec(score_net=_tiny_score_net(**options))
    image = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(3))
    result = codec.encode(image)
    assert torch.equal(codec.decompress(result.data), result.reconstruction)
    for mode in ("diffusion", "e2e"):
        assert codec.decompress(result.data, mode=mode).shape == image.shape


def test_concat_input_changes_the_estimate():
    """The concatenated x0_e is really seen: another x0_e, another output (once the weights are not zero)."""
    codec = make_codec(score_net=_tiny_score_net(prediction="x0", e2e_input="concat"))
    torch.nn.init.normal_(codec.score_net.out[-1].weight, std=0.1)
    x_t = torch.randn(1, 3, 16, 16)
    cond = codec.condition(torch.zeros(1, 32, 1, 1))
    a = codec.denoise(x_t, torch.tensor([10]), cond, x0_e=torch.zeros_like(x_t))
    b = codec.denoise(x_t, torch.tensor([10]), cond, x0_e=torch.ones_like(x_t))
    assert not torch.allclose(a, b)


# ------------------------------------------------------------------ a new score network on a frozen codec
@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe_photos")
    (path / "train").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path / "train" / f"{i}.png")
    return path


def test_score_training_on_a_frozen_codec(model_file, photos):
    """init_skip gives a fresh score network of another recipe; freeze keeps encoder, prior and D exact."""
    import lightning as L

    start = corrdiff.load_model(model_file)
    model = ScoreTraining(init_from=str(model_file), init_skip=["score_net"], freeze=["encoder", "prior"],
                          codec={"score_net": {"prediction": "x0", "e2e_input": "residual"}},
                          val_compress_images=0, lr=1e-3)
    assert model.codec_config["score_net"]["e2e_input"] == "residual"
    assert model.codec_config["encoder"] == start.config["encoder"]
    before = {k: v.clone() for k, v in model.codec.state_dict().items()}
    trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=ImageDataModule(str(photos / "train"), crop_size=32, batch_size=2,
                                                  num_workers=0, max_scale=1.5))
    after = model.codec.state_dict()
    for prefix in ("encoder.", "prior.", "decoder."):
        for key in (k for k in before if k.startswith(prefix)):
            assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("score_net."))
    # the rate is the starting model's, to the byte
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    ours, theirs = model.export_codec().encode(image, mode="e2e"), start.encode(image, mode="e2e")
    assert torch.equal(ours.y_hat, theirs.y_hat) and len(ours.data) == len(theirs.data)


def test_init_from_refuses_another_recipe_of_the_same_shapes(model_file, tmp_path):
    """An eps score network loads into a v one without a shape error; the config check refuses it."""
    from corrdiff.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="its score_net is"):
        ScoreTraining(init_from=str(model_file), codec={"score_net": {"prediction": "v"}})
    ScoreTraining(init_from=str(model_file), codec={"score_net": {"prediction": "v"}}, init_skip=["score_net"])


def test_init_skip_and_freeze_names_are_checked(model_file):
    with pytest.raises(ValueError, match="unknown components"):
        ScoreTraining(init_from=str(model_file), freeze=["unet"])
    with pytest.raises(ValueError, match="give init_from"):
        ScoreTraining(init_parts={"score_net": str(model_file)})


def test_init_parts_take_components_from_another_model(model_file, tmp_path):
    """The score network (and its EMA) of one model, everything else of another."""
    other = make_codec(seed=5)
    other_file = tmp_path / "other.pt"
    corrdiff.save_model(other, other_file)
    model = ScoreTraining(init_from=str(model_file), init_parts={"score_net": str(other_file)})
    base = corrdiff.load_model(model_file)
    for key, value in model.codec.state_dict().items():
        source = other if key.startswith("score_net.") else base
        assert torch.equal(value, source.state_dict()[key]), key
    for key, value in model.ema.module.state_dict().items():
        assert torch.equal(value, other.score_net.state_dict()[key]), key


# ------------------------------------------------------------------ data, metric, driver
def test_multi_scale_crops_cover_a_larger_region_downscaled(tmp_path, monkeypatch):
    """A one-pixel checkerboard keeps its contrast in a 1x crop and averages to grey in a 2x crop."""
    import random

    folder = tmp_path / "checker"
    folder.mkdir()
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(np.repeat(board[..., None], 3, axis=2)).save(folder / "board.png")
    single = ImageCrops(str(folder), 16, train=True, max_scale=1.0)[0]
    monkeypatch.setattr(random, "uniform", lambda lo, hi: 2.0)
    double = ImageCrops(str(folder), 16, train=True, max_scale=2.5)[0]
    assert single.shape == double.shape == (3, 16, 16)
    assert single.std() > 0.9 and double.std() < 0.05  # [-1, 1] scale: +-1 alternating vs ~0
    with pytest.raises(ValueError, match="max_scale"):
        ImageCrops(str(folder), 16, train=True, max_scale=0.5)


def test_colour_error_measures_a_cast_in_levels():
    rng = np.random.default_rng(0)
    image = rng.integers(20, 200, (16, 16, 3), dtype=np.uint8)
    assert colour_error(image, image) == 0
    cast = image.copy()
    cast[..., 2] += 5
    assert colour_error(image, cast) == pytest.approx(5.0)


def _driver():
    spec = importlib.util.spec_from_file_location("train_long", ROOT / "experiments" / "default_model" / "train_long.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_long_training_driver_continues_a_checkpoint_or_the_exported_model(tmp_path):
    driver = _driver()
    assert driver.parse_duration("01:30:00") == 5400 and driver.parse_duration("90") == 5400
    assert driver.parse_duration("1:00:00:05") == 86405
    assert driver.format_duration(5400.2) == "00:01:30:01"
    run, start = tmp_path / "run", tmp_path / "model.pt"
    fresh = driver.fit_command(run, start, 600, ["--model.lr", "1e-4"])
    assert fresh[fresh.index("--model.init_from") + 1] == str(start)
    assert fresh[fresh.index("--model.init_skip") + 1] == "[]" and fresh[-2:] == ["--model.lr", "1e-4"]
    assert fresh[fresh.index("--trainer.max_time") + 1] == "00:00:10:00"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"callbacks": {"Timer": {"time_elapsed": {"train": 3000.0}}}}, run / "checkpoints" / "last.ckpt")
    resumed = driver.fit_command(run, start, 600, [])
    assert resumed[resumed.index("--ckpt_path") + 1] == str(run / "checkpoints" / "last.ckpt")
    assert resumed[resumed.index("--trainer.max_time") + 1] == "00:01:00:00"
    assert "--model.init_from" not in resumed


# ------------------------------------------------------------------ the quadratic timestep spacing
@pytest.mark.parametrize("steps", [1, 2, 8, 50, 1000])
def test_quadratic_spacing_starts_at_pure_noise_and_ends_near_the_image(steps):
    from corrdiff.modules.samplers import DDIMSampler, QuadraticDDIMSampler
    from corrdiff.modules.schedules import CosineSchedule

    schedule = CosineSchedule()
    quadratic = QuadraticDDIMSampler(schedule).set_timesteps(steps)
    even = DDIMSampler(schedule).set_timesteps(steps)
    assert quadratic[0] == 999 and len(quadratic) == steps
    assert all(a > b for a, b in zip(quadratic, quadratic[1:])) and quadratic[-1] >= 0
    assert quadratic[-1] <= even[-1]  # the last estimate is taken at less noise
    if steps == 8:
        assert quadratic == [999, 765, 562, 390, 250, 140, 62, 16]


def test_quadratic_sampler_is_recorded_and_replayed():
    codec = make_codec(score_net=_tiny_score_net(prediction="x0", e2e_input="residual"))
    image = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(4))
    result = codec.encode(image, sampler={"name": "ddim_quadratic", "eta": 0.5})
    header = corrdiff.bitstream.unpack(result.data)
    assert (header.sampler, header.sampler_params) == ("ddim_quadratic", (0.5,))
    assert torch.equal(codec.decompress(result.data), result.reconstruction)
