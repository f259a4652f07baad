"""Many files per command (issue 13, item 9): ``corrdiff compress a.png b.png -o DIR`` and the same for
``decompress``: one model load, an output folder, a line per file and a summary, per-file errors that
do not stop the others, the output guards on every output, ``--threads``, progress on a terminal."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

import corrdiff.model_io
from corrdiff.cli import batch, main

from conftest import count_model_loads, run_cli


@pytest.fixture
def pngs(tmp_path, natural_images):
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for name in ("astronaut", "coffee"):
        path = folder / f"{name}.png"
        Image.fromarray(natural_images[name][:24, :40]).save(path)
        paths.append(path)
    return paths


def test_many_files_into_a_folder_with_one_model_load(tmp_path, pngs, model_file, capsys, monkeypatch):
    loads = count_model_loads(monkeypatch)
    cdfs, decoded = tmp_path / "cdf", tmp_path / "decoded"
    code, out, err = run_cli(capsys, "compress", *pngs, "-o", cdfs, "--model", model_file, "--steps", 2,
                         "--save-reconstruction", tmp_path / "rec")
    assert code == 0 and err == "", err
    assert sorted(p.name for p in cdfs.iterdir()) == ["astronaut.cdf", "coffee.cdf"]
    lines = out.strip().splitlines()
    assert len(lines) == 3 and all(" -> " in line and "bpp" in line for line in lines[:2])
    assert lines[2].startswith("compressed 2 of 2 files: ") and "bpp overall" in lines[2]

    code, out, err = run_cli(capsys, "decompress", *sorted(cdfs.iterdir()), "-o", decoded, "--model", model_file)
    assert code == 0 and err == "", err
    assert out.strip().splitlines()[-1].startswith("decompressed 2 of 2 files")
    assert len(loads) == 2  # one per command
    for name in ("astronaut", "coffee"):  # each output is the encoder's exact reconstruction
        assert np.array_equal(np.asarray(Image.open(decoded / f"{name}.png")),
                              np.asarray(Image.open(tmp_path / "rec" / f"{name}.png")))


def test_a_failing_input_is_reported_and_the_others_go_on(tmp_path, pngs, model_file, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    inputs = [pngs[0], text, tmp_path / "missing.png", pngs[1]]
    code, out, err = run_cli(capsys, "compress", *inputs, "-o", tmp_path / "out", "--model", model_file, "--steps", 1)
    assert code == 2
    errors = err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("corrdiff compress: error: ") for line in errors)
    assert "notes.txt" in errors[0] and "missing.png: no such file" in errors[1]
    assert "compressed 2 of 4 files (2 failed)" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut.cdf", "coffee.cdf"]


def test_output_guards_apply_to_every_output(tmp_path, pngs, model_file, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "coffee.cdf").write_bytes(b"precious")
    code, stdout, err = run_cli(capsys, "compress", *pngs, "-o", out, "--model", model_file, "--steps", 1)
    assert code == 2 and "coffee.cdf exists; pass --force" in err
    assert (out / "coffee.cdf").read_bytes() == b"precious" and (out / "astronaut.cdf").is_file()
    # a reconstruction folder that holds the inputs: never overwritten, even with --force
    originals = [p.read_bytes() for p in pngs]
    code, _, err = run_cli(capsys, "compress", *pngs, "-o", out, "--model", model_file, "--steps", 1,
                       "--save-reconstruction", pngs[0].parent, "-f")
    assert code == 2 and err.count("also an input") == 2
    assert [p.read_bytes() for p in pngs] == originals
    # two inputs of one name would write one output: the second is refused
    other = tmp_path / "other"
    other.mkdir()
    twin = other / pngs[0].name
    twin.write_bytes(pngs[0].read_bytes())
    code, _, err = run_cli(capsys, "compress", pngs[0], twin, "-o", tmp_path / "twins", "--model", model_file,
                       "--steps", 1)
    assert code == 2 and "would be written for both" in err


def test_output_must_be_a_folder_for_many_inputs(tmp_path, pngs, model_file, capsys):
    file = tmp_path / "file.cdf"
    file.write_bytes(b"x")
    code, _, err = run_cli(capsys, "compress", *pngs, "-o", file, "--model", model_file)
    assert code == 2 and "with several inputs, -o names a folder" in err
    code, _, err = run_cli(capsys, "compress", *pngs, "-o", tmp_path / "no" / "such", "--model", model_file)
    assert code == 2 and "no such folder" in err


def test_without_output_each_file_goes_beside_its_input(pngs, model_file, capsys):
    code, out, err = run_cli(capsys, "compress", *pngs, "--model", model_file, "--mode", "e2e")
    assert code == 0, err
    assert all(p.with_suffix(".cdf").is_file() for p in pngs)
    code, out, err = run_cli(capsys, "decompress", *[p.with_suffix(".cdf") for p in pngs], "--model", model_file)
    assert code == 0, err
    assert all(p.with_suffix(".decoded.png").is_file() for p in pngs)


def test_interrupt_keeps_the_finished_files(tmp_path, pngs, model_file, capsys, monkeypatch):
    real = corrdiff.CorrDiffCodec.encode
    calls = []

    def encode(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(corrdiff.CorrDiffCodec, "encode", encode)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "compress", *pngs, "-o", out, "--model", model_file, "--steps", 1)
    assert code == 130
    assert err == (f"corrdiff compress: interrupted; wrote {out / 'astronaut.cdf'} before stopping; nothing else was "
                   "written\n")  # one line (corrdiff/cli/entry.py), no second one of the batch's own
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut.cdf"]  # no partial second file


def test_threads_option_is_applied_and_restored(tmp_path, pngs, model_file, capsys, encode_threads):
    before = torch.get_num_threads()
    code, _, err = run_cli(capsys, "compress", pngs[0], "-o", tmp_path / "t.cdf", "--model", model_file, "--steps", 1,
                       "--threads", 2)
    assert code == 0, err
    assert encode_threads == [2] and torch.get_num_threads() == before
    with pytest.raises(SystemExit) as info:
        main(["compress", str(pngs[0]), "--threads", "0"])
    assert info.value.code == 2 and "must be >= 1" in capsys.readouterr().err


def test_small_images_are_coded_on_one_thread_by_default(tmp_path, pngs, model_file, capsys, monkeypatch,
                                                        encode_threads):
    """Without --threads a small image is coded on one thread (two that wait for each other on a busy
    machine cost seconds); a larger one what the machine can give (corrdiff/threads.py): here two idle
    cores."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0), raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_cli(capsys, "compress", pngs[0], "-o", tmp_path / "a.cdf", "--model", model_file, "--steps", 1)[0] == 0
        monkeypatch.setattr(batch, "SMALL_IMAGE_PIXELS", 0)  # as if the image were large
        assert run_cli(capsys, "compress", pngs[0], "-o", tmp_path / "b.cdf", "--model", model_file, "--steps", 1)[0] == 0
    finally:
        torch.set_num_threads(before)
    assert encode_threads == [1, 2]
    assert batch.coding_threads(10**7, 3, 2) == 3 and batch.coding_threads(10**7, None, 2) == 2


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_of_sampling_steps_on_a_terminal_only(tmp_path, pngs, model_file, capsys, monkeypatch):
    code, _, err = run_cli(capsys, "compress", pngs[0], "-o", tmp_path / "a.cdf", "--model", model_file, "--steps", 3)
    assert code == 0 and err == ""  # not a terminal: no bar
    monkeypatch.setattr(batch, "PROGRESS_DELAY_S", 0.0)  # an image that takes long
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["compress", str(pngs[0]), "-o", str(tmp_path / "b.cdf"), "--model", str(model_file),
                 "--steps", "3"]) == 0
    assert "astronaut.png" in terminal.getvalue() and "step" in terminal.getvalue()  # the bar, then cleared


def test_codec_reports_each_sampling_step(tiny_codec):
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    steps = []
    data = tiny_codec.encode(image, steps=3, on_step=lambda done, total: steps.append((done, total))).data
    assert steps == [(1, 3), (2, 3), (3, 3)]
    steps.clear()
    tiny_codec.decompress(data, on_step=lambda done, total: steps.append((done, total)))
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_python_dash_m_corrdiff_is_the_command_line(tmp_path):
    """``python -m corrdiff`` runs the CLI (cli.run) and returns its exit status."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "corrdiff", "decompress", str(tmp_path / "missing.cdf")],
                          capture_output=True, text=True, env=env, timeout=120)
    expected = f"corrdiff decompress: error: {tmp_path / 'missing.cdf'}: no such file"
    assert proc.returncode == 2 and proc.stderr.strip() == expected


def test_every_input_failing_loads_no_model(tmp_path, model_file, capsys, monkeypatch):
    loads = count_model_loads(monkeypatch)
    code, out, err = run_cli(capsys, "compress", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "out",
                         "--model", model_file, "--eta", "0.5")
    assert code == 2 and err.count("no such file") == 2 and "compressed 0 of 2 files (2 failed)" in out
    assert loads == []
