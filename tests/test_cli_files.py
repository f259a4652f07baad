"""The file tools of the command line: ``corrdiff compress`` / ``corrdiff decompress`` and image input policy."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import corrdiff
from corrdiff.cli import main
from corrdiff.errors import ImageReadError
from corrdiff.image_io import load_image

REPO = Path(__file__).resolve().parents[1]


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def small_rgb(natural_images) -> np.ndarray:
    return np.ascontiguousarray(natural_images["astronaut"][:24, :40])  # (24, 40, 3)


@pytest.fixture
def png(tmp_path, small_rgb) -> Path:
    return write_png(tmp_path / "in.png", small_rgb)


def run_main(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, command: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"corrdiff {command}: error: ")
    assert "Traceback" not in err


# --------------------------------------------------------------------------- happy path
def test_compress_then_decompress(tmp_path, png, model_file, capsys):
    cdf, out_png = tmp_path / "out.cdf", tmp_path / "out.png"
    code, out, err = run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--steps", 4)
    assert code == 0, err
    assert cdf.is_file() and "bpp" in out and "40x24" in out
    data = cdf.read_bytes()
    header = corrdiff.bitstream.unpack(data)
    assert (header.height, header.width, header.steps, header.mode) == (24, 40, 4, "corrected")
    assert f"{len(data)} bytes" in out

    code, out, err = run_main(capsys, "decompress", cdf, "-o", out_png, "--model", model_file)
    assert code == 0, err
    with Image.open(out_png) as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (40, 24)
        decoded = np.asarray(img)
    # the PNG holds exactly the codec's reconstruction, rounded to 8 bits
    codec = corrdiff.load_model(model_file)
    expected = (codec.decompress(data)[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()
    assert np.array_equal(decoded, expected)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes left nothing behind


def test_default_output_names_and_options(tmp_path, png, model_file, capsys):
    code, _, err = run_main(capsys, "compress", png, "--model", model_file, "--mode", "e2e", "--seed", 9)
    assert code == 0, err
    cdf = png.with_suffix(".cdf")
    header = corrdiff.bitstream.unpack(cdf.read_bytes())
    assert (header.mode, header.steps, header.seed) == ("e2e", 0, 9)
    # decompress's default output is INPUT.decoded.png: the original photo beside the file is kept
    original = png.read_bytes()
    code, _, err = run_main(capsys, "decompress", cdf, "--model", model_file)
    assert code == 0, err
    assert png.read_bytes() == original
    assert Image.open(png.with_suffix(".decoded.png")).size == (40, 24)


@pytest.mark.parametrize("options, recorded", [
    (["--sampler", "ddim_quadratic"], ("ddim_quadratic", (0.0,))),
    (["--sampler", "ddim,eta=0.5"], ("ddim", (0.5,))),
    (["--sampler", "ddim", "--eta", "0.25"], ("ddim", (0.25,))),
    (["--sampler", "ddim_quadratic,eta=0.25", "--eta", "0.25"], ("ddim_quadratic", (0.25,))),  # no conflict
    (["--eta", "0.25"], ("ddim", (0.25,))),  # the model's sampler
], ids=["name", "name-and-eta", "eta-shorthand", "both-agree", "eta-alone"])
def test_compress_sampler_options_are_recorded_and_decode_bit_exactly(tmp_path, png, model_file, capsys,
                                                                      options, recorded):
    cdf, reconstruction = tmp_path / "s.cdf", tmp_path / "s.png"
    code, _, err = run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--steps", 2,
                            "--save-reconstruction", reconstruction, *options)
    assert code == 0, err
    header = corrdiff.bitstream.unpack(cdf.read_bytes())
    assert (header.sampler, header.sampler_params, header.steps) == (*recorded, 2)
    codec = corrdiff.load_model(model_file)
    assert torch.equal(codec.decompress(cdf.read_bytes()), codec.encode(load_image(png), steps=2, sampler={
        "name": recorded[0], "eta": recorded[1][0]}).reconstruction)
    code, _, err = run_main(capsys, "decompress", cdf, "-o", tmp_path / "d.png", "--model", model_file)
    assert code == 0, err
    assert np.array_equal(load_image(tmp_path / "d.png"), load_image(reconstruction))


def exit_code(capsys, *argv) -> tuple[int, str]:
    """(exit status, stderr) of the command line, whether argparse or the command refused."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--sampler", "euler"], "unknown sampler 'euler'; registered: ddim, ddim_quadratic"),
    (["--sampler", ""], "NAME[,key=value...]"),
    (["--sampler", "ddim,eta"], "key=value"),
    (["--sampler", "ddim,eta=0.5,eta=0.6"], "distinct"),
    (["--sampler", "ddim,eta=half"], "not a number"),
    (["--sampler", "ddim,order=2"], "takes only ['eta']"),
    (["--sampler", "ddim,eta=2"], "eta"),
    (["--sampler", "ddim,eta=0.5", "--eta", "0.25"], "contradicts"),
], ids=["unknown", "empty", "no-value", "twice", "not-a-number", "unrecorded", "out-of-range", "conflict"])
def test_compress_refuses_bad_sampler_specs_with_exit_2(tmp_path, png, model_file, capsys, options, message):
    code, err = exit_code(capsys, "compress", png, "-o", tmp_path / "o.cdf", "--model", model_file, *options)
    assert code == 2 and message in err, err
    assert "Traceback" not in err and not (tmp_path / "o.cdf").exists()


