"""Variable-rate models (corrdiff/modules/rate.py, corrdiff/rate_search.py, docs/variable_rate.md):
a quality that flows through the model as one record, the file's quality record, size and bpp targets,
and training with a quality drawn per image."""

from __future__ import annotations

import copy
import dataclasses

import lightning as L
import pytest
import torch
from conftest import make_codec, to_tensor

import corrdiff
from corrdiff import bitstream
from corrdiff.errors import BitstreamError
from corrdiff.model_io import load_codec_state
from corrdiff.modules.rate import RateCondition, RateControl
from corrdiff.rate_search import RateTargetError, SEARCH_STEPS
from corrdiff.training import JointTraining
from corrdiff.training.data import ImageDataModule

RATE = {"lambdas": [4.0, 2.0, 1.0, 0.5], "reference_lambda": 1.0, "default_quality": 3.0}


@pytest.fixture(scope="module")
def fixed(natural_images):
    """A tiny codec whose latent spreads over many symbols (random weights code almost nothing)."""
    codec = make_codec(3)
    last = [m for m in codec.encoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        factor = 4.0 / float(codec.encoder(to_tensor(natural_images["chelsea"]) * 2 - 1).std())
        last.weight.mul_(factor)
        last.bias.mul_(factor)
    codec.update(force=True)
    return codec


@pytest.fixture(scope="module")
def variable(fixed):
    """``fixed`` made variable-rate: its weights plus fresh gains (quality 3 has the reference lambda)."""
    codec = make_codec(3, rate=RATE)
    state = fixed.state_dict()
    state.update({k: v for k, v in codec.state_dict().items() if k.startswith("rate_control.")})
    load_codec_state(codec, state)
    codec.update(force=True)
    return codec.eval()


@pytest.fixture(scope="module")
def image(natural_images):
    return to_tensor(natural_images["chelsea"])


def test_a_fixed_rate_config_has_no_rate_entry():
    """Old models keep their config, hence their fingerprint (files name models by it)."""
    assert "rate" not in make_codec(0).config and make_codec(0).rate_control is None
    assert make_codec(0).fingerprint() != make_codec(0, rate=RATE).fingerprint()
    # the shipped fixed-rate model keeps the fingerprint its files name (the v3 golden file's decode checks it too)
    assert corrdiff.load_model("default").fingerprint().hex() == "e52b3cc603d347f4"


def test_the_reference_quality_reproduces_the_fixed_rate_model_bit_for_bit(fixed, variable, image):
    a, b = fixed.encode(image, steps=2), variable.encode(image, steps=2, quality=3.0)
    assert torch.equal(a.reconstruction, b.reconstruction)
    assert bitstream.unpack(a.data).streams == bitstream.unpack(b.data).streams
    assert len(b.data) == len(a.data) + 7  # the quality record: id, length, float32


def test_quality_sets_the_rate_and_decodes_bit_for_bit_between_trained_qualities(variable, image):
    sizes = []
    for quality in (1.0, 2.0, 2.37, 3.0, 4.0):
        result = variable.encode(image, steps=2, quality=quality)
        assert bitstream.unpack(result.data).quality == pytest.approx(quality)
        assert torch.equal(variable.decompress(result.data), result.reconstruction)
        sizes.append(len(result.data))
    assert sizes == sorted(sizes) and sizes[-1] > 1.2 * sizes[0]


def test_quality_is_checked(fixed, variable, image):
    assert variable.quality_range == (1.0, 4.0) and fixed.quality_range is None
    for bad in (0.99, 4.01, float("nan")):
        with pytest.raises(ValueError, match=r"quality must be in \[1, 4\]"):
            variable.encode(image, quality=bad)
    with pytest.raises(ValueError, match="fixed rate"):
        fixed.encode(image, quality=2.0)
    assert bitstream.unpack(variable.encode(image, steps=1).data).quality == 3.0  # the default quality


def test_a_quality_record_that_does_not_fit_the_model_is_refused(fixed, variable, image):
    data = variable.encode(image, steps=1, quality=2.0).data
    bs = bitstream.unpack(data)
    for quality, message in ((None, "no quality record"), (9.0, r"does not fit this model.*\[1, 4\]")):
        with pytest.raises(BitstreamError, match=message):
            variable.decompress(bitstream.pack(dataclasses.replace(bs, quality=quality)))
    plain = bitstream.unpack(fixed.encode(image, steps=1).data)
    with pytest.raises(BitstreamError, match="fixed rate"):
        fixed.decompress(bitstream.pack(dataclasses.replace(plain, quality=2.0)))


def test_interpolation_and_lambda():
    control = RateControl(4, (2,), [8.0, 2.0, 0.5])
    with torch.no_grad():
        control.log_gain.copy_(torch.tensor([[0.0] * 4, [1.0] * 4, [3.0] * 4]))
    rate = RateCondition.of([1.0, 1.5, 2.0, 2.75, 3.0])
    assert control.interpolate(control.log_gain, rate)[:, 0].tolist() == pytest.approx([0, 0.5, 1, 2.5, 3])
    assert control.lmbda(rate).tolist() == pytest.approx([8, 4, 2, 2 * 4**-0.75, 0.5])
    with pytest.raises(ValueError, match="decrease"):
        RateControl(4, (2,), [1.0, 2.0])
    for bad in ([1.0], [float("nan"), 1.0], [2.0, -1.0], [1.0 / (i + 1) for i in range(65)]):
        with pytest.raises(ValueError, match="2 to 64 positive numbers"):
            RateControl(4, (2,), bad)


def _with_rate_tables(variable, seed=0):
    """A copy of ``variable`` whose rate tables are random, as a trained model's are (the fixture's FiLM
    tables are zero and its inverse gains exactly 1 / gain, which hide a table used in the wrong place)."""
    codec = copy.deepcopy(variable)
    control = codec.rate_control
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for table in (control.log_gain, control.log_inverse_gain, *control.cond_scale, *control.cond_shift):
            table.add_(0.3 * torch.randn(table.shape, generator=generator))
    return codec


def test_the_latent_is_coded_with_the_gain_and_seen_with_the_inverse_gain(variable, image):
    """y_hat = Q(y * g(q)) * g'(q) (corrdiff/modules/rate.py): within half a quantiser step, g'(q), of
    y * g(q) * g'(q), each channel with its own gains, and coarser at a lower quality."""
    from corrdiff.encoding import analysis_latent, code_latent
    from corrdiff.image_io import to_model_range

    codec = _with_rate_tables(variable)
    control = codec.rate_control
    errors = []
    with torch.no_grad():
        y = analysis_latent(codec, to_model_range(image))
        for quality in (1.0, 2.5, 4.0):
            rate = RateCondition.of(quality)
            gain = control.interpolate(control.log_gain, rate).exp()[:, :, None, None]
            inverse = control.interpolate(control.log_inverse_gain, rate).exp()[:, :, None, None]
            _, y_hat = code_latent(codec, y, rate)
            error = (y_hat - y * gain * inverse).abs()
            assert bool((error <= 0.5 * inverse + 1e-4).all()), quality
            assert 0.1 < float((error / inverse).mean()) < 0.4  # in quantiser steps: near 1/4 when y spreads
            errors.append(float(error.mean()))
    assert errors[0] > 1.5 * errors[2]


def test_the_conditioning_is_modulated_at_each_images_quality(variable):
    """c_k(q) = C(y_hat)_k * (1 + a_k(q)) + b_k(q) with each image's own q, in the model and in what the
    sampler reads (the fixture's FiLM tables are zero: random ones here)."""
    from corrdiff.sampling import sampling_condition

    codec = _with_rate_tables(variable, seed=1)
    control = codec.rate_control
    generator = torch.Generator().manual_seed(0)
    y_hat = torch.randn(1, control.log_gain.shape[1], 5, 7, generator=generator).repeat(2, 1, 1, 1)
    with torch.no_grad():
        plain = codec.conditioner(y_hat)
        cond = codec.condition(y_hat, RateCondition.of([1.0, 4.0]))  # trained qualities: rows 0 and 3
        for c, p, a, b in zip(cond, plain, control.cond_scale, control.cond_shift):
            for i, row in enumerate((0, 3)):
                expected = p[i] * (1 + a[row][:, None, None]) + b[row][:, None, None]
                assert torch.allclose(c[i], expected, atol=1e-5)
        for quality in (1.0, 2.5):
            rate = RateCondition.of(quality)
            features, projected = sampling_condition(codec, y_hat[:1], rate)
            expected = codec.condition(y_hat[:1], rate)
            expected = codec.score_net.project_condition(expected) if projected else expected
            assert all(torch.allclose(f, e, atol=1e-5) for f, e in zip(features, expected))
        low, _ = sampling_condition(codec, y_hat[:1], RateCondition.of(1.0))
        high, _ = sampling_condition(codec, y_hat[:1], RateCondition.of(4.0))
        assert not all(torch.allclose(a, b, atol=1e-3) for a, b in zip(low, high))


def test_max_bytes_gives_the_largest_quality_that_fits(variable, image):
    top = len(variable.encode(image, steps=1, quality=4.0).data)
    bottom = len(variable.encode(image, steps=1, quality=1.0).data)
    for budget in (bottom + 3, (bottom + top) // 2, top - 5):
        result = variable.encode(image, steps=1, max_bytes=budget)
        assert 0.9 * budget <= len(result.data) <= budget
        quality = bitstream.unpack(result.data).quality
        step = 3.0 / 2**SEARCH_STEPS
        assert len(variable.encode(image, steps=1, quality=min(4.0, quality + 4 * step)).data) > budget
    assert len(variable.encode(image, steps=1, max_bytes=10 * top).data) == top  # the highest quality
    with pytest.raises(RateTargetError, match=f"too small.*lowest quality .1. gives a file of {bottom} bytes"):
        variable.encode(image, steps=1, max_bytes=bottom - 1)


def test_bpp_target_comes_closest(variable, image):
    pixels = image.shape[-2] * image.shape[-1]
    low = variable.encode(image, steps=1, quality=1.0).bpp()
    high = variable.encode(image, steps=1, quality=4.0).bpp()
    target = (low + high) / 2
    result = variable.encode(image, steps=1, bpp=target)
    assert abs(result.bpp() - target) <= 8 * 2 / pixels + 0.02 * target
    with pytest.raises(ValueError, match="fixed rate"):
        make_codec(0).encode(image, bpp=0.5)
    with pytest.raises(ValueError, match="one of quality, bpp and max_bytes"):
        variable.encode(image, quality=2.0, bpp=0.5)


def test_model_file_round_trip_keeps_the_rate(variable, image, tmp_path):
    corrdiff.save_model(variable, tmp_path / "v.pt")
    loaded = corrdiff.load_model(tmp_path / "v.pt")
    assert loaded.quality_range == (1.0, 4.0) and loaded.fingerprint() == variable.fingerprint()
    data = variable.encode(image, steps=1, quality=1.5).data
    assert torch.equal(loaded.decompress(data), variable.decompress(data))


def test_training_draws_a_quality_per_image_and_weighs_its_rate(photos_dir):
    module = JointTraining(preset="tiny", codec={"rate": RATE}, distortion_weight=10.0, lmbda=1.0)
    with torch.no_grad():  # zero-initialised layers (the score network's condition projections) pass no gradient
        for param in module.codec.parameters():
            if not param.abs().sum():
                param.normal_(0.0, 0.05)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    torch.manual_seed(0)
    terms, inter = module.compute_terms(x)
    qualities = inter.rate.quality
    assert qualities.shape == (4,) and len(set(qualities.tolist())) == 4
    assert float(qualities.min()) >= 1.0 and float(qualities.max()) <= 4.0
    assert terms.weights["rate"] == 1.0 and terms.weights["bpp"] == 0.0  # bpp is logged, not trained
    # the rate term is lambda(q) * bpp per image: recompute it with the same draws
    torch.manual_seed(0)
    rate = module.training_rate(x)
    assert torch.equal(rate.quality, qualities)
    y_hat, likelihoods = module.codec.analyse(x, rate)
    from corrdiff.losses import bits_per_pixel_each

    expected = (module.codec.rate_control.lmbda(inter.rate) * bits_per_pixel_each(likelihoods, 32 * 32)).mean()
    assert float(terms.values["rate"].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    terms.total().backward()
    control = module.codec.rate_control
    for table in (control.log_gain, control.log_inverse_gain, *control.cond_scale, *control.cond_shift):
        assert float(table.grad.abs().sum()) > 0
    restricted = JointTraining(preset="tiny", codec={"rate": RATE}, quality_range=[2.0, 2.5])
    assert all(2.0 <= q <= 2.5 for q in restricted.training_rate(x).quality.tolist())
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=ImageDataModule(train_dirs=str(photos_dir), val_dirs=str(photos_dir),
                                                    crop_size=32, batch_size=2, num_workers=0))
    assert trainer.global_step == 2
    exported = module.export_codec()
    assert exported.config["rate"] == RATE and exported.quality_range == (1.0, 4.0)


@pytest.fixture(scope="module")
def photos_dir(tmp_path_factory, natural_images):
    from corrdiff.image_io import save_image

    folder = tmp_path_factory.mktemp("photos")
    for name, rgb in natural_images.items():
        save_image(folder / f"{name}.png", rgb)
    return folder


# --------------------------------------------------------------------------- the command line
from corrdiff.cli import main, parse_size  # noqa: E402


@pytest.mark.parametrize("text, size", [("20KB", 20000), ("20k", 20000), ("16KiB", 16384), ("1.5MB", 1_500_000),
                                         ("800", 800), ("800B", 800), (" 2 kb ", 2000)])
def test_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["20XB", "", "KB", "-5KB", "0", "1e3"])
def test_bad_sizes_are_refused(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="file size"):
        parse_size(text)


@pytest.fixture(scope="module")
def variable_file(variable, tmp_path_factory):
    path = tmp_path_factory.mktemp("variable") / "variable.pt"
    corrdiff.save_model(variable, path)
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_compress_size_quality_and_bpp_from_the_command_line(variable, variable_file, natural_images, tmp_path,
                                                             capsys):
    from corrdiff.image_io import save_image

    source = tmp_path / "chelsea.png"
    save_image(source, natural_images["chelsea"])
    low = len(variable.encode(to_tensor(natural_images["chelsea"]), steps=1, quality=1.0).data)
    code, out, _ = _run(capsys, "compress", source, "-o", tmp_path / "a.cdf", "--model", variable_file, "--steps", 1,
                        "--size", f"{low + 40}B")
    assert code == 0 and "quality" in out
    assert low <= (tmp_path / "a.cdf").stat().st_size <= low + 40
    code, out, _ = _run(capsys, "compress", source, "-o", tmp_path / "b.cdf", "--model", variable_file, "--steps", 1,
                        "--quality", 2.5)
    assert code == 0 and bitstream.unpack((tmp_path / "b.cdf").read_bytes()).quality == 2.5
    code, _, err = _run(capsys, "compress", source, "-o", tmp_path / "c.cdf", "--model", variable_file, "--steps", 1,
                        "--size", f"{low - 1}B")
    assert code != 0 and "too small for this image" in err and str(source) in err
    assert not (tmp_path / "c.cdf").exists()  # a target it cannot meet writes nothing
    code, _, err = _run(capsys, "compress", source, "-o", tmp_path / "d.cdf", "--model", variable_file,
                        "--quality", 9)
    assert code == 2 and r"[1, 4]" in err and not (tmp_path / "d.cdf").exists()
    with pytest.raises(SystemExit):
        main(["compress", str(source), "--model", str(variable_file), "--quality", "2", "--bpp", "0.1"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_fixed_rate_models_refuse_rate_options_before_any_work(model_file, natural_images, tmp_path, capsys):
    from corrdiff.image_io import save_image

    source = tmp_path / "x.png"
    save_image(source, natural_images["coffee"])
    for option, value in (("--size", "2KB"), ("--quality", "2"), ("--bpp", "0.2")):
        code, _, err = _run(capsys, "compress", source, "-o", tmp_path / "x.cdf", "--model", model_file, option, value)
        assert code == 2 and f"{option} needs a variable-rate model" in err
    assert not (tmp_path / "x.cdf").exists()


def test_help_states_the_quality_range(capsys):
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    assert "[1, 9]" in capsys.readouterr().out


@pytest.fixture(scope="module")
def rate_eval(fixed, variable, natural_images, tmp_path_factory):
    """An evaluation of a fixed-rate model and a variable-rate one at qualities 1 and 4 (e2e, JPEG)."""
    from corrdiff.evaluation import run_eval
    from corrdiff.image_io import save_image

    root = tmp_path_factory.mktemp("rate-eval")
    data = root / "images"
    data.mkdir()
    for name in ("chelsea", "coffee"):
        save_image(data / f"{name}.png", natural_images[name][:48, :64])
    summaries = run_eval(data, [fixed, variable], out=root / "out", modes="e2e", steps=1, baselines="jpeg",
                         qualities="50", metrics="psnr-rgb", rate_qualities="1,4", progress=False, workers=1,
                         log=lambda *_: None, warn=lambda *_: None)
    return root / "out", summaries


def test_eval_draws_a_curve_per_variable_rate_model(rate_eval):
    import csv
    import json

    out, summaries = rate_eval
    assert set(summaries) == {"corrdiff-e2e", "corrdiff-model1-e2e", "jpeg", "jpeg-matched"}
    assert summaries["corrdiff-e2e"]["points"] == ["model0"]  # the fixed-rate models' curve
    curve = summaries["corrdiff-model1-e2e"]
    assert curve["points"] == ["model1@q1", "model1@q4"] and curve["results"]["quality"] == [1.0, 4.0]
    assert curve["results"]["bpp"][0] < curve["results"]["bpp"][1]
    assert sorted(summaries["jpeg-matched"]["points"]) == ["model0", "model1@q1", "model1@q4"]
    rows = [r for r in csv.DictReader(open(out / "per_image.csv")) if r["method"] == "corrdiff-model1-e2e"]
    assert sorted((r["point"], r["quality"]) for r in rows) == [("model1@q1", "1")] * 2 + [("model1@q4", "4")] * 2
    index = json.loads((out / "index.json").read_text())
    assert [m["quality"] for m in index["settings"]["models"]] == [None, 1.0, 4.0]


def test_eval_curves_plot_and_compare(rate_eval, tmp_path):
    from corrdiff.plotting import bd_rate_table, expand_paths, load_results, plot_rd

    out, _ = rate_eval
    files = [load_results(p) for p in expand_paths([out / "index.json"])]
    assert plot_rd(files, tmp_path / "rd.png", ["psnr-rgb"]).exists()
    table = bd_rate_table(files, ["psnr-rgb"])
    assert "CorrDiff model1 (e2e)" in table


def test_eval_quality_is_checked_before_any_work(fixed, variable, rate_eval, tmp_path):
    from corrdiff.evaluation import run_eval

    images = rate_eval[0].parent / "images"
    for models, qualities, message in (([fixed], "1,2", "needs a variable-rate model"),
                                       ([variable], "1,9", r"--quality 9: .*\[1, 4\]"),
                                       ([variable], "1,x", "comma-separated numbers"),
                                       ([variable], "2,2", "distinct"),
                                       ([variable], "3,3.0000001", "distinct")):  # one label, q3
        with pytest.raises(ValueError, match=message):
            run_eval(images, models, out=tmp_path / "out", rate_qualities=qualities, progress=False)
        assert not (tmp_path / "out").exists()


def test_eval_quality_from_the_command_line(variable_file, model_file, rate_eval, tmp_path, capsys):
    images = rate_eval[0].parent / "images"
    common = ["eval", images, "--modes", "e2e", "--steps", 1, "--baselines", "none", "--metrics", "psnr-rgb",
              "--no-progress", "--threads", 1]
    code, out, _ = _run(capsys, *common, "--model", variable_file, "--quality", "1,2.5", "--out", tmp_path / "a")
    assert code == 0 and "variable@q2.5" in out
    assert (tmp_path / "a" / "corrdiff-variable-e2e.json").exists()
    code, _, err = _run(capsys, *common, "--model", model_file, "--quality", "1", "--out", tmp_path / "b")
    assert code == 2 and "--quality needs a variable-rate model" in err


@pytest.mark.parametrize("gamma", [None, {"granularity": "channel"}])
def test_the_header_estimate_is_the_files_size_less_its_streams(variable, image, gamma):
    """The size search counts the header of the encode's own gamma options (a channel map: 3 values a step)."""
    from corrdiff.rate_search import header_bytes
    from corrdiff.replay import Replay

    result = variable.encode(image, steps=2, quality=2.0, gamma=gamma)
    streams = sum(len(s) for s in bitstream.unpack(result.data).streams)
    h, w = image.shape[-2:]
    replay = Replay.for_encoding(variable, h, w, "corrected", 2, None, 0, variable.default_quality)
    assert header_bytes(variable, replay, gamma) == len(result.data) - streams
