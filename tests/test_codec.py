"""CorrDiffCodec compress/decompress contracts on the tiny preset.

The central promise (DESIGN.md section 1): the decoder, given the same model, seed, steps and
gammas, reproduces the encoder's reconstruction *exactly* on the same machine.
"""

from __future__ import annotations

import io

import pytest
import torch

import corrdiff
from corrdiff import bitstream
from corrdiff.errors import BitstreamError, CorrDiffError, ModelLoadError, ModelMismatchError
from corrdiff.model_io import load_codec_state, load_model, save_model

from conftest import make_codec, random_image

RANDOM_NAMES = ["random67x131", "random32x48", "random17x33"]


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", RANDOM_NAMES + ["chelsea"])
def test_round_trip_is_exact_at_odd_sizes(tiny_codec, test_images, encoded, name):
    image = test_images[name]
    result = encoded(name)
    h, w = image.shape[-2:]
    decoded = tiny_codec.decompress(result.data)
    assert decoded.shape == (1, 3, h, w)
    assert decoded.dtype == torch.float32
    assert 0 <= decoded.min() and decoded.max() <= 1
    assert torch.equal(decoded, result.reconstruction)
    header = bitstream.unpack(result.data)
    assert (header.height, header.width) == (h, w)
    assert result.bpp() == pytest.approx(8 * len(result.data) / (h * w))
    assert result.num_bytes == len(result.data)


def test_encoding_and_decoding_are_repeatable(tiny_codec, test_images, encoded):
    result = encoded("random17x33")
    first = tiny_codec.decompress(result.data)
    assert torch.equal(tiny_codec.decompress(result.data), first)
    again = tiny_codec.encode(test_images["random17x33"])
    assert again.data == result.data
    assert torch.equal(again.reconstruction, result.reconstruction)


@pytest.mark.parametrize("hw", [(16, 16), (1, 1), (1, 40), (33, 2)])
def test_round_trip_tiny_and_degenerate_sizes(tiny_codec, hw):
    image = random_image(*hw, seed=7)
    result = tiny_codec.encode(image, steps=3)
    decoded = tiny_codec.decompress(result.data)
    assert decoded.shape == (1, 3, *hw)
    assert torch.equal(decoded, result.reconstruction)


@pytest.mark.parametrize("seed", [1, 2**31, 2**32 - 1])
def test_round_trip_is_exact_for_seeds_across_their_range(tiny_codec, test_images, seed):
    result = tiny_codec.encode(test_images["random17x33"], steps=2, seed=seed)
    assert bitstream.unpack(result.data).seed == seed
    assert torch.equal(tiny_codec.decompress(result.data), result.reconstruction)


def test_read_returns_the_encoders_latent(tiny_codec, encoded):
    result = encoded("random67x131")
    header, y_hat = tiny_codec.read(result.data)
    assert header.mode == "corrected"
    assert y_hat.shape == result.y_hat.shape == (1, 32, 5, 9)  # ceil(67/16), ceil(131/16)
    assert torch.equal(y_hat, result.y_hat)
    assert torch.isfinite(y_hat).all()


def test_three_dimensional_image_is_accepted(tiny_codec):
    image = random_image(16, 24, seed=3)
    assert tiny_codec.compress(image[0], steps=2) == tiny_codec.compress(image, steps=2)


# --------------------------------------------------------------------------- gammas and rate
def test_gamma_count_and_payload(tiny_codec, test_images, encoded):
    result = encoded("random32x48")
    header = bitstream.unpack(result.data)
    steps = tiny_codec.config["steps"]
    assert header.steps == steps == 8
    assert header.granularities == ("scalar",) * steps
    assert len(header.gammas) == steps
    assert result.gammas.shape == (steps, 1)
    assert torch.equal(result.gammas.flatten(), torch.tensor(header.gammas))
    assert torch.equal(result.gammas.half().float(), result.gammas)  # float16-representable

    image = test_images["random32x48"]
    four = tiny_codec.encode(image, steps=4)
    assert len(bitstream.unpack(four.data).gammas) == 4
    # same latent, same streams: the files differ by exactly 4 gammas of 16 bits and their code bytes
    assert len(result.data) - len(four.data) == 4 * (2 + 1)
    assert bitstream.unpack(four.data).streams == header.streams


