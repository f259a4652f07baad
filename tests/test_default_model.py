"""The model shipped in the package (issue 6): loads, has a stable fingerprint, round-trips, demo works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import corrdiff
from corrdiff.cli import main as cli_main
from corrdiff.demo import CAPTION_HEIGHT, GAP, demo_image_path, side_by_side
from corrdiff.image_io import load_image
from corrdiff.metrics import psnr, to_tensor, to_uint8
from corrdiff.model_io import packaged_model_path

LADDER = Path(__file__).resolve().parents[1] / "experiments" / "default_model" / "models"


def test_packaged_model_is_small_and_loads(default_codec):
    assert packaged_model_path("default").stat().st_size < 15e6
    assert default_codec.prior.entropy_tables_ready()
    assert not default_codec.training


def test_fingerprint_is_stable_and_written_to_files(default_codec):
    again = corrdiff.load_model("default")
    assert again.fingerprint() == default_codec.fingerprint()
    image = to_tensor(load_image(demo_image_path())[:64, :96])
    data = default_codec.compress(image)
    assert corrdiff.bitstream.unpack(data).fingerprint == default_codec.fingerprint()


def test_round_trip_with_packaged_model_is_exact_and_trained(default_codec):
    rgb = load_image(demo_image_path())[128:256, 256:448]
    result = default_codec.encode(to_tensor(rgb))
    decoded = default_codec.decompress(result.data)
    assert np.array_equal(to_uint8(decoded), to_uint8(result.reconstruction))
    # a trained model, not random weights: the end-to-end decode is far better than noise
    e2e = to_uint8(default_codec.decompress(result.data, mode="e2e"))
    assert psnr(rgb, e2e) > 26  # 28.9 dB with the shipped model; random weights give < 10
    assert psnr(rgb, to_uint8(decoded)) > 26


def test_lambda_ladder_models_trade_rate_for_quality():
    """experiments/default_model/models: lambda 0.5 / 1 (default) / 2 give decreasing rate and PSNR."""
    rgb = load_image(demo_image_path())[128:256, 256:448]
    points = []
    for name in (LADDER / "default-l0.5.pt", "default", LADDER / "default-l2.pt"):
        codec = corrdiff.load_model(name)
        result = codec.encode(to_tensor(rgb))
        points.append((len(result.data) * 8 / (rgb.shape[0] * rgb.shape[1]), psnr(rgb, to_uint8(codec.decompress(result.data)))))
    bpps, psnrs = zip(*points)
    assert bpps[0] > bpps[1] > bpps[2] > 0
    assert psnrs[0] > psnrs[1] > psnrs[2] > 26


def test_default_is_the_cli_default(tmp_path, capsys):
    src = tmp_path / "crop.png"
    from PIL import Image

    Image.fromarray(load_image(demo_image_path())[:64, :64]).save(src)
    assert cli_main(["compress", str(src), "-o", str(tmp_path / "c.cdf")]) == 0
    assert cli_main(["decompress", str(tmp_path / "c.cdf"), "-o", str(tmp_path / "c.png")]) == 0
    assert load_image(tmp_path / "c.png").shape == (64, 64, 3)


@pytest.mark.slow
def test_demo_writes_files_and_prints_figures(tmp_path, capsys):
    assert cli_main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for word in ("bpp", "PSNR", "MS-SSIM", "encode", "decode", "JPEG", "WebP", "AVIF"):
        assert word in out
    for name in ("demo.cdf", "demo.png", "comparison.png"):
        assert (tmp_path / name).stat().st_size > 0
    comparison = load_image(tmp_path / "comparison.png")
    # original, CorrDiff, AVIF | WebP, JPEG, less correction | diffusion only, end-to-end only: three rows of
    # three, labels in a strip below each
    assert comparison.shape == (3 * (512 + CAPTION_HEIGHT) + 2 * GAP, 3 * 768 + 2 * GAP, 3)


def test_demo_labels_do_not_cover_the_images():
    """Issue 13: the panel labels sat on the images' corners; now they are in a strip below."""
    import io

    from PIL import Image

    panels = [(np.full((40, 60, 3), 90 * i, np.uint8), f"panel {i}") for i in range(3)]
    canvas = np.asarray(Image.open(io.BytesIO(side_by_side(panels))).convert("RGB"))
    assert canvas.shape == (40 + CAPTION_HEIGHT, 3 * 60 + 2 * GAP, 3)
    for i, (rgb, _) in enumerate(panels):
        x = i * (60 + GAP)
        assert np.array_equal(canvas[:40, x:x + 60], rgb)  # every image pixel as it was
    assert (canvas[40:] < 128).any()  # the labels are drawn in the strip


