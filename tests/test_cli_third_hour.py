"""A new user's third hour with the command line: model-mismatch errors that name the model to pass, folders as
inputs, a word where there was silence (progress without a terminal, a rate target out of reach, low qualities,
16-bit and CMYK inputs), and small things (one line on Ctrl-C, an empty .cdf, a .cdf given to compress, one set
of exit statuses)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import corrdiff
import corrdiff.model_io
from corrdiff.cli import batch
from corrdiff.cli.errors import EXIT_USAGE_ERROR
from corrdiff.cli.interrupts import EXIT_INTERRUPTED
from corrdiff.cli.loading import FileModels
from corrdiff.demo import demo_image_path
from corrdiff.errors import ModelMismatchError
from corrdiff.image_io import load_image

from conftest import count_model_loads, make_codec, run_cli


@pytest.fixture
def photo(tmp_path) -> Path:
    """A 96x64 crop of the bundled demo photo (the packaged models' own kind of image)."""
    path = tmp_path / "photo.png"
    Image.fromarray(load_image(demo_image_path())[128:192, 256:352]).save(path)
    return path


@pytest.fixture
def pngs(tmp_path, natural_images) -> dict[str, Path]:
    """photos/a.png and photos/trip/b.png (24x40), and a text file that is no image."""
    folder = tmp_path / "photos"
    (folder / "trip").mkdir(parents=True)
    paths = {"a": folder / "a.png", "b": folder / "trip" / "b.png"}
    for name, path in paths.items():
        Image.fromarray(np.ascontiguousarray(natural_images["astronaut"][:24, :40])).save(path)
    (folder / "notes.txt").write_text("not an image")
    return paths


# =========================================================================== 1: mismatches name models
def test_a_packaged_models_file_with_another_model_names_that_model(tmp_path, photo, capsys, monkeypatch):
    assert run_cli(capsys, "compress", photo, "-o", tmp_path / "a.cdf", "--model", "variable", "--steps", 1)[0] == 0
    loads = count_model_loads(monkeypatch)
    code, _, err = run_cli(capsys, "decompress", tmp_path / "a.cdf", "--model", "default")
    assert code == EXIT_USAGE_ERROR
    assert err == (f"corrdiff decompress: error: {tmp_path / 'a.cdf'} was coded with the packaged model 'variable': "
                   "drop --model or pass --model variable\n")
    assert loads == ["default"]  # the owner is found by the fingerprints the packaged files store
    # without --model, the owner alone is loaded (not every packaged model before it)
    code, _, err = run_cli(capsys, "decompress", tmp_path / "a.cdf", "-o", tmp_path / "a.png")
    assert code == 0, err
    assert loads == ["default", "variable"]


def test_a_file_of_a_model_that_is_not_packaged_says_to_pass_its_path(tmp_path, pngs, model_file, capsys):
    cdf = tmp_path / "a.cdf"
    assert run_cli(capsys, "compress", pngs["a"], "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    tiny = corrdiff.load_model(model_file).fingerprint().hex()
    code, _, err = run_cli(capsys, "decompress", cdf)
    assert code == EXIT_USAGE_ERROR
    default = corrdiff.load_model("default").fingerprint().hex()
    assert err == (f"corrdiff decompress: error: {cdf} was coded with a model that is not packaged (fingerprint "
                   f"{tiny}; the packaged model 'default' is {default}): pass --model PATH of the model file that "
                   "coded it\n")
    other = tmp_path / "other.pt"
    corrdiff.save_model(make_codec(1), other)
    code, _, err = run_cli(capsys, "decompress", cdf, "--model", other)
    assert code == EXIT_USAGE_ERROR and "not packaged" in err and tiny in err
    assert f"--model {other} is {corrdiff.load_model(other).fingerprint().hex()}" in err


def test_a_file_of_a_retired_packaged_model_says_how_to_get_it(tmp_path, pngs, model_file, capsys, monkeypatch):
    # the tiny model stands for an earlier version of 'variable', retired at a commit of the repository
    cdf = tmp_path / "a.cdf"
    assert run_cli(capsys, "compress", pngs["a"], "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    tiny = corrdiff.load_model(model_file).fingerprint().hex()
    commit = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setitem(corrdiff.model_io.RETIRED, tiny,
                        corrdiff.model_io.RetiredModel("variable", commit, "corrdiff/assets/variable.pt"))
    code, _, err = run_cli(capsys, "decompress", cdf)
    assert code == EXIT_USAGE_ERROR
    default = corrdiff.load_model("default").fingerprint().hex()
    assert err == (f"corrdiff decompress: error: {cdf} was coded with an earlier version of the packaged model "
                   f"'variable' (fingerprint {tiny}; the packaged model 'default' is {default}): its file is in the "
                   "repository's history: `git show 0123456789ab:corrdiff/assets/variable.pt > "
                   "variable-0123456.pt` in a clone of corrdiff, then pass --model variable-0123456.pt\n")
    assert not (tmp_path / "a.png").exists()


def test_the_mismatch_is_still_a_model_mismatch_error(tmp_path, pngs, model_file, capsys):
    cdf = tmp_path / "a.cdf"
    assert run_cli(capsys, "compress", pngs["a"], "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    fingerprint = corrdiff.bitstream.unpack(cdf.read_bytes()).fingerprint
    with pytest.raises(ModelMismatchError, match="not packaged"):
        FileModels("default", "cpu", [batch.Job(cdf, tmp_path / "a.png")]).for_file(cdf, fingerprint)


# =========================================================================== 2: folders
def test_compress_and_decompress_a_folder_mirror_its_layout_under_o(tmp_path, pngs, model_file, capsys):
    code, out, err = run_cli(capsys, "compress", tmp_path / "photos", "-o", tmp_path / "cdf", "--model", model_file,
                         "--steps", 1)
    assert code == 0 and err == "", err
    assert sorted(p.relative_to(tmp_path / "cdf").as_posix() for p in (tmp_path / "cdf").rglob("*.cdf")) == [
        "a.cdf", "trip/b.cdf"]
    assert "compressed 2 of 2 files" in out  # notes.txt is no image: not an input
    code, out, err = run_cli(capsys, "decompress", tmp_path / "cdf", "-o", tmp_path / "png", "--model", model_file)
    assert code == 0 and err == "", err
    assert (tmp_path / "png" / "a.png").is_file() and (tmp_path / "png" / "trip" / "b.png").is_file()


def test_a_folder_without_o_writes_beside_each_image(tmp_path, pngs, model_file, capsys):
    code, _, err = run_cli(capsys, "compress", tmp_path / "photos", "--model", model_file, "--mode", "e2e")
    assert code == 0, err
    assert all(p.with_suffix(".cdf").is_file() for p in pngs.values())
    code, _, err = run_cli(capsys, "decompress", tmp_path / "photos", "--model", model_file)
    assert code == 0, err
    assert all(p.with_suffix(".decoded.png").is_file() for p in pngs.values())


def test_a_reconstruction_folder_inside_the_input_folder_is_refused(tmp_path, pngs, model_file, capsys):
    rec = tmp_path / "photos" / "rec"
    code, _, err = run_cli(capsys, "compress", tmp_path / "photos", "-o", tmp_path / "cdf", "--model", model_file,
                       "--save-reconstruction", rec)
    assert code == EXIT_USAGE_ERROR and "is inside the input folder" in err and "choose a folder outside it" in err
    assert not rec.exists() and not (tmp_path / "cdf").exists()  # refused before anything is written


def test_a_folder_without_inputs_is_an_error(tmp_path, model_file, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "compress", tmp_path / "empty", "--model", model_file)
    assert code == EXIT_USAGE_ERROR and "no image files in this folder or below" in err
    code, _, err = run_cli(capsys, "decompress", tmp_path / "empty", "--model", model_file)
    assert code == EXIT_USAGE_ERROR and "no .cdf or .avif files" in err


# =========================================================================== 3: a word where there was silence
def test_progress_lines_without_a_terminal(tmp_path, pngs, model_file, capsys, monkeypatch):
    monkeypatch.setattr(batch, "PLAIN_PROGRESS_S", 0.0)  # as if every step took long
    code, _, err = run_cli(capsys, "compress", pngs["a"], "-o", tmp_path / "a.cdf", "--model", model_file, "--steps", 3)
    assert code == 0
    assert err.splitlines() == [f"a.png: step {n}/3, 0 s" for n in (1, 2, 3)]
    code, _, err = run_cli(capsys, "decompress", tmp_path / "a.cdf", "--model", model_file)
    assert code == 0 and err.splitlines()[-1] == "a.cdf: step 3/3, 0 s"


def test_progress_lines_come_at_most_every_few_seconds():
    times = iter([0.0, 1.0, 5.5, 7.0, 10.0, 16.0])
    on_step = batch.plain_progress("x.png", clock=lambda: next(times))
    with contextlib.redirect_stderr(io.StringIO()) as err:
        for step in range(1, 6):
            on_step(step, 5)
    lines = err.getvalue().splitlines()
    assert lines == ["x.png: step 2/5, 6 s", "x.png: step 5/5, 16 s"]  # 5 s apart at least, none in the first 5


def test_a_target_beyond_the_highest_quality_is_noted(tmp_path, photo, capsys):
    for option, value in (("--size", "20MB"), ("--bpp", "5")):
        code, out, err = run_cli(capsys, "compress", photo, "-o", tmp_path / "a.cdf", "-f", option, value, "--steps", 1,
                             "--model", "variable")
        size = (tmp_path / "a.cdf").stat().st_size
        assert code == 0 and "quality 9" in out
        asked = "--size 20000000 bytes" if option == "--size" else "--bpp 5"
        assert err == (f"corrdiff compress: note: {photo}: {asked} is out of this model's reach: wrote its highest "
                       f"quality (9), {size} bytes, {8 * size / (96 * 64):.4f} bpp\n")
    code, _, err = run_cli(capsys, "compress", photo, "-o", tmp_path / "b.cdf", "--bpp", "0.3", "--steps", 1,
                       "--model", "variable")
    assert code == 0 and err == ""  # within reach: nothing to say


def test_low_qualities_of_the_variable_model_warn_and_the_avif_models_do_not(tmp_path, photo, capsys):
    code, _, err = run_cli(capsys, "compress", photo, "-o", tmp_path / "a.cdf", "--quality", 2, "--steps", 1,
                       "--model", "variable")
    assert code == 0 and err.count("\n") == 1
    assert err.startswith("corrdiff compress: warning: --quality 2 is below 3, where this model's decodes show "
                          "blocks and shifted colours (docs/variable_rate.md)")
    code, _, err = run_cli(capsys, "compress", photo, "-o", tmp_path / "b.cdf", "--quality", 3, "--steps", 1,
                       "--model", "variable")
    assert code == 0 and err == ""
    code, _, err = run_cli(capsys, "compress", photo, "-o", tmp_path / "c.cdf", "--bpp", "0.001", "--steps", 1,
                       "--model", "variable")
    assert code == 0 and f"{photo}: the chosen quality 1 is below 3" in err  # a quality the search chose
    code, _, err = run_cli(capsys, "compress", photo, "-o", tmp_path / "d.cdf", "--model", "avif", "--quality", 1,
                       "--steps", 1)
    assert code == 0 and err == ""  # AVIF's own qualities


def png_16_bit(path: Path, samples: np.ndarray) -> Path:
    """A 48-bit RGB PNG (Pillow opens it as 8-bit RGB and cannot write one)."""
    h, w, _ = samples.shape
    raw = b"".join(b"\0" + samples[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_sixteen_bit_and_cmyk_inputs_get_a_note(tmp_path, model_file, capsys):
    rng = np.random.default_rng(0)
    rgb16 = png_16_bit(tmp_path / "rgb16.png", rng.integers(0, 65536, (24, 40, 3)))
    gray16 = tmp_path / "gray16.png"
    Image.fromarray(rng.integers(0, 65536, (24, 40)).astype(np.uint16)).save(gray16)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 24), (0, 200, 100, 20)).save(cmyk)
    plain = tmp_path / "plain.png"
    Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(plain)
    with pytest.warns(UserWarning, match="16-bit samples reduced to 8 bits"):
        assert load_image(rgb16).shape == (24, 40, 3)
    code, _, err = run_cli(capsys, "compress", rgb16, gray16, cmyk, plain, "-o", tmp_path / "out", "--model", model_file,
                       "--steps", 1)
    assert code == 0
    assert err.splitlines() == [
        f"corrdiff compress: note: {rgb16}: 16-bit samples reduced to 8 bits (corrdiff codes 8 bits per channel)",
        f"corrdiff compress: note: {gray16}: 16-bit samples reduced to 8 bits (corrdiff codes 8 bits per channel)",
        f"corrdiff compress: note: {cmyk}: CMYK converted to RGB without a colour profile (corrdiff codes RGB): "
        "colours may differ from the original's",
    ]


# =========================================================================== 4: small things
def test_ctrl_c_during_a_batch_prints_one_line(tmp_path, pngs, model_file, capsys, monkeypatch):
    real, calls = corrdiff.CorrDiffCodec.encode, []

    def encode(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: the handler records it and raises
        return real(self, *args, **kwargs)

    monkeypatch.setattr(corrdiff.CorrDiffCodec, "encode", encode)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "compress", pngs["a"], pngs["b"], "-o", out, "--model", model_file, "--steps", 1)
    assert code == EXIT_INTERRUPTED
    assert err == f"corrdiff compress: interrupted; wrote {out / 'a.cdf'} before stopping; nothing else was written\n"


def test_an_empty_cdf_is_called_empty(tmp_path, model_file, capsys):
    empty = tmp_path / "empty.cdf"
    empty.write_bytes(b"")
    code, _, err = run_cli(capsys, "decompress", empty, "--model", model_file)
    assert code == EXIT_USAGE_ERROR
    assert err == f"corrdiff decompress: error: {empty}: empty file (0 bytes; a corrdiff file has at least 35)\n"


def test_compress_of_a_cdf_points_to_decompress(tmp_path, pngs, model_file, capsys, monkeypatch):
    cdf = tmp_path / "a.cdf"
    assert run_cli(capsys, "compress", pngs["a"], "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    loads = count_model_loads(monkeypatch)
    code, _, err = run_cli(capsys, "compress", cdf, "--model", model_file)
    assert code == EXIT_USAGE_ERROR and loads == []  # before the model loads
    assert err == f"corrdiff compress: error: {cdf} is a corrdiff file: use corrdiff decompress\n"
    renamed = tmp_path / "a.bin"  # by its bytes too
    renamed.write_bytes(cdf.read_bytes())
    code, out, err = run_cli(capsys, "compress", renamed, pngs["b"], "-o", tmp_path / "out", "--model", model_file,
                         "--steps", 1)
    assert code == EXIT_USAGE_ERROR and f"{renamed} is a corrdiff file: use corrdiff decompress" in err
    assert "compressed 1 of 2 files (1 failed)" in out


def test_batch_uses_the_command_lines_exit_statuses():
    """One set of exit statuses (corrdiff/cli/errors.py, corrdiff/cli/interrupts.py), none of batch's own."""
    assert [name for name in vars(batch) if name.startswith("EXIT_")] == ["EXIT_USAGE_ERROR"]
    assert batch.EXIT_USAGE_ERROR is corrdiff.cli.errors.EXIT_USAGE_ERROR