def test_bpp_counts_the_whole_file_header_included(tiny_codec, encoded):
    result = encoded("random17x33")
    header = bitstream.unpack(result.data)
    payload = sum(len(s) for s in header.streams)
    assert len(result.data) > payload + 2 * len(header.gammas)
    assert result.bpp() == 8.0 * len(result.data) / (17 * 33)


# --------------------------------------------------------------------------- thread counts
def test_entropy_decoding_is_bit_exact_across_thread_counts(tiny_codec, test_images, num_threads):
    image = test_images["random67x131"]
    num_threads(1)
    result = tiny_codec.encode(image, steps=2)
    for threads in (2, 1, 2):
        num_threads(threads)
        _, y_hat = tiny_codec.read(result.data)
        assert torch.equal(y_hat, result.y_hat), f"y_hat differs with {threads} threads"


# --------------------------------------------------------------------------- modes
@pytest.mark.parametrize("mode", ["corrected", "diffusion", "e2e"])
def test_decode_modes_give_images_of_the_right_shape(tiny_codec, encoded, mode):
    result = encoded("random17x33")
    decoded = tiny_codec.decompress(result.data, mode=mode)
    assert decoded.shape == (1, 3, 17, 33)
    assert 0 <= decoded.min() and decoded.max() <= 1


def test_corrected_diffusion_and_e2e_decodes_differ(tiny_codec, encoded):
    data = encoded("random32x48").data
    corrected = tiny_codec.decompress(data)
    diffusion = tiny_codec.decompress(data, mode="diffusion")
    e2e = tiny_codec.decompress(data, mode="e2e")
    assert not torch.equal(corrected, diffusion)
    assert not torch.equal(corrected, e2e)
    assert not torch.equal(diffusion, e2e)


def test_e2e_decode_is_the_decoder_of_the_latent(tiny_codec, encoded):
    result = encoded("random32x48")
    with torch.no_grad():
        x0_e = tiny_codec.decode_e2e(result.y_hat).clamp(-1, 1)
    expected = ((x0_e[..., :32, :48] + 1) / 2).clamp(0, 1)
    assert torch.equal(tiny_codec.decompress(result.data, mode="e2e"), expected)


def test_gamma_scale_zero_is_plain_diffusion(tiny_codec, encoded):
    data = encoded("random32x48").data
    diffusion = tiny_codec.decompress(data, mode="diffusion")
    assert torch.equal(tiny_codec.decompress(data, gamma_scale=0.0), diffusion)
    assert torch.equal(tiny_codec.decompress(data, gamma_scale=1.0), encoded("random32x48").reconstruction)
    half = tiny_codec.decompress(data, gamma_scale=0.5)
    assert not torch.equal(half, diffusion) and not torch.equal(half, encoded("random32x48").reconstruction)


@pytest.mark.parametrize("mode", ["diffusion", "e2e"])
def test_files_encoded_in_other_modes_round_trip(tiny_codec, test_images, mode):
    image = test_images["random17x33"]
    result = tiny_codec.encode(image, mode=mode)
    header = bitstream.unpack(result.data)
    assert header.mode == mode
    assert header.gammas == () and result.gammas.numel() == 0
    assert header.steps == (0 if mode == "e2e" else 8)
    assert torch.equal(tiny_codec.decompress(result.data), result.reconstruction)
    with pytest.raises(BitstreamError, match="no gammas"):
        tiny_codec.decompress(result.data, mode="corrected")


def test_diffusion_mode_file_equals_diffusion_decode_of_corrected_file(tiny_codec, test_images, encoded):
    image = test_images["random17x33"]
    diffusion_file = tiny_codec.encode(image, mode="diffusion")
    assert torch.equal(diffusion_file.reconstruction, tiny_codec.decompress(encoded("random17x33").data, mode="diffusion"))
    # and the two files differ by exactly the gamma payload
    assert len(encoded("random17x33").data) - len(diffusion_file.data) == 8 * (1 + 2)  # a code byte and a float16 gamma per step


def test_e2e_file_decoded_as_diffusion_is_a_documented_error(tiny_codec, test_images):
    data = tiny_codec.compress(test_images["random17x33"], mode="e2e")
    with pytest.raises(CorrDiffError):
        tiny_codec.decompress(data, mode="diffusion")