def test_decompress_modes_and_gamma_scale(tmp_path, png, model_file, capsys):
    cdf = tmp_path / "m.cdf"
    assert run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--steps", 3)[0] == 0
    outputs = {}
    for name, extra in {"corrected": [], "diffusion": ["--mode", "diffusion"], "scale0": ["--gamma-scale", 0],
                        "e2e": ["--mode", "e2e"]}.items():
        out = tmp_path / f"{name}.png"
        code, _, err = run_main(capsys, "decompress", cdf, "-o", out, "--model", model_file, *extra)
        assert code == 0, err
        outputs[name] = np.asarray(Image.open(out))
        assert outputs[name].shape == (24, 40, 3)
    assert np.array_equal(outputs["scale0"], outputs["diffusion"])
    assert not np.array_equal(outputs["corrected"], outputs["diffusion"])
    assert not np.array_equal(outputs["corrected"], outputs["e2e"])


# --------------------------------------------------------------------------- refusals
def test_refuses_to_overwrite_without_force(tmp_path, png, model_file, capsys):
    cdf = tmp_path / "x.cdf"
    cdf.write_bytes(b"precious")
    code, _, err = run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--steps", 1)
    assert code == 2
    assert_one_line_error(err, "compress")
    assert "--force" in err
    assert cdf.read_bytes() == b"precious"

    code, _, err = run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--steps", 1, "--force")
    assert code == 0, err
    assert cdf.read_bytes().startswith(b"CDIF")

    out_png = tmp_path / "x.png"
    out_png.write_bytes(b"precious too")
    code, _, err = run_main(capsys, "decompress", cdf, "-o", out_png, "--model", model_file)
    assert code == 2
    assert_one_line_error(err, "decompress")
    assert out_png.read_bytes() == b"precious too"
    code, _, err = run_main(capsys, "decompress", cdf, "-o", out_png, "--model", model_file, "-f")
    assert code == 0, err
    assert Image.open(out_png).size == (40, 24)


def test_readme_sequence_keeps_the_photo(tmp_path, png, model_file, capsys, monkeypatch):
    """The README's `compress photo.png -o photo.cdf; decompress photo.cdf` keeps photo.png (issue 13)."""
    monkeypatch.chdir(tmp_path)
    original = png.read_bytes()
    assert run_main(capsys, "compress", png.name, "-o", "in.cdf", "--model", model_file, "--steps", 1)[0] == 0
    assert run_main(capsys, "decompress", "in.cdf", "--model", model_file)[0] == 0
    assert png.read_bytes() == original and Path("in.decoded.png").is_file()