def test_the_smooth_model_is_shipped_by_name():
    """``smooth``: the MSE-trained score network (the default before adversarial fine-tuning), loadable by name;
    the same codec (encoder, prior, end-to-end decoder), so the same rate."""
    smooth = corrdiff.load_model("smooth")
    assert smooth.fingerprint().hex().startswith("5b7c6444eb29e3ab")
    assert packaged_model_path("smooth").stat().st_size < 15e6
    default = corrdiff.load_model("default")
    assert default.fingerprint() != smooth.fingerprint()
    shared = ("encoder.", "prior.", "decoder.")
    for key, value in smooth.state_dict().items():
        if key.startswith(shared):
            assert torch.equal(value, default.state_dict()[key]), key


def test_the_variable_rate_model_is_shipped_by_name(default_codec):
    """``variable``: one model for every rate (docs/variable_rate.md), its codec trained at every rate in the base
    phase (docs/training.md), then its score network on that codec; its range is the one --help names, and it spans
    0.06 bpp or less to 0.3 or more on a photo crop; at its default quality it codes the crop in fewer bits than the
    fixed-rate default, at a higher end-to-end PSNR. ``variable-v1``, the first one, is still packaged (its files decode)."""
    from corrdiff.cli.options import VARIABLE_QUALITIES

    variable = corrdiff.load_model("variable")
    assert packaged_model_path("variable").stat().st_size < 15e6
    assert variable.quality_range == tuple(float(q) for q in VARIABLE_QUALITIES)
    rgb = load_image(demo_image_path())[128:384, 256:512]
    x = to_tensor(rgb)
    low, high = (variable.encode(x, quality=q, mode="e2e") for q in VARIABLE_QUALITIES)
    assert low.bpp() < 0.06 < 0.3 < high.bpp()
    assert psnr(rgb, to_uint8(low.reconstruction)) < psnr(rgb, to_uint8(high.reconstruction))
    default, ours = default_codec.encode(x, mode="e2e"), variable.encode(x, mode="e2e")
    assert ours.bpp() < default.bpp()
    assert psnr(rgb, to_uint8(ours.reconstruction)) > psnr(rgb, to_uint8(default.reconstruction))
    first = corrdiff.load_model("variable-v1")
    assert first.quality_range == variable.quality_range and first.fingerprint() != variable.fingerprint()


def test_a_size_target_needs_no_model_name_and_decompress_finds_the_model(tmp_path, capsys):
    """``corrdiff compress photo.png --size 1.2KB`` takes the packaged default model (``avif``, which takes a size
    as the learned variable-rate model does); ``decompress`` without ``--model`` decodes with the packaged model the
    file names, bit for bit as the encoder reconstructed it."""
    from PIL import Image

    src = tmp_path / "crop.png"
    Image.fromarray(load_image(demo_image_path())[128:256, 256:448]).save(src)
    assert cli_main(["compress", str(src), "-o", str(tmp_path / "c.cdf"), "--size", "1.2KB", "--steps", "1",
                     "--save-reconstruction", str(tmp_path / "r.png")]) == 0
    data = (tmp_path / "c.cdf").read_bytes()
    header = corrdiff.bitstream.unpack(data)
    assert 1000 <= len(data) <= 1200 and 0 < header.quality < 90
    assert header.fingerprint == corrdiff.load_model("avif").fingerprint()
    assert cli_main(["decompress", str(tmp_path / "c.cdf"), "-o", str(tmp_path / "d.png")]) == 0
    assert np.array_equal(load_image(tmp_path / "d.png"), load_image(tmp_path / "r.png"))
    capsys.readouterr()
    assert cli_main(["decompress", str(tmp_path / "c.cdf"), "-o", str(tmp_path / "e.png"), "--model", "default"]) != 0
    assert "model" in capsys.readouterr().err and not (tmp_path / "e.png").exists()


def test_decompress_picks_each_files_packaged_model(tmp_path, capsys):
    """A batch of files coded by different packaged models decodes without --model, each with its own (also one of
    ``variable-v1``, the ``variable`` that files were written with before its codec was retrained)."""
    from PIL import Image

    src = tmp_path / "crop.png"
    Image.fromarray(load_image(demo_image_path())[128:192, 256:352]).save(src)
    for name, model in (("a", "default"), ("b", "variable"), ("c", "smooth"), ("d", "variable-v1")):
        assert cli_main(["compress", str(src), "-o", str(tmp_path / f"{name}.cdf"), "--model", model, "--steps", "1",
                         "--save-reconstruction", str(tmp_path / f"{name}.png")]) == 0
    assert cli_main(["decompress", *(str(tmp_path / f"{n}.cdf") for n in "abcd"), "-o", str(tmp_path / "out")]) == 0
    for name in "abcd":
        assert np.array_equal(load_image(tmp_path / "out" / f"{name}.png"), load_image(tmp_path / f"{name}.png"))