def test_bad_mode_arguments(tiny_codec, test_images, encoded):
    with pytest.raises(ValueError, match="mode"):
        tiny_codec.encode(test_images["random17x33"], mode="lossless")
    with pytest.raises(ValueError, match="mode"):
        tiny_codec.decompress(encoded("random17x33").data, mode="lossless")


# --------------------------------------------------------------------------- seeds and samplers
def test_seed_is_stored_and_changes_the_sample(tiny_codec, test_images, encoded):
    image = test_images["random32x48"]
    other = tiny_codec.encode(image, seed=12345)
    assert bitstream.unpack(other.data).seed == 12345
    assert not torch.equal(other.reconstruction, encoded("random32x48").reconstruction)
    assert torch.equal(tiny_codec.decompress(other.data), other.reconstruction)


@pytest.mark.parametrize(
    "sampler, eta",
    [({"name": "ddpm"}, 1.0), ({"name": "ddim", "eta": 0.5}, 0.5), ({"name": "ddim", "eta": 1.0}, 1.0)],
    ids=["ddpm", "ddim-eta0.5", "ddim-eta1"],
)
def test_stochastic_samplers_round_trip_exactly(tiny_codec, test_images, sampler, eta):
    image = test_images["random32x48"]
    result = tiny_codec.encode(image, sampler=sampler, seed=3)
    header = bitstream.unpack(result.data)
    assert (header.sampler, header.sampler_params) == (sampler["name"], (eta,))
    assert torch.equal(tiny_codec.decompress(result.data), result.reconstruction)
    # the per-step noise really comes from the seed: another seed, another sample
    assert not torch.equal(tiny_codec.encode(image, sampler=sampler, seed=4).reconstruction, result.reconstruction)


def test_sampler_spec_with_unrecorded_options_is_refused(tiny_codec, test_images):
    with pytest.raises(ValueError, match=r"takes only \['eta'\] \(what the file records\), got \['clip'\]"):
        tiny_codec.encode(test_images["random17x33"], sampler={"name": "ddim", "eta": 0.0, "clip": True})


def test_bad_steps_and_unused_perceptual_cost_no_work(tiny_codec, test_images, monkeypatch):
    """steps = 0 is refused before the latent is coded; a mode without gammas never builds the gamma solver's
    perceptual distance (LPIPS weights may be missing where diffusion-only files are made)."""
    image = test_images["random17x33"]

    def no_work(*args, **kwargs):
        raise AssertionError("work was done before the options were checked")

    with monkeypatch.context() as mp:
        mp.setattr(tiny_codec.prior, "compress", no_work)
        for mode in ("corrected", "diffusion"):
            with pytest.raises(ValueError, match="steps must lie in"):
                tiny_codec.encode(image, steps=0, mode=mode)
    monkeypatch.setattr(tiny_codec.perceptual_distances, "get", no_work)
    lpips = {"solver": "gradient", "rho": 0.5, "perceptual": {"name": "lpips", "net": "alex"}}
    for mode in ("diffusion", "e2e"):
        result = tiny_codec.encode(image, steps=1, mode=mode, gamma=lpips)
        assert torch.equal(tiny_codec.decompress(result.data), result.reconstruction)


def test_encoder_samples_with_the_sampler_parameters_the_file_records(tiny_codec, test_images):
    """eta = 0.1 is not a float32: the file records float32(0.1) and the encoder samples with that value, so
    the decoder reproduces its reconstruction bit for bit."""
    result = tiny_codec.encode(test_images["random17x33"], steps=2, sampler={"name": "ddim", "eta": 0.1})
    assert bitstream.unpack(result.data).sampler_params == (bitstream.to_float32(0.1),) != (0.1,)
    assert torch.equal(tiny_codec.decompress(result.data), result.reconstruction)


def test_file_with_inconsistent_sampler_parameters_is_a_bitstream_error(tiny_codec, encoded):
    import dataclasses

    header = bitstream.unpack(encoded("random17x33").data)
    forged = bitstream.pack(dataclasses.replace(header, sampler="ddpm", sampler_params=(0.5,)))
    with pytest.raises(BitstreamError):
        tiny_codec.decompress(forged)


def test_file_needing_an_unregistered_sampler_is_refused(tiny_codec, encoded):
    import dataclasses

    header = bitstream.unpack(encoded("random17x33").data)
    forged = bitstream.pack(dataclasses.replace(header, sampler="heun"))
    with pytest.raises(BitstreamError, match="heun"):
        tiny_codec.decompress(forged)


