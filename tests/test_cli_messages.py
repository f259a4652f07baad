"""What a new user meets after the first runs: tiny images, a batch with bad files in it, outputs and
messages that name the file and the option, a quiet stderr, readable plots and demo pictures
(README.md "Use it", docs/reliability.md, docs/evaluation.md)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import corrdiff
from corrdiff.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_png(path: Path, height: int, width: int, channels: int = 3, seed: int = 0) -> Path:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def files(tmp_path, natural_images) -> dict[str, Path]:
    """ok.png (24x40), one.png (1x1), notimage.png (text), alpha.png (RGBA 24x40)."""
    ok = tmp_path / "ok.png"
    Image.fromarray(np.ascontiguousarray(natural_images["astronaut"][:24, :40])).save(ok)
    text = tmp_path / "notimage.png"
    text.write_text("not an image")
    return {"ok": ok, "one": write_png(tmp_path / "one.png", 1, 1), "notimage": text,
            "alpha": write_png(tmp_path / "alpha.png", 24, 40, channels=4)}


# --------------------------------------------------------------------------- tiny images
@pytest.mark.parametrize("height, width", [(1, 1), (2, 2), (5, 5), (3, 17)])
def test_tiny_images_round_trip_and_print_ms_ssim_as_n_a(tmp_path, model_file, capsys, height, width):
    png = write_png(tmp_path / "tiny.png", height, width)
    cdf, decoded = tmp_path / "tiny.cdf", tmp_path / "tiny.decoded.png"
    code, out, err = run(capsys, "compress", png, "--model", model_file, "--steps", 1)
    assert code == 0 and err == "", err
    assert f"{width}x{height}" in out and "MS-SSIM n/a" in out and "PSNR " in out
    code, out, err = run(capsys, "decompress", cdf, "--model", model_file)
    assert code == 0 and err == "", err
    assert np.asarray(Image.open(decoded)).shape == (height, width, 3)


def test_ms_ssim_is_printed_from_six_pixels():
    from corrdiff.cli import MS_SSIM_MIN_SIDE, quality_figures
    from corrdiff.losses.distortion import SSIM_WINDOW

    assert MS_SSIM_MIN_SIDE == SSIM_WINDOW // 2 + 1
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (6, 9, 3), dtype=np.uint8) for _ in range(2))
    assert "MS-SSIM n/a" not in quality_figures(a, b)
    assert "MS-SSIM n/a" in quality_figures(a[:5], b[:5])


# --------------------------------------------------------------------------- batches go on
def test_every_file_of_a_batch_is_tried_and_failures_are_named(tmp_path, files, model_file, capsys, monkeypatch):
    import corrdiff.cli.compress  # where compress's per-file line is made

    real = corrdiff.cli.compress.quality_figures
    alpha = np.asarray(Image.open(files["alpha"]).convert("RGB"))

    def quality_figures(reference, decoded):  # an unexpected error in one file's quality report
        if np.array_equal(reference, alpha):
            raise RuntimeError("boom")
        return real(reference, decoded)

    monkeypatch.setattr(corrdiff.cli.compress, "quality_figures", quality_figures)
    out_dir = tmp_path / "batch"
    inputs = [files["ok"], files["one"], files["notimage"], files["alpha"]]
    code, out, err = run(capsys, "compress", *inputs, "-o", out_dir, "--model", model_file, "--steps", 1)
    assert code == 2
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 2, err
    assert str(files["notimage"]) in errors[0]
    assert str(files["alpha"]) in errors[1] and "unexpected RuntimeError: boom" in errors[1]
    assert "compressed 2 of 4 files (2 failed)" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["ok.cdf", "one.cdf"]  # no file for the failed report


def test_every_file_of_a_decompress_batch_is_tried(tmp_path, files, model_file, capsys, monkeypatch):
    cdfs = tmp_path / "cdf"
    assert run(capsys, "compress", files["ok"], files["one"], "-o", cdfs, "--model", model_file, "--steps", 1)[0] == 0
    real = corrdiff.CorrDiffCodec.decompress
    calls = []

    def decompress(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(corrdiff.CorrDiffCodec, "decompress", decompress)
    inputs = [cdfs / "ok.cdf", files["notimage"], cdfs / "one.cdf"]
    code, out, err = run(capsys, "decompress", *inputs, "-o", tmp_path / "decoded", "--model", model_file)
    assert code == 2 and "Traceback" not in err
    errors = err.strip().splitlines()
    assert len(errors) == 2
    assert str(cdfs / "ok.cdf") in errors[0] and "unexpected RuntimeError" in errors[0]
    assert str(files["notimage"]) in errors[1] and "not a corrdiff file" in errors[1]
    assert "decompressed 1 of 3 files (2 failed)" in out
    assert [p.name for p in (tmp_path / "decoded").iterdir()] == ["one.png"]


# --------------------------------------------------------------------------- outputs and messages
@pytest.mark.parametrize("name", ["single.cdf", "single.PNG"])
def test_output_with_a_file_suffix_is_refused_for_several_inputs(tmp_path, files, model_file, capsys, name):
    code, _, err = run(capsys, "compress", files["ok"], files["alpha"], "-o", tmp_path / name, "--model", model_file)
    assert code == 2 and "with several inputs, -o names a folder" in err and "give a folder" in err
    assert not (tmp_path / name).exists()


def test_decompress_of_a_file_that_is_no_cdf_names_it(files, model_file, capsys):
    code, _, err = run(capsys, "decompress", files["ok"], "--model", model_file)
    assert code == 2
    assert err.strip() == f"corrdiff decompress: error: {files['ok']}: not a corrdiff file (bad magic bytes)"


def test_plot_of_a_file_that_is_no_json_names_it(files, capsys):
    code, _, err = run(capsys, "plot", files["ok"])
    assert code == 2 and "codec can't decode" not in err
    assert f"{files['ok']}: not a results JSON file" in err


def test_negative_sharpen_is_reported_as_sharpen(files, model_file, capsys):
    code, _, err = run(capsys, "compress", files["ok"], "--model", model_file, "--sharpen", "-1")
    assert code == 2 and err.startswith("corrdiff compress: error: --sharpen -1: rho must be") and "--gamma" not in err


def test_gamma_scale_on_a_decode_without_gammas_is_refused(tmp_path, files, model_file, capsys):
    cdf = tmp_path / "c.cdf"
    assert run(capsys, "compress", files["ok"], "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    for mode in ("e2e", "diffusion"):
        code, _, err = run(capsys, "decompress", cdf, "--mode", mode, "--gamma-scale", "0.5", "--model", model_file)
        assert code == 2 and f"--mode {mode} uses none; drop --gamma-scale" in err
    e2e = tmp_path / "e.cdf"
    assert run(capsys, "compress", files["ok"], "-o", e2e, "--model", model_file, "--mode", "e2e")[0] == 0
    code, _, err = run(capsys, "decompress", e2e, "--gamma-scale", "0.5", "--model", model_file)
    assert code == 2 and f"{e2e} was coded in mode e2e, without gammas" in err
    assert not (tmp_path / "c.decoded.png").exists() and not (tmp_path / "e.decoded.png").exists()
    assert run(capsys, "decompress", cdf, "--gamma-scale", "0.5", "--model", model_file)[0] == 0


def test_demo_refuses_to_replace_an_earlier_run_without_force(tmp_path, files, model_file, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--model", model_file, "--image", files["ok"], "--out", out, "--steps", 1]
    assert run(capsys, *argv)[0] == 0
    before = (out / "demo.cdf").stat().st_mtime_ns
    code, _, err = run(capsys, *argv)
    assert code == 2 and "exists; pass --force" in err
    assert (out / "demo.cdf").stat().st_mtime_ns == before
    assert run(capsys, *argv, "-f")[0] == 0


def test_auto_granularity_says_what_it_chose(tmp_path, files, model_file, capsys):
    code, out, err = run(capsys, "compress", files["ok"], "-o", tmp_path / "a.cdf", "--model", model_file,
                         "--steps", 3, "--gamma", "granularity=auto")
    assert code == 0, err
    steps = corrdiff.bitstream.unpack((tmp_path / "a.cdf").read_bytes()).granularities
    assert len(steps) == 3
    assert "auto chose " in out and sum(int(part.rsplit(" x", 1)[1]) for part in
                                        out.split("auto chose ")[1].strip().split(", ")) == 3
    code, out, _ = run(capsys, "compress", files["ok"], "-o", tmp_path / "s.cdf", "--model", model_file, "--steps", 1)
    assert "auto chose" not in out


# --------------------------------------------------------------------------- a quiet stderr
QUIET_PROCESS = """
import sys
from corrdiff.cli import main
assert main(["compress", sys.argv[1], "-o", sys.argv[2], "--model", sys.argv[3], "--steps", "1", "--sharpen", "1",
             "--gamma", "iterations=2"]) == 0
