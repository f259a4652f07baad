"""The AVIF base codec (docs/avif_base.md): its bytes, its files, its decodes and its training phase."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import AvifImagePlugin, Image

import corrdiff
from corrdiff import avif_container, bitstream
from corrdiff.errors import BitstreamError
from corrdiff.modules.avif_base import AvifBase, decode_avif, from_uint8, to_uint8
from corrdiff.presets import preset

from conftest import random_image, to_tensor


def make_avif_codec(seed: int = 0, **overrides) -> corrdiff.CorrDiffCodec:
    """An ``avif_tiny`` codec with seeded random weights whose score network's output layer is not zero (so that
    x0_d differs from x0_e and the gammas mean something)."""
    config = preset("avif_tiny")
    config.update(overrides)
    torch.manual_seed(seed)
    codec = corrdiff.CorrDiffCodec(**config)
    with torch.no_grad():
        codec.score_net.out[-1].weight.normal_(0, 0.02)
    return codec.eval()


@pytest.fixture(scope="module")
def avif_codec():
    return make_avif_codec()


def avif_file(array: np.ndarray, quality: int = 30, subsampling: str = "4:4:4", **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "AVIF", quality=quality, subsampling=subsampling, speed=8, max_threads=1,
                                **options)
    return out.getvalue()


# ------------------------------------------------------------------------------------------ the bytes
@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (67, 131)])
def test_the_av1_data_alone_rebuilds_the_avif_file_byte_for_byte(natural_images, subsampling, shape):
    array = np.ascontiguousarray(np.resize(natural_images["chelsea"], (*shape, 3)))
    avif = avif_file(array, subsampling=subsampling)
    stream = avif_container.pack(avif, shape[1], shape[0])
    assert stream[0] == avif_container.PAYLOAD
    assert len(stream) == len(avif) - avif_container.HEADER_BYTES - 8 + 3  # 272 bytes fewer
    assert avif_container.unpack(stream, shape[1], shape[0]) == avif
    assert avif_container.payload_size(stream[3:]) == (shape[1], shape[0])


def test_an_avif_file_the_template_does_not_fit_is_carried_whole(natural_images):
    array = natural_images["coffee"]
    avif = avif_file(array, icc_profile=b"\0" * 200)  # an ICC profile adds a colr box the template lacks
    stream = avif_container.pack(avif, array.shape[1], array.shape[0])
    assert stream[0] == avif_container.WHOLE and stream[1:] == avif
    assert avif_container.unpack(stream, array.shape[1], array.shape[0]) == avif


@pytest.mark.parametrize("kind", [avif_container.PAYLOAD, avif_container.WHOLE])
def test_a_stream_of_another_size_than_the_header_is_refused_before_decoding(natural_images, monkeypatch, kind):
    array = natural_images["coffee"]
    avif = avif_file(array)
    stream = avif_container.pack(avif, array.shape[1], array.shape[0])
    if kind == avif_container.WHOLE:
        stream = bytes([avif_container.WHOLE]) + avif
    calls = []
    monkeypatch.setattr("corrdiff.modules.avif_base.decode_avif", lambda *a: calls.append(a))
    with pytest.raises(BitstreamError, match="header says 73x48"):
        AvifBase().read([stream], 48, 73)
    assert not calls


@pytest.mark.parametrize("stream", [b"", b"\x07abc", b"\x01", b"\x01\x81\x00", b"\x01\x81\x00\x0a\x0b\x00",
                                    b"\x00", b"\x00" + b"\x00\x00\x00\x07ftyp"])
def test_malformed_base_streams_are_refused_with_a_bitstream_error(stream):
    with pytest.raises(BitstreamError):
        AvifBase().read([stream], 8, 8)


def test_a_fuzzed_base_stream_is_refused_or_decoded_never_a_crash(natural_images):
    array = natural_images["astronaut"]
    base = AvifBase()
    streams, _ = base.code(from_uint8(array), 20)
    stream = streams[0]
    rng = random.Random(0)
    refused = 0
    for _ in range(60):
        damaged = bytearray(stream)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(damaged))
            damaged[position] = rng.randrange(256)
        if rng.random() < 0.3:
            damaged = damaged[: rng.randrange(1, len(damaged))]
        try:
            x0_e = base.read([bytes(damaged)], *array.shape[:2])
        except BitstreamError:
            refused += 1
            continue
        assert x0_e.shape == (1, 3, *array.shape[:2]) and bool(torch.isfinite(x0_e).all())
    assert refused > 0


def test_the_avif_decode_does_not_depend_on_the_decoders_thread_count(natural_images, monkeypatch):
    array = np.ascontiguousarray(np.concatenate([natural_images["chelsea"]] * 4, axis=1))
    avif = avif_file(array, quality=10)
    decodes = []
    for threads in (1, 2, 8):
        monkeypatch.setattr(AvifImagePlugin, "_get_default_max_threads", lambda threads=threads: threads)
        decodes.append(decode_avif(avif, array.shape[1], array.shape[0]))
    assert all(np.array_equal(decodes[0], d) for d in decodes[1:])


def test_eight_bit_images_survive_the_conversion_to_the_model_range_exactly():
    array = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    assert np.array_equal(to_uint8(from_uint8(array)), array)


# ------------------------------------------------------------------------------------------ the codec
def test_an_avif_model_has_no_learned_base_and_its_config_names_the_base(avif_codec):
    assert avif_codec.encoder is None and avif_codec.prior is None and avif_codec.decoder is None
    assert avif_codec.config["base"]["name"] == "avif"
    assert "latent_channels" not in avif_codec.config
    assert avif_codec.quality_range == (0.0, 90.0)
    assert avif_codec.stream_names == ("avif",)


@pytest.mark.parametrize("mode", ["corrected", "diffusion", "e2e"])
def test_avif_model_files_decode_to_the_encoders_reconstruction_bit_for_bit(avif_codec, test_images, mode):
    for name in ("random67x131", "chelsea", "random17x33"):
        result = avif_codec.encode(test_images[name], quality=25, steps=2, mode=mode)
        assert torch.equal(avif_codec.decompress(result.data), result.reconstruction), name
        assert bitstream.unpack(result.data).quality == 25.0


def test_the_end_to_end_decode_of_an_avif_model_is_the_avif_decode(avif_codec, natural_images):
    array = natural_images["chelsea"]
    result = avif_codec.encode(array, quality=30, mode="e2e")
    avif = AvifBase().encode_array(array, 30)
    direct = np.asarray(Image.open(io.BytesIO(avif)).convert("RGB"))
    assert np.array_equal((result.reconstruction[0] * 255).round().byte().permute(1, 2, 0).numpy(), direct)
    parsed = bitstream.unpack(result.data)
    assert len(result.data) < len(avif)  # the AVIF boxes are rebuilt, not sent
    assert avif_container.unpack(parsed.streams[0], array.shape[1], array.shape[0]) == avif


def test_the_corrected_decode_is_at_least_as_close_as_the_avif_decode(avif_codec, natural_images):
    """With the MSE gamma of the last step, x0_c can always fall back on x0_e (gamma = 1): eq. (5)."""
    x = to_tensor(natural_images["coffee"])
    corrected = avif_codec.encode(x, quality=10, steps=2)
    e2e = avif_codec.encode(x, quality=10, mode="e2e")
    mse = lambda r: float((r.reconstruction - x).pow(2).mean())  # noqa: E731
    assert mse(corrected) <= mse(e2e) * 1.001
    assert corrected.gammas.abs().sum() > 0


def test_qualities_are_avifs_integers_within_the_models_range(avif_codec, test_images):
    image = test_images["random32x48"]
    result = avif_codec.encode(image, quality=24.6, mode="e2e")
    assert bitstream.unpack(result.data).quality == 25.0
    assert result.data == avif_codec.encode(image, quality=25, mode="e2e").data
    for bad in (-1, 90.5, float("nan")):
        with pytest.raises(ValueError, match="quality must be in"):
            avif_codec.encode(image, quality=bad)
    sizes = [len(avif_codec.encode(image, quality=q, mode="e2e").data) for q in (0, 45, 90)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_a_size_budget_picks_the_largest_avif_quality_that_fits(avif_codec, natural_images):
    image = natural_images["chelsea"]
    sizes = {q: len(avif_codec.encode(image, quality=q, steps=1).data) for q in range(0, 91, 10)}
    budget = (sizes[40] + sizes[50]) // 2
    result = avif_codec.encode(image, max_bytes=budget, steps=1)
    quality = bitstream.unpack(result.data).quality
    assert len(result.data) <= budget and 40 <= quality < 50
    assert len(avif_codec.encode(image, quality=quality + 1, steps=1).data) > budget


def test_a_file_of_an_avif_model_is_refused_by_another_model(avif_codec, tiny_codec, test_images):
    data = avif_codec.compress(test_images["random32x48"], quality=20, steps=1)
    with pytest.raises(corrdiff.ModelMismatchError):
        tiny_codec.decompress(data)
    with pytest.raises(corrdiff.ModelMismatchError):
        make_avif_codec(seed=1).decompress(data)


def test_an_avif_model_saves_and_loads_with_its_fingerprint(avif_codec, tmp_path, test_images):
    path = tmp_path / "avif.pt"
    corrdiff.save_model(avif_codec, path)
    loaded = corrdiff.load_model(path)
    assert loaded.fingerprint() == avif_codec.fingerprint()
    data = avif_codec.compress(test_images["chelsea"], quality=40, steps=2)
    assert torch.equal(loaded.decompress(data), avif_codec.decompress(data))


def test_a_base_and_a_rate_entry_cannot_be_combined():
    config = preset("avif_tiny")
    with pytest.raises(ValueError, match="qualities from the base"):
        corrdiff.CorrDiffCodec(**config, rate={"lambdas": [2.0, 1.0]})


# ------------------------------------------------------------------------------------------ training
def write_pairs(folder, crops: int = 6, size: int = 32, qualities: int = 2) -> None:
    base = AvifBase()
    xs, decodes, quality = [], [], []
    for i in range(crops):
        x = random_image(size, size, seed=i)[0]
        row, qs = [], []
        for k in range(qualities):
            q = 10 + 30 * k
            _, x0_e = base.code(x[None] * 2 - 1, q)
            row.append(torch.from_numpy(to_uint8(x0_e)).permute(2, 0, 1))
            qs.append(q)
        xs.append((x * 255).round().to(torch.uint8))
        decodes.append(torch.stack(row))
        quality.append(qs)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"x": torch.stack(xs), "x0_e": torch.stack(decodes), "quality": torch.tensor(quality, dtype=torch.int16)},
               folder / "shard-000.pt")


def test_base_score_training_steps_validates_and_exports_an_avif_model(tmp_path):
    from lightning.pytorch import Trainer

    from corrdiff.training import BaseScoreTraining, PairDataModule

    write_pairs(tmp_path / "pairs")
    data = PairDataModule(str(tmp_path / "pairs"), crop_size=16, val_crop_size=32, batch_size=2, val_crops=2)
    module = BaseScoreTraining(preset="avif_tiny", lr=1e-3, val_compress_images=1)
    before = {k: v.clone() for k, v in module.codec.conditioner.state_dict().items()}
    trainer = Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                      val_check_interval=3, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 3
    assert any(not torch.equal(before[k], v) for k, v in module.codec.conditioner.state_dict().items())
    metrics = trainer.callback_metrics
    assert {"val/psnr", "val/psnr_base", "val/diffusion_loss"} <= set(metrics)
    codec = module.export_codec()
    image = random_image(24, 40, seed=9)
    result = codec.encode(image, quality=30, steps=1)
    assert torch.equal(codec.decompress(result.data), result.reconstruction)


def test_base_score_training_refuses_a_learned_base_model():
    from corrdiff.training import BaseScoreTraining

    with pytest.raises(ValueError, match="base codec"):
        BaseScoreTraining(preset="tiny")


def test_pair_windows_cut_x_and_its_decode_alike(tmp_path):
    from corrdiff.training.pairs import PairCrops, load_shards

    write_pairs(tmp_path, crops=2, size=32)
    pairs = load_shards(tmp_path)
    item = PairCrops(pairs, range(2), 32, train=False)[1]
    assert torch.equal(item["x"], pairs["x"][1].float() / 127.5 - 1)
    assert torch.equal(item["x0_e"], pairs["x0_e"][1, 0].float() / 127.5 - 1)
    torch.manual_seed(0)
    window = PairCrops(pairs, range(2), 16, train=True)[3]
    assert window["x"].shape == (3, 16, 16) and window["quality"] == 40
    # the same window of both: x and x0_e stay close (an AVIF decode of the same pixels)
    assert float((window["x"] - window["x0_e"]).abs().mean()) < 0.2


# ------------------------------------------------------------------------------------------ plain AVIF files
def test_a_plain_avif_file_decodes_with_diffusion_drawn_over_its_avif_decode(avif_codec, natural_images):
    array = natural_images["chelsea"]
    avif = avif_file(array, quality=20, subsampling="4:2:0")
    avif_decode = to_tensor(np.asarray(Image.open(io.BytesIO(avif)).convert("RGB")))
    assert torch.allclose(avif_codec.decompress_avif(avif, strength=0.0, steps=2), avif_decode, atol=1e-6)
    full = avif_codec.decompress_avif(avif, strength=1.0, steps=2)
    half = avif_codec.decompress_avif(avif, strength=0.5, steps=2)
    assert full.shape == avif_decode.shape
    gap = lambda a: float((a - avif_decode).abs().mean())  # noqa: E731
    assert 0 < gap(half) < gap(full)
    assert torch.equal(avif_codec.decompress_avif(avif, strength=0.5, steps=2), half)  # seeded


def test_a_plain_avif_files_quality_is_estimated_near_the_one_it_was_coded_at(natural_images):
    from corrdiff.decoding import estimate_avif_quality

    array = np.ascontiguousarray(np.concatenate([natural_images["chelsea"]] * 2, axis=1))
    for quality in (10, 50, 80):
        avif = avif_file(array, quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(avif)).convert("RGB"))
        assert abs(estimate_avif_quality(AvifBase(), decoded, len(avif)) - quality) <= 8


def test_plain_avif_decoding_refuses_models_without_the_avif_base_and_bad_input(avif_codec, tiny_codec, natural_images):
    avif = avif_file(natural_images["coffee"])
    with pytest.raises(ValueError, match="AVIF base"):
        tiny_codec.decompress_avif(avif)
    with pytest.raises(ValueError, match="strength"):
        avif_codec.decompress_avif(avif, strength=1.5)
    with pytest.raises(BitstreamError):
        avif_codec.decompress_avif(avif[:100])
    with pytest.raises(BitstreamError, match="exceeds"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(avif_codec, "max_decode_pixels", 100, raising=False)
            avif_codec.decompress_avif(avif)


def test_corrdiff_decompress_takes_plain_avif_files_and_compress_takes_the_avif_model(avif_codec, tmp_path,
                                                                                       natural_images, capsys):
    from corrdiff.cli import main

    model = tmp_path / "avif.pt"
    corrdiff.save_model(avif_codec, model)
    photo = tmp_path / "photo.avif"
    photo.write_bytes(avif_file(natural_images["coffee"], quality=30))
    assert main(["decompress", str(photo), "--model", str(model), "--strength", "0.5"]) == 0
    decoded = Image.open(tmp_path / "photo.decoded.png")
    assert decoded.size == (72, 48)
    assert "AVIF decoded with diffusion (strength 0.5)" in capsys.readouterr().out
    assert main(["decompress", str(photo), "--model", str(model), "--gamma-scale", "0.5", "-f"]) == 2
    assert "plain AVIF file" in capsys.readouterr().err
    assert main(["decompress", str(photo), "--model", str(model), "--strength", "2", "-f"]) == 2
    png = tmp_path / "photo.png"
    Image.fromarray(natural_images["chelsea"]).save(png)
    assert main(["compress", str(png), "--model", str(model), "--size", "1500B", "--steps", "1"]) == 0
    data = (tmp_path / "photo.cdf").read_bytes()
    assert len(data) <= 1500 and bitstream.unpack(data).quality is not None
    assert main(["compress", str(png), "--model", str(model), "--quality", "95", "-f"]) == 2
    assert "quality must be in [0, 90]" in capsys.readouterr().err


def test_the_packaged_avif_model_matches_the_ranges_the_help_names():
    from corrdiff.cli.options import AVIF_DEFAULT_QUALITY, AVIF_QUALITIES

    codec = corrdiff.load_model("avif")
    assert codec.quality_range == tuple(float(q) for q in AVIF_QUALITIES)
    assert codec.default_quality == AVIF_DEFAULT_QUALITY
    assert codec.config["base"]["name"] == "avif"