# --------------------------------------------------------------------------- components
@pytest.mark.parametrize("prior", ["mean_scale_hyperprior", "factorized"])
@pytest.mark.parametrize("transform", ["gdn", "residual"])
def test_round_trip_over_priors_and_transforms(prior, transform):
    prior_spec = {"name": prior, "hyper_channels": 16} if prior == "mean_scale_hyperprior" else {"name": prior}
    codec = make_codec(
        5, encoder={"name": transform, "channels": 16}, decoder={"name": transform, "channels": 16}, prior=prior_spec,
        steps=4,
    )
    assert len(codec.prior.streams) == (2 if prior == "mean_scale_hyperprior" else 1)
    image = random_image(17, 40, seed=11)
    result = codec.encode(image)
    header = bitstream.unpack(result.data)
    assert len(header.streams) == len(codec.prior.streams)
    assert len(header.gammas) == 4
    decoded = codec.decompress(result.data)
    assert decoded.shape == (1, 3, 17, 40)
    assert torch.equal(decoded, result.reconstruction)
    assert torch.equal(codec.read(result.data)[1], result.y_hat)


def test_channel_granularity_sends_three_gammas_per_step(tiny_codec, test_images, encoded):
    codec = make_codec(0, correction={"granularity": "channel"})
    load_codec_state(codec, tiny_codec.state_dict())
    assert [g.spec for g in codec.correction.granularities] == ["channel"]
    image = test_images["random32x48"]
    result = codec.encode(image)
    header = bitstream.unpack(result.data)
    assert header.granularities == ("channel",) * 8
    assert len(header.gammas) == 8 * 3
    assert result.gammas.shape == (8, 3)
    assert torch.equal(codec.decompress(result.data), result.reconstruction)
    scalar = encoded("random32x48")
    assert len(result.data) - len(scalar.data) == 8 * 2 * 2  # two more 16-bit gammas per step
    # per-channel gammas are at least as good as one gamma for the whole image (final step is MSE-optimal)
    mse = lambda r: ((r - image) ** 2).mean().item()  # noqa: E731
    assert mse(result.reconstruction) <= mse(scalar.reconstruction) * 1.05
    # the config differs, so the fingerprints differ: the files are not interchangeable
    with pytest.raises(ModelMismatchError):
        tiny_codec.decompress(result.data)


def test_gradient_solver_round_trips(tiny_codec, test_images):
    codec = make_codec(0, correction={"solver": "gradient", "iterations": 5}, steps=3)
    load_codec_state(codec, tiny_codec.state_dict())
    image = test_images["random17x33"]
    result = codec.encode(image)
    assert torch.equal(codec.decompress(result.data), result.reconstruction)
    closed = tiny_codec.encode(image, steps=3)
    # the MSE objective has the same minimiser: gammas agree to float16 precision (a few ulps)
    assert torch.allclose(result.gammas, closed.gammas, rtol=0, atol=1e-2)


# --------------------------------------------------------------------------- wrong model, damaged files
def test_wrong_model_is_a_model_mismatch(tiny_codec, encoded):
    other = make_codec(1)
    assert other.fingerprint() != tiny_codec.fingerprint()
    with pytest.raises(ModelMismatchError, match="--model") as info:
        other.decompress(encoded("random17x33").data)
    assert isinstance(info.value, BitstreamError)
    assert tiny_codec.fingerprint().hex() in str(info.value)


def test_a_retired_packaged_models_file_says_where_that_model_is(tiny_codec, encoded, monkeypatch):
    # the tiny model stands for an earlier version of 'default' (corrdiff/model_io/retired.py)
    retired = corrdiff.model_io.RetiredModel("default", "f" * 40, "corrdiff/assets/default.pt")
    monkeypatch.setitem(corrdiff.model_io.RETIRED, tiny_codec.fingerprint().hex(), retired)
    with pytest.raises(ModelMismatchError) as info:
        make_codec(1).decompress(encoded("random17x33").data)
    assert str(info.value).endswith("; it is an earlier version of the packaged model 'default': its file is in the "
                                    "repository's history: `git show ffffffffffff:corrdiff/assets/default.pt > "
                                    "default-fffffff.pt` in a clone of corrdiff, then pass --model default-fffffff.pt")