"""


def test_sharpen_and_alpha_print_no_warnings(tmp_path, files, model_file):
    """A fresh process (torch's warning comes once per process, when torch._dynamo is first imported)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "default"}
    proc = subprocess.run([sys.executable, "-c", QUIET_PROCESS, str(files["alpha"]), str(tmp_path / "a.cdf"),
                           str(model_file)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    note = f"corrdiff compress: note: {files['alpha']}: alpha channel dropped (corrdiff codes colour only)"
    assert proc.stderr == note + "\n"  # one line: no warning category, no source line; no torch.jit FutureWarning


def test_fit_prints_neither_the_args_warning_nor_tips(tmp_path, monkeypatch, recwarn, capsys):
    from lightning.pytorch import Trainer

    monkeypatch.setattr(sys, "argv", ["corrdiff", "fit", "--help"])  # as the console script has it
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "usage: corrdiff" in capsys.readouterr().out

    fitted = []
    monkeypatch.setattr(Trainer, "fit", lambda self, *args, **kwargs: fitted.append(1))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # where rank_zero_info logs
    logger.addHandler(handler)
    try:
        assert main(["fit", "--config", str(REPO / "experiments/tiny/phase1.yaml"), "--trainer.logger=false",
                     "--data.train_dirs", str(tmp_path), "--data.val_dirs", str(tmp_path),
                     "--trainer.default_root_dir", str(tmp_path),
                     "--trainer.callbacks.init_args.dirpath", str(tmp_path / "checkpoints")]) == 0
    finally:
        logger.removeHandler(handler)
    assert fitted == [1]
    assert not [r for r in records if "Tip:" in r.getMessage()]
    assert not [w for w in recwarn if "LightningCLI's args parameter" in str(w.message)]
    assert logger.filters == []  # the filter is only in place while the command runs


# --------------------------------------------------------------------------- plots
def _rd_files(tmp_path: Path) -> list[Path]:
    def write(name, key, bpp, psnr):
        path = tmp_path / f"{key}.json"
        path.write_text(json.dumps({"name": name, "results": {"bpp": bpp, "psnr-rgb": psnr}}))
        return path

    return [write("CorrDiff (corrected)", "cd", [0.2], [29.0]),
            write("JPEG", "jpeg", [0.14, 0.22, 0.35], [25.0, 28.6, 31.0]),
            write("WebP", "webp", [0.12, 0.2, 0.3], [26.0, 29.0, 31.5])]


def _legend_runs(figure, label: str) -> int:
    """Runs of the legend line's colour along the middle of its handle, in the rendered figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgb

    FigureCanvasAgg(figure).draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)
    legend = figure.legends[0]
    (line,) = [h for h, t in zip(legend.legend_handles, legend.get_texts()) if t.get_text() == label]
    box = line.get_window_extent()
    row = pixels.shape[0] - 1 - int(round((box.y0 + box.y1) / 2))
    colour = np.array(to_rgb(line.get_color())) * 255
    on = np.abs(pixels[row, int(box.x0) + 1:int(box.x1) - 1] - colour).sum(axis=1) < 120
    return int(on[0]) + int(np.count_nonzero(on[1:] & ~on[:-1]))


def test_plot_legend_shows_dashes_and_single_points_as_dots(tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    figures = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), real(self, *a, **k)))
    code, out, _ = run(capsys, "plot", *_rd_files(tmp_path), "-o", tmp_path / "rd.png")
    assert code == 0
    figure = figures[0]
    assert _legend_runs(figure, "JPEG") >= 3  # dashes around the marker: not one solid run
    legend = figure.legends[0]
    styles = {t.get_text(): h.get_linestyle() for h, t in zip(legend.legend_handles, legend.get_texts())}
    assert styles == {"CorrDiff (corrected)": "None", "JPEG": "--", "WebP": "--"}
    assert "one rate point each" in figure.get_supxlabel() and "CorrDiff (corrected)" in figure.get_supxlabel()
    assert "note: CorrDiff (corrected): one rate point each" in out


def test_bd_rate_cells_say_why_they_are_n_a(tmp_path, capsys):
    cd, jpeg, webp = _rd_files(tmp_path)
    far = tmp_path / "far.json"
    far.write_text(json.dumps({"name": "FAR", "results": {"bpp": [0.1, 0.2], "psnr-rgb": [60.0, 61.0]}}))
    code, out, _ = run(capsys, "plot", "--bd-rate", cd, jpeg)
    assert code == 0
    (row,) = [line for line in out.splitlines() if line.startswith("JPEG")]
    assert row.split()[1:] == ["n/a", "(one", "point)"]
    code, out, _ = run(capsys, "plot", "--bd-rate", jpeg, webp, far)
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[0] in ("WebP", "FAR")}
    assert "n/a" not in rows["WebP"] and rows["FAR"].endswith("n/a (no overlap)")
    assert "n/a (one point): this method or the reference has fewer than 2 RD points" in out


# --------------------------------------------------------------------------- demo picture
def test_comparison_is_a_grid_of_three_columns_with_labels_below():
    from corrdiff.demo import CAPTION_HEIGHT, GAP, side_by_side

    panels = [(np.full((40, 60, 3), 40 * i, np.uint8), f"panel {i}") for i in range(6)]
    canvas = np.asarray(Image.open(io.BytesIO(side_by_side(panels))).convert("RGB"))
    assert canvas.shape == (2 * (40 + CAPTION_HEIGHT) + GAP, 3 * 60 + 2 * GAP, 3)
    for i, (rgb, _) in enumerate(panels):
        x, y = (i % 3) * (60 + GAP), (i // 3) * (40 + CAPTION_HEIGHT + GAP)
        assert np.array_equal(canvas[y:y + 40, x:x + 60], rgb)
        assert (canvas[y + 40:y + 40 + CAPTION_HEIGHT, x:x + 60] < 128).any()  # its label below it