def test_output_that_is_an_input_is_refused_even_with_force(tmp_path, png, model_file, capsys):
    """Input, model file and symlinks to them are never overwritten (issue 13, item 1; issue 16, item 5)."""
    original, model_bytes = png.read_bytes(), Path(model_file).read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(png)
    for output in (png, link, model_file):
        code, _, err = run_main(capsys, "compress", png, "-o", output, "--model", model_file, "-f")
        assert code == 2 and "also an input" in err, err
        assert_one_line_error(err, "compress")
    cdf = tmp_path / "k.cdf"
    assert run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    for output in (cdf, model_file):
        code, _, err = run_main(capsys, "decompress", cdf, "-o", output, "--model", model_file, "-f")
        assert code == 2 and "also an input" in err, err
    assert png.read_bytes() == original and Path(model_file).read_bytes() == model_bytes
    assert cdf.read_bytes().startswith(b"CDIF")


def test_output_checked_before_any_work(tmp_path, png, model_file, capsys):
    """A missing folder or a folder as output is named at once, with the user's path (issue 13, item 6)."""
    code, _, err = run_main(capsys, "compress", png, "-o", tmp_path / "absent" / "x.cdf", "--model", model_file)
    assert code == 2 and "absent" in err and "no such folder" in err
    for force in ([], ["-f"]):
        code, _, err = run_main(capsys, "compress", png, "-o", tmp_path, "--model", model_file, *force)
        assert code == 2 and "is a folder" in err, err


@pytest.mark.parametrize("scale", ["-1", "nan", "1.5", "inf"])
def test_gamma_scale_outside_its_range_is_refused(tmp_path, png, model_file, capsys, scale):
    cdf = tmp_path / "g.cdf"
    assert run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    code, _, err = run_main(capsys, "decompress", cdf, "-o", tmp_path / "g.png", "--model", model_file,
                            "--gamma-scale", scale)
    assert code == 2 and "[0, 1]" in err, err
    assert_one_line_error(err, "decompress")
    assert not (tmp_path / "g.png").exists()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrdiff.load_model(model_file).decompress(cdf.read_bytes(), gamma_scale=float(scale))


def test_avif_is_listed_when_pillow_writes_it():
    """available_formats() loads Pillow's plugins before looking (issue 13, item 5)."""
    import io

    from corrdiff.baselines import available_formats

    try:
        Image.new("RGB", (8, 8)).save(io.BytesIO(), format="AVIF")
        writes_avif = True
    except (KeyError, OSError):
        writes_avif = False
    # in a fresh process, where nothing has made Pillow load its plugins yet
    listed = subprocess.run([sys.executable, "-c", "from corrdiff.baselines import available_formats as f; print(f())"],
                            capture_output=True, text=True, check=True).stdout
    assert ("'avif'" in listed) == writes_avif == ("avif" in available_formats())