def test_fingerprint_is_deterministic_and_tracks_weights(tiny_codec):
    fp = tiny_codec.fingerprint()
    assert len(fp) == bitstream.FINGERPRINT_BYTES
    assert make_codec(0).fingerprint() == fp
    codec = make_codec(0)
    with torch.no_grad():
        next(codec.score_net.parameters()).view(-1)[0] += 1e-6
    assert codec.fingerprint() != fp


def test_corrupted_and_truncated_files_raise_bitstream_error(tiny_codec, encoded):
    data = encoded("random17x33").data
    for n in (0, 5, len(data) // 2, len(data) - 1):
        with pytest.raises(BitstreamError):
            tiny_codec.decompress(data[:n])
    for i in range(0, len(data), 7):
        corrupted = bytearray(data)
        corrupted[i] ^= 0x41
        with pytest.raises(BitstreamError):
            tiny_codec.decompress(bytes(corrupted))


def test_stream_count_mismatch_is_refused(tiny_codec, encoded):
    import dataclasses

    header = bitstream.unpack(encoded("random17x33").data)
    forged = bitstream.pack(dataclasses.replace(header, streams=header.streams[:1]))
    with pytest.raises(BitstreamError, match="streams"):
        tiny_codec.decompress(forged)


def test_encoder_input_checks(tiny_codec):
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        tiny_codec.encode(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        tiny_codec.encode(torch.rand(2, 3, 16, 16))
    bad = torch.rand(1, 3, 16, 16)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tiny_codec.encode(bad)


def test_compress_without_entropy_tables_says_what_to_do():
    torch.manual_seed(0)
    from corrdiff.presets import preset

    codec = corrdiff.CorrDiffCodec(**preset("tiny")).eval()
    with pytest.raises(RuntimeError, match="update"):
        codec.compress(random_image(16, 16))


# --------------------------------------------------------------------------- model files
def test_save_load_round_trip_keeps_fingerprint_and_decodes_identically(tiny_codec, model_file, encoded):
    loaded = load_model(model_file)
    assert not loaded.training
    assert loaded.config == tiny_codec.config
    assert loaded.fingerprint() == tiny_codec.fingerprint()
    assert loaded.metadata == {"purpose": "tests"}
    result = encoded("random17x33")
    assert torch.equal(loaded.decompress(result.data), result.reconstruction)


class Evil:
    """A custom class: torch.save pickles it; weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_load_model_refuses_pickled_payload(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "corrdiff-model", "format_version": 1, "config": "{}", "state_dict": {}, "x": Evil()}, path)
    with pytest.raises(ModelLoadError, match="pickled"):
        load_model(path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_load_model_refuses_missing_entropy_tables(tiny_codec, tmp_path):
    from corrdiff.presets import preset

    torch.manual_seed(0)
    fresh = corrdiff.CorrDiffCodec(**preset("tiny"))  # update() never called: empty CDF tables
    assert not fresh.prior.entropy_tables_ready()
    payload = {
        "format": "corrdiff-model", "format_version": 1,
        "config": __import__("json").dumps(fresh.config, sort_keys=True),
        "state_dict": fresh.state_dict(), "metadata": "{}",
    }
    path = tmp_path / "no_tables.pt"
    torch.save(payload, path)
    with pytest.raises(ModelLoadError, match="entropy tables"):
        load_model(path)


def test_load_model_refuses_dropped_entropy_buffers(model_file, tmp_path):
    payload = torch.load(model_file, weights_only=True)
    payload["state_dict"] = {k: v for k, v in payload["state_dict"].items() if "_quantized_cdf" not in k}
    path = tmp_path / "dropped.pt"
    torch.save(payload, path)
    with pytest.raises(ModelLoadError, match="missing .*_quantized_cdf"):
        load_model(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a model file"),
        (b"not a torch file at all", "not a model file"),
        ("plain_dict", "not a corrdiff model file"),
        ("future_version", "version 99"),
        ("bad_config", "config is invalid"),
    ],
)
def test_load_model_refuses_other_files(model_file, tmp_path, content, message):
    path = tmp_path / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        payload = torch.load(model_file, weights_only=True)
        if content == "plain_dict":
            payload = {"state_dict": payload["state_dict"]}
        elif content == "future_version":
            payload["format_version"] = 99
        else:
            payload["config"] = '{"no_such_argument": 1}'
        torch.save(payload, path)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_load_model_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model file"):
        load_model(tmp_path / "absent.pt")


def test_module_prefixed_state_dict_loads(tiny_codec):
    prefixed = {f"module.{k}": v for k, v in tiny_codec.state_dict().items()}
    codec = make_codec(3)
    assert codec.fingerprint() != tiny_codec.fingerprint()
    load_codec_state(codec, prefixed)
    assert codec.fingerprint() == tiny_codec.fingerprint()
    # wrong keys are named in the error
    bad = dict(prefixed)
    bad["module.unexpected.weight"] = torch.zeros(1)
    del bad[next(iter(prefixed))]
    with pytest.raises(ModelLoadError, match="unexpected.weight"):
        load_codec_state(make_codec(3), bad)


def test_save_model_is_loadable_with_weights_only(model_file):
    payload = torch.load(io.BytesIO(model_file.read_bytes()), weights_only=True)
    assert payload["format"] == "corrdiff-model" and payload["format_version"] == 1
    assert isinstance(payload["config"], str)
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())
    assert not list(model_file.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_save_model_builds_missing_tables(tmp_path, tiny_codec):
    from corrdiff.presets import preset

    torch.manual_seed(0)
    fresh = corrdiff.CorrDiffCodec(**preset("tiny"))
    save_model(fresh, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.prior.entropy_tables_ready()
    assert loaded.fingerprint() == tiny_codec.fingerprint()


def test_half_precision_model_file_is_smaller_and_decodes_exactly(tiny_codec, tmp_path):
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    corrdiff.save_model(tiny_codec, full)
    corrdiff.save_model(tiny_codec, half, half=True)
    assert half.stat().st_size < 0.8 * full.stat().st_size  # the tiny preset is mostly entropy model
    loaded = corrdiff.load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert corrdiff.load_model(half).fingerprint() == loaded.fingerprint()
    for key, value in loaded.state_dict().items():
        if key.startswith("prior."):
            assert torch.equal(value, tiny_codec.state_dict()[key]), f"{key}: entropy model must stay exact"
    image = torch.rand(1, 3, 24, 40)
    result = loaded.encode(image)
    assert torch.equal(loaded.decompress(result.data), result.reconstruction)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_load_model_refuses_non_finite_weights(model_file, tmp_path, value):
    """A diverged run's export (NaN in h_s crashed the entropy coder, inf in h_a hung it; issue 16)."""
    payload = torch.load(model_file, weights_only=True)
    key = next(k for k in payload["state_dict"] if k.startswith("prior.") and k.endswith("weight"))
    payload["state_dict"][key] = payload["state_dict"][key].clone()
    payload["state_dict"][key].view(-1)[0] = value
    path = tmp_path / "diverged.pt"
    torch.save(payload, path)
    with pytest.raises(ModelLoadError, match=f"NaN or infinite values: .*{key}"):
        load_model(path)


def test_the_model_alone_runs_a_training_forward_and_shares_the_codecs_weights(tiny_codec):
    """CorrDiffModel (corrdiff/model.py) is the network without the coding pipelines: same state_dict keys and
    fingerprint as the codec built from the same config, and ``model(x)`` gives what a training step needs."""
    from corrdiff.model import CorrDiffModel, ModelOutput

    model = CorrDiffModel(**tiny_codec.config)
    assert list(model.state_dict()) == list(tiny_codec.state_dict())
    load_codec_state(model, tiny_codec.state_dict())
    assert model.fingerprint() == tiny_codec.fingerprint()
    x = random_image(32, 48) * 2 - 1
    out = model.eval()(x)
    assert isinstance(out, ModelOutput)
    y_hat, likelihoods = tiny_codec.analyse(x)
    assert torch.equal(out.y_hat, y_hat)
    assert out.likelihoods.keys() == likelihoods.keys()
    assert torch.equal(out.x0_e, tiny_codec.decode_e2e(y_hat))
    assert all(torch.equal(a, b) for a, b in zip(out.cond, tiny_codec.condition(y_hat), strict=True))


def test_under_prefix_keeps_the_entries_under_a_prefix_without_it():
    from corrdiff.model_io import under_prefix

    state = {"codec.encoder.w": 1, "ema.module.x": 2, "ema.n_averaged": 3, "codecs.y": 4}
    assert under_prefix(state, "codec.") == {"encoder.w": 1}
    assert under_prefix(state, "ema.module.") == {"x": 2}
    assert under_prefix(state, "missing.") == {}