@pytest.mark.parametrize("damage", ["flip", "truncate", "png", "empty"])
def test_damaged_cdf_is_exit_2_with_one_line(tmp_path, png, model_file, capsys, damage):
    good = tmp_path / "good.cdf"
    assert run_main(capsys, "compress", png, "-o", good, "--model", model_file, "--steps", 1)[0] == 0
    data = bytearray(good.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x04
    elif damage == "truncate":
        data = data[:-7]
    elif damage == "png":
        data = bytearray(png.read_bytes())
    else:
        data = bytearray()
    bad = tmp_path / "bad.cdf"
    bad.write_bytes(bytes(data))
    code, out, err = run_main(capsys, "decompress", bad, "-o", tmp_path / "bad.png", "--model", model_file)
    assert code == 2
    assert_one_line_error(err, "decompress")
    assert not (tmp_path / "bad.png").exists()


def test_corrupted_cdf_in_a_subprocess_has_no_traceback(tmp_path, png, model_file, capsys):
    good = tmp_path / "good.cdf"
    assert run_main(capsys, "compress", png, "-o", good, "--model", model_file, "--steps", 1)[0] == 0
    data = bytearray(good.read_bytes())
    data[20] ^= 0xFF
    bad = tmp_path / "bad.cdf"
    bad.write_bytes(bytes(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "corrdiff.cli", "decompress", str(bad), "-o", str(tmp_path / "o.png"),
         "--model", str(model_file)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert_one_line_error(proc.stderr, "decompress")
    assert "checksum" in proc.stderr


def test_wrong_model_is_exit_2(tmp_path, png, model_file, capsys):
    from conftest import make_codec

    other = tmp_path / "other.pt"
    corrdiff.save_model(make_codec(1), other)
    cdf = tmp_path / "a.cdf"
    assert run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    code, _, err = run_main(capsys, "decompress", cdf, "-o", tmp_path / "a.png", "--model", other)
    assert code == 2
    assert_one_line_error(err, "decompress")
    assert "--model" in err


@pytest.mark.parametrize("kind", ["text", "missing", "directory", "truncated_png"])
def test_bad_input_image_is_exit_2(tmp_path, png, model_file, capsys, kind):
    if kind == "text":
        bad = tmp_path / "notes.png"
        bad.write_text("this is not an image\n")
    elif kind == "missing":
        bad = tmp_path / "absent.png"
    elif kind == "directory":
        bad = tmp_path / "folder.png"
        bad.mkdir()
    else:
        bad = tmp_path / "cut.png"
        bad.write_bytes(png.read_bytes()[:60])
    out = tmp_path / "out.cdf"
    code, _, err = run_main(capsys, "compress", bad, "-o", out, "--model", model_file)
    assert code == 2
    assert_one_line_error(err, "compress")
    assert str(bad) in err
    assert not out.exists()


def test_missing_cdf_and_missing_model_are_exit_2(tmp_path, png, model_file, capsys):
    code, _, err = run_main(capsys, "decompress", tmp_path / "absent.cdf", "--model", model_file)
    assert code == 2
    assert_one_line_error(err, "decompress")
    code, _, err = run_main(capsys, "compress", png, "-o", tmp_path / "o.cdf", "--model", tmp_path / "nope.pt")
    assert code == 2
    assert_one_line_error(err, "compress")
    assert "nope.pt" in err


@pytest.mark.parametrize("option", [["--steps", "0"], ["--eta", "2"], ["--sampler", "euler"]],
                         ids=["steps0", "eta2", "unknown-sampler"])
def test_invalid_option_values_are_exit_2(tmp_path, png, model_file, capsys, option):
    code, _, err = run_main(capsys, "compress", png, "-o", tmp_path / "o.cdf", "--model", model_file, *option)
    assert code == 2
    assert_one_line_error(err, "compress")


# --------------------------------------------------------------------------- input image policy
@pytest.mark.parametrize("kind", ["gray", "rgba", "la", "palette"])
def test_grayscale_and_alpha_inputs_decode_to_the_same_size_gray_as_gray(tmp_path, small_rgb, model_file, capsys, kind):
    """Gray in, gray out (issue 13, item 3): a gray (or gray + alpha) source decodes to a one-channel PNG."""
    src = tmp_path / f"{kind}.png"
    if kind == "gray":
        Image.fromarray(small_rgb[..., 0]).save(src)
    elif kind == "rgba":
        alpha = np.full(small_rgb.shape[:2] + (1,), 128, np.uint8)
        Image.fromarray(np.concatenate([small_rgb, alpha], axis=-1), "RGBA").save(src)
    elif kind == "la":
        Image.fromarray(small_rgb[..., 0]).convert("LA").save(src)
    else:
        Image.fromarray(small_rgb).convert("P").save(src)
    cdf, out = tmp_path / f"{kind}.cdf", tmp_path / f"{kind}_out.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run_main(capsys, "compress", src, "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    assert run_main(capsys, "decompress", cdf, "-o", out, "--model", model_file)[0] == 0
    with Image.open(out) as img:
        assert img.mode == ("L" if kind in ("gray", "la") else "RGB") and img.size == (40, 24)


def test_load_image_policy(tmp_path, small_rgb):
    gray = load_image(write_png(tmp_path / "g.png", small_rgb[..., 1]))
    assert gray.shape == (24, 40, 3) and gray.dtype == np.uint8
    assert np.array_equal(gray[..., 0], small_rgb[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])

    rgba = np.concatenate([small_rgb, np.zeros((24, 40, 1), np.uint8)], axis=-1)  # fully transparent
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        loaded = load_image(write_png(tmp_path / "a.png", rgba, "RGBA"))
    assert np.array_equal(loaded, small_rgb)  # colour kept as is, alpha ignored

    assert np.array_equal(load_image(write_png(tmp_path / "c.png", small_rgb)), small_rgb)


def test_sixteen_bit_grayscale_is_reduced_to_eight_bits(tmp_path):
    values = (np.arange(24 * 40, dtype=np.uint32).reshape(24, 40) * 68).astype(np.uint16)  # up to 65212
    loaded = load_image(write_png(tmp_path / "g16.png", values))
    assert loaded.shape == (24, 40, 3) and loaded.dtype == np.uint8
    expected = np.clip(values / 65535 * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(loaded[..., 0].astype(int) - expected).max() <= 1


def test_dark_sixteen_bit_image_stays_dark(tmp_path):
    values = np.full((8, 8), 255, np.uint16)  # 255/65535 of full scale: nearly black
    assert load_image(write_png(tmp_path / "dark16.png", values)).max() <= 1


def test_image_read_error_is_a_corrdiff_error(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageReadError, match="not a readable image"):
        load_image(bad)
    assert issubclass(ImageReadError, corrdiff.CorrDiffError)


# --------------------------------------------------------------------------- help
def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("compress", "decompress", "fit"):
        assert command in out


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "compress" in capsys.readouterr().out


def test_subcommand_help_documents_options(capsys):
    with pytest.raises(SystemExit):
        main(["decompress", "--help"])
    out = capsys.readouterr().out
    for option in ("--model", "--mode", "--gamma-scale", "--force"):
        assert option in out


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert corrdiff.__version__ in capsys.readouterr().out



def test_compress_prints_quality_and_saves_the_exact_reconstruction(tmp_path, png, model_file, capsys):
    """compress knows the decoder's output: it prints PSNR/MS-SSIM and can save it (issue 13, item 10)."""
    cdf, rec, dec = tmp_path / "r.cdf", tmp_path / "rec.png", tmp_path / "dec.png"
    code, out, err = run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--steps", 2,
                              "--save-reconstruction", rec)
    assert code == 0, err
    assert "PSNR" in out and "MS-SSIM" in out
    assert run_main(capsys, "decompress", cdf, "-o", dec, "--model", model_file)[0] == 0
    assert np.array_equal(np.asarray(Image.open(rec)), np.asarray(Image.open(dec)))
    code, _, err = run_main(capsys, "compress", png, "-o", tmp_path / "s.cdf", "--model", model_file,
                            "--save-reconstruction", png, "-f")
    assert code == 2 and "also an input" in err
    code, _, err = run_main(capsys, "compress", png, "-o", tmp_path / "t.cdf", "--model", model_file,
                            "--save-reconstruction", tmp_path / "t.cdf", "-f")
    assert code == 2 and "the .cdf output itself" in err and not (tmp_path / "t.cdf").exists()


def test_encode_accepts_what_users_pass_and_refuses_0_255_floats(tiny_codec, small_rgb):
    """uint8 tensors, numpy arrays and PIL images are converted; floats outside [0, 1] are refused (item 2)."""
    import torch

    reference = tiny_codec.encode(torch.from_numpy(small_rgb).permute(2, 0, 1)[None].float() / 255, steps=1)
    for image in (torch.from_numpy(small_rgb).permute(2, 0, 1)[None], small_rgb, Image.fromarray(small_rgb)):
        result = tiny_codec.encode(image, steps=1)
        assert result.data == reference.data, type(image)
    gray = small_rgb[..., 0]
    assert tiny_codec.encode(gray, steps=1).reconstruction.shape == (1, 3, 24, 40)
    with pytest.raises(ValueError, match="0..255"):
        tiny_codec.encode(torch.from_numpy(small_rgb).permute(2, 0, 1)[None].float(), steps=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tiny_codec.encode(torch.full((1, 3, 8, 8), -0.2), steps=1)
    with pytest.raises(TypeError, match="numpy array or PIL image"):
        tiny_codec.encode([[0.5]], steps=1)


def test_gamma_options_reach_the_file(tmp_path, png, model_file, capsys):
    from corrdiff import bitstream

    cdf = tmp_path / "tiles.cdf"
    code, out, err = run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--steps", 2,
                              "--gamma", "granularity=tile-16", "--gamma", "rate_weight=0")
    assert code == 0, err
    assert bitstream.unpack(cdf.read_bytes()).granularities == ("tile", "tile")
    assert run_main(capsys, "decompress", cdf, "--model", model_file)[0] == 0
    sharp = tmp_path / "sharp.cdf"
    assert run_main(capsys, "compress", png, "-o", sharp, "--model", model_file, "--steps", 2, "--sharpen", "1",
                    "--gamma", "iterations=3")[0] == 0
    assert bitstream.unpack(sharp.read_bytes()).granularities == ("tile", "tile")  # --sharpen: smooth maps
    scalar_sharp = tmp_path / "scalar-sharp.cdf"
    assert run_main(capsys, "compress", png, "-o", scalar_sharp, "--model", model_file, "--steps", 1, "--sharpen", "1",
                    "--gamma", "iterations=3", "--gamma", "granularity=scalar")[0] == 0
    assert bitstream.unpack(scalar_sharp.read_bytes()).granularities == ("scalar",)


@pytest.mark.parametrize("option, message", [("granularity", "KEY=VALUE"), ("granularity=tile-7", "tile cell"),
                                             ("colour=red", "unknown gamma option"), ("rho=-1", "rho"),
                                             ("iterations=abc", "iterations")])
def test_bad_gamma_options_are_exit_2_before_loading(tmp_path, png, capsys, option, message):
    code, _, err = run_main(capsys, "compress", png, "-o", tmp_path / "x.cdf", "--model", tmp_path / "missing.pt",
                            "--gamma", option)
    assert code == 2 and message in err
    assert_one_line_error(err, "compress")


# --------------------------------------------------------------------------- issue 13, item 7: say what is wrong
def test_device_that_this_machine_lacks_is_named(tmp_path, png, model_file, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for command, source in (("compress", png), ("decompress", png)):
        code, _, err = run_main(capsys, command, source, "-o", tmp_path / "o.x", "--model", model_file,
                                "--device", "cuda")
        assert code == 2 and "CUDA is not available" in err and "--device cpu" in err, err
        assert str(model_file) not in err  # the model file is fine
        assert_one_line_error(err, command)
    code, _, err = run_main(capsys, "compress", png, "-o", tmp_path / "o.cdf", "--model", model_file,
                            "--device", "cdua")
    assert code == 2 and "unknown device 'cdua'" in err


def test_export_and_model_say_what_the_wrong_file_is(tmp_path, png, model_file, capsys):
    code, _, err = run_main(capsys, "export", png, "-o", tmp_path / "m.pt")
    assert code == 2 and "not a Lightning checkpoint" in err and "PNG image" in err and "pickled" not in err
    cdf = tmp_path / "x.cdf"
    assert run_main(capsys, "compress", png, "-o", cdf, "--model", model_file, "--mode", "e2e")[0] == 0
    code, _, err = run_main(capsys, "export", cdf, "-o", tmp_path / "m.pt")
    assert code == 2 and "compressed corrdiff file" in err
    code, _, err = run_main(capsys, "export", model_file, "-o", tmp_path / "m.pt")
    assert code == 2 and "exported corrdiff model already" in err
    code, _, err = run_main(capsys, "compress", png, "-o", tmp_path / "y.cdf", "--model", png)
    assert code == 2 and "not a model file: it looks like a PNG image" in err
    assert_one_line_error(err, "compress")


def test_help_texts_of_mode_device_threads_and_demo(capsys):
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "the end-to-end decoder only" in out and "cpu (default), cuda" in out and "CPU threads" in out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "sampling steps (default: the model's" in out and "seed of the initial noise" in out


# --------------------------------------------------------------------------- issue 13, item 8: quick, quiet start-up
def test_ms_ssim_of_sizes_torchmetrics_refused(tmp_path, natural_images, model_file, capsys):
    """An 81..98 or 161..175 pixel side made torchmetrics' MS-SSIM raise after the whole encode."""
    rgb = np.ascontiguousarray(np.tile(natural_images["astronaut"], (2, 2, 1))[:90, :90])
    png = write_png(tmp_path / "n.png", rgb)
    code, out, err = run_main(capsys, "compress", png, "-o", tmp_path / "n.cdf", "--model", model_file, "--mode", "e2e")
    assert code == 0 and "MS-SSIM 0." in out, err


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 200, 180), (1, 3, 32, 48), (1, 3, 24, 19)])
def test_ms_ssim_equals_torchmetrics(shape):
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as reference

    from corrdiff.losses.distortion import ms_ssim_betas, ms_ssim_index

    a = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    b = (a + 0.2 * torch.randn(shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    betas = ms_ssim_betas(min(shape[-2:]))
    ours_input, their_input = a.clone().requires_grad_(), a.clone().requires_grad_()
    ours, theirs = ms_ssim_index(b, ours_input, betas), reference(b, their_input, data_range=1.0, betas=betas)
    ours.backward()
    theirs.backward()
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.allclose(ours_input.grad, their_input.grad, atol=1e-7)


FRESH_PROCESS = """
import json, sys, warnings
from corrdiff.cli import main
for argv in (["compress", sys.argv[1], "-o", sys.argv[2], "--model", sys.argv[3], "--steps", "1"],
             ["decompress", sys.argv[2], "-o", sys.argv[4], "--model", sys.argv[3]]):
    assert main(argv) == 0
extras = ("torchmetrics", "torch_geometric", "lightning", "pytorch_lightning", "matplotlib", "torchvision", "wandb",
          "scipy.signal", "torch._dynamo")
print(json.dumps(sorted(m for m in extras if m in sys.modules)))
"""


def test_file_tools_import_no_extras_and_print_no_warnings(tmp_path, png, model_file):
    """compress/decompress load only what coding needs (seconds of start-up) and print no third-party warnings."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "default"}
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(png), str(tmp_path / "f.cdf"), str(model_file),
                           str(tmp_path / "f.png")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_gamma_options_are_checked_against_the_models_own_settings(tmp_path, png, model_file, capsys):
    """rho > 0 needs the gradient solver: refused for a closed-form model, accepted for a gradient one."""
    from conftest import make_codec

    code, _, err = run_main(capsys, "compress", png, "-o", tmp_path / "a.cdf", "--model", model_file, "--steps", 1,
                            "--gamma", "rho=0.5")
    assert code == 2 and "solver: gradient" in err and "this model's settings" in err
    gradient_model = tmp_path / "gradient.pt"
    codec = make_codec(0, correction={"solver": "gradient", "perceptual": {"name": "hf"}, "iterations": 2})
    corrdiff.save_model(codec, gradient_model)
    code, _, err = run_main(capsys, "compress", png, "-o", tmp_path / "b.cdf", "--model", gradient_model,
                            "--steps", 1, "--gamma", "rho=0.5")
    assert code == 0, err
