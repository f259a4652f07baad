"""Evaluation tooling: ``corrdiff eval`` (CSV + CompressAI-style JSON), metrics, baselines, ``corrdiff plot``, BD-rate.

Sized for a 2-core CPU: three ~64x96 crops of scikit-image photos, 2 sampling steps,
two baseline qualities; one shared eval run for the schema checks.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corrdiff import baselines
from corrdiff.cli import main
from corrdiff.codec import CorrDiffCodec
from corrdiff.evaluation import EvaluationError, run_eval
from corrdiff.metrics import (
    MetricSuite,
    PerceptualUnavailable,
    WEIGHT_FILES,
    extract_patches,
    fid_patches,
    frechet_distance,
    kernel_inception_distance,
)
from corrdiff.plotting import bd_metric, bd_rate, load_results

STEPS = 2
QUALITIES = (20, 60)
MODES = ("corrected", "diffusion", "e2e")


def numpy_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three ~64x96 crops of scikit-image photos (one odd size) and one unreadable file."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(np.ascontiguousarray(data.astronaut()[::8, ::8][:64, :64])).save(folder / "astronaut.png")
    Image.fromarray(np.ascontiguousarray(data.chelsea()[::4, ::4][:63, :95])).save(folder / "chelsea.png")
    Image.fromarray(np.ascontiguousarray(data.coffee()[::8, ::8][:64, :72])).save(folder / "coffee.png")
    (folder / "broken.png").write_bytes(b"this is not a PNG")
    return folder


@pytest.fixture(scope="module")
def eval_run(photos, model_file, tmp_path_factory):
    """One ``corrdiff eval`` through the command line; returns (out dir, exit code, stdout+stderr)."""
    out = tmp_path_factory.mktemp("eval") / "results"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = main(["eval", str(photos), "--model", str(model_file), "--steps", str(STEPS), "--out", str(out),
                     "--baselines", "jpeg,webp", "--qualities", ",".join(map(str, QUALITIES)),
                     "--weights-dir", str(out.parent / "no-weights-here"), "--no-progress"])
    return out, code, buf.getvalue()


def load(out: Path, key: str) -> dict:
    return json.loads((out / f"{key}.json").read_text())


# --------------------------------------------------------------------------- schema
def test_eval_writes_csv_and_compressai_json(eval_run):
    out, code, log = eval_run
    assert code == 0, log
    index = json.loads((out / "index.json").read_text())
    expected = {f"corrdiff-{m}" for m in MODES} | {"jpeg", "jpeg-matched", "webp", "webp-matched"}
    assert set(index["methods"]) == expected
    for key in expected:
        summary = load(out, key)
        assert {"name", "description", "results"} <= set(summary)
        results = summary["results"]
        assert {"bpp", "psnr-rgb", "ms-ssim-rgb", "hf-ratio", "haarpsi", "gmsd"} <= set(results)
        lengths = {len(v) for v in results.values()}
        assert lengths == {len(summary["points"])}, key  # one entry per RD point
        assert all(isinstance(v, float) for v in results["psnr-rgb"])
        assert results["bpp"] == sorted(results["bpp"])
        assert summary["num_images"] == 3 and summary["num_failed"] == 1
        assert "broken.png" in summary["failed"]
    assert len(load(out, "corrdiff-corrected")["points"]) == 1  # one model = one point
    assert len(load(out, "jpeg")["points"]) == len(QUALITIES)
    assert load(out, "jpeg-matched")["points"] == ["tiny"]  # one matched point per model, not per mode (item 11)
    assert "corrdiff-corrected" in log and "broken.png" in log  # the table and the failure are reported

    rows = read_csv(out / "per_image.csv")
    assert list(rows[0])[:7] == ["method", "point", "image", "width", "height", "bytes", "bpp"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 3 * (len(MODES) + 2 * (len(QUALITIES) + 1))
    assert [r["image"] for r in rows if r["status"].startswith("failed")] == ["broken.png"]


def test_bpp_is_file_size_and_psnr_matches_numpy(eval_run, photos, tiny_codec):
    out, _, _ = eval_run
    rows = read_csv(out / "per_image.csv")
    for r in rows:
        if r["status"] == "ok":
            assert float(r["bpp"]) == pytest.approx(8 * int(r["bytes"]) / (int(r["width"]) * int(r["height"])),
                                                    rel=1e-5)
    from corrdiff.metrics import to_tensor, to_uint8

    rgb = np.asarray(Image.open(photos / "chelsea.png").convert("RGB"))
    for mode in MODES:
        (r,) = [r for r in rows if r["method"] == f"corrdiff-{mode}" and r["image"] == "chelsea.png"]
        data = tiny_codec.compress(to_tensor(rgb), steps=STEPS, seed=0, mode=mode)  # deterministic: same bytes
        assert int(r["bytes"]) == len(data)
        decoded = to_uint8(tiny_codec.decompress(data))
        assert float(r["psnr-rgb"]) == pytest.approx(numpy_psnr(rgb, decoded), abs=2e-4)
        assert r["decode_mismatch"] == "0"  # decoder reproduces the encoder's reconstruction
    for q in QUALITIES:
        (r,) = [r for r in rows if r["method"] == "jpeg" and r["point"] == f"q{q}" and r["image"] == "chelsea.png"]
        res = baselines.encode(rgb, "jpeg", q)
        assert int(r["bytes"]) == len(res.data)
        assert float(r["psnr-rgb"]) == pytest.approx(numpy_psnr(rgb, res.decoded), abs=2e-4)
    # summary = mean over images of the per-image rows
    summary = load(out, "corrdiff-e2e")["results"]
    e2e = [r for r in rows if r["method"] == "corrdiff-e2e"]
    assert summary["psnr-rgb"][0] == pytest.approx(np.mean([float(r["psnr-rgb"]) for r in e2e]), abs=1e-4)
    assert summary["bpp"][0] == pytest.approx(np.mean([float(r["bpp"]) for r in e2e]), rel=1e-5)


def test_matched_baselines_are_the_highest_quality_not_above_the_target(eval_run, photos):
    out, _, _ = eval_run
    rows = read_csv(out / "per_image.csv")
    matched = [r for r in rows if r["method"].endswith("-matched")]
    assert matched
    for key in ("jpeg-matched", "webp-matched"):
        summary = load(out, key)
        over = [sum(float(r["bpp"]) > float(r["target_bpp"]) for r in matched
                    if r["method"] == key and r["point"] == p) for p in summary["points"]]
        assert summary["over_target"] == over
    for r in matched:
        fmt, quality, target = r["method"].split("-")[0], int(r["quality"]), float(r["target_bpp"])
        (ours,) = [o for o in rows if o["method"] == "corrdiff-corrected" and o["image"] == r["image"]]
        assert target == pytest.approx(float(ours["bpp"]), rel=1e-5)
        rgb = np.asarray(Image.open(photos / r["image"]).convert("RGB"))
        if quality > 1:
            assert float(r["bpp"]) <= target
        if quality < 100:
            assert baselines.encode(rgb, fmt, quality + 1).bpp > target


def test_unavailable_metrics_are_reported_not_computed(eval_run):
    out, _, log = eval_run
    summary = load(out, "corrdiff-corrected")
    for metric in ("lpips-alex", "lpips-vgg", "dists", "fid", "kid"):
        assert metric not in summary["results"]
        assert "weights not found" in summary["unavailable"][metric]
        assert metric in log
    assert "no-weights-here" in summary["unavailable"]["lpips-alex"]  # the --weights-dir was searched
    assert WEIGHT_FILES["inception"] in summary["unavailable"]["fid"]
    rows = read_csv(out / "per_image.csv")
    assert "lpips-alex" not in rows[0] and "lpips-alex" in rows[0]["unavailable"]
    # one line says what was skipped and how to enable it (issue 13, item 11)
    skipped = [line for line in log.splitlines() if "lpips" in line]
    assert len(skipped) == 1 and "skipped lpips-alex, lpips-vgg, dists, fid, kid" in skipped[0]
    assert "--weights-dir" in skipped[0] and WEIGHT_FILES["vgg16"] in skipped[0]


def test_matched_baselines_match_the_corrected_file_once_per_model(eval_run):
    out, _, _ = eval_run
    rows = read_csv(out / "per_image.csv")
    for image in {r["image"] for r in rows if r["status"] == "ok"}:
        (corrected,) = [r for r in rows if r["method"] == "corrdiff-corrected" and r["image"] == image]
        matched = [r for r in rows if r["method"] == "jpeg-matched" and r["image"] == image]
        assert len(matched) == 1 and matched[0]["point"] == "tiny"
        assert float(matched[0]["target_bpp"]) == pytest.approx(float(corrected["bpp"]), rel=1e-5)


# --------------------------------------------------------------------------- pretrained metrics
def test_pretrained_metric_paths_with_a_weights_dir(tmp_path, tiny_codec, random_weights_dir):
    """LPIPS and FID/KID code paths, with weight files of randomly initialised networks (numbers meaningless)."""
    from skimage import data

    folder = tmp_path / "big"
    folder.mkdir()
    Image.fromarray(np.ascontiguousarray(data.astronaut()[:384, :512])).save(folder / "astronaut.png")
    summaries = run_eval(folder, [tiny_codec], out=tmp_path / "out", modes="e2e", baselines="jpeg", qualities=[50],
                         matched=False, metrics="psnr-rgb,lpips-alex,fid,kid", progress=False,
                         weights_dir=random_weights_dir, log=lambda *_: None)
    for key in ("corrdiff-e2e", "jpeg"):
        s = summaries[key]
        assert s["unavailable"] == {}
        assert s["settings"]["metrics"] == ["psnr-rgb", "lpips-alex", "fid", "kid"]
        res = s["results"]
        assert list(res) == ["bpp", "psnr-rgb", "lpips-alex", "fid", "kid", "kid-std", "fid-patches", "encoding_time",
                             "decoding_time", *([] if key == "corrdiff-e2e" else ["quality"])]
        assert res["fid-patches"] == [3.0]  # 1 x 2 patches, then 1 x 1 in the 128-px-shifted pass
        assert math.isfinite(res["fid"][0]) and res["fid"][0] >= -1e-6
        assert math.isfinite(res["kid"][0]) and res["lpips-alex"][0] >= 0


def test_too_few_patches_make_fid_unavailable(tmp_path, tiny_codec, photos, random_weights_dir):
    summaries = run_eval(photos, [tiny_codec], out=tmp_path / "out", modes="e2e", baselines="none", limit=1,
                         metrics="psnr-rgb,fid", progress=False, weights_dir=random_weights_dir,
                         log=lambda *_: None)
    s = summaries["corrdiff-e2e"]
    assert "fid" not in s["results"] and "at least 2 patches" in s["unavailable"]["fid"]


def test_vgg_metrics_from_a_weights_dir(random_weights_dir):
    """LPIPS-VGG and DISTS read the features-only VGG-16 file; an image against itself scores 0."""
    suite = MetricSuite(["lpips-vgg", "dists"], weights_dir=random_weights_dir)
    assert suite.image_metrics == ["lpips-vgg", "dists"] and suite.unavailable == {}
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
    same, other = suite.score(a, a), suite.score(a, b)
    for name in ("lpips-vgg", "dists"):
        assert same[name] == pytest.approx(0.0, abs=1e-5) and other[name] > same[name]


def test_weights_dir_is_searched(tmp_path):
    """A local AlexNet checkpoint (here a random features-only one) makes LPIPS-alex available."""
    from torchvision.models import alexnet

    with pytest.raises(PerceptualUnavailable, match="weights not found"):
        from corrdiff.metrics import build_lpips

        build_lpips("alex", tmp_path)
    state = {k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / WEIGHT_FILES["alexnet"])
    suite = MetricSuite(["psnr-rgb", "lpips-alex", "lpips-vgg"], weights_dir=tmp_path)
    assert suite.image_metrics == ["psnr-rgb", "lpips-alex"] and "lpips-vgg" in suite.unavailable
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    scores = suite.score(a, a)
    assert scores["lpips-alex"] == pytest.approx(0.0, abs=1e-6) and math.isinf(scores["psnr-rgb"])


# --------------------------------------------------------------------------- FID/KID pieces
def test_fid_patches_follow_the_hific_protocol():
    image = torch.arange(2 * 3 * 512 * 640, dtype=torch.float32).reshape(2, 3, 512, 640)
    first = extract_patches(image)
    assert first.shape == (2 * 2 * 2, 3, 256, 256)
    assert torch.equal(first[1], image[0, :, 0:256, 256:512])  # row-major
    both = fid_patches(image)
    assert both.shape == (8 + 2 * 1 * 2, 3, 256, 256)  # shifted: 384 x 512 -> 1 x 2 per image
    assert torch.equal(both[8], image[0, :, 128:384, 128:384])
    assert extract_patches(torch.zeros(1, 3, 255, 900)).shape[0] == 0


def test_frechet_distance_matches_scipy_and_kid_separates():
    from scipy import linalg

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g) * 1.3 + 0.2
    r, f = real.double().numpy(), fake.double().numpy()
    s1, s2 = np.cov(r, rowvar=False), np.cov(f, rowvar=False)
    expected = np.sum((r.mean(0) - f.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)
    same, _ = kernel_inception_distance(real, real[torch.randperm(200, generator=g)], subsets=20, subset_size=100)
    apart, _ = kernel_inception_distance(real, fake, subsets=20, subset_size=100)
    assert abs(same) < apart


# --------------------------------------------------------------------------- BD-rate
def test_bd_rate_of_a_uniformly_cheaper_curve():
    bpp = [0.12, 0.25, 0.5, 0.9]
    psnr = [27.0, 29.5, 32.0, 34.1]
    assert bd_rate(bpp, psnr, [0.9 * b for b in bpp], psnr) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate(bpp, psnr, [1.25 * b for b in bpp], psnr) == pytest.approx(25.0, abs=1e-9)
    lpips = [0.4, 0.3, 0.2, 0.12]  # lower is better: the same formula holds
    assert bd_rate(bpp, lpips, [0.8 * b for b in bpp], lpips) == pytest.approx(-20.0, abs=1e-9)
    assert bd_metric(bpp, psnr, bpp, [p + 0.5 for p in psnr]) == pytest.approx(0.5, abs=1e-9)
    assert math.isnan(bd_rate(bpp, psnr, [0.3], [30.0]))  # one point: undefined
    assert math.isnan(bd_rate(bpp, psnr, bpp, [p + 20 for p in psnr]))  # no overlap
    # a point whose metric is unknown (NaN, None) is left out, by both functions
    shifted = [p + 0.5 for p in psnr]
    assert bd_metric(bpp + [1.2], psnr + [math.nan], bpp, shifted) == pytest.approx(0.5, abs=1e-9)
    assert bd_rate(bpp + [1.2], psnr + [None], [0.9 * b for b in bpp], psnr) == pytest.approx(-10.0, abs=1e-9)


def test_bd_metric_in_a_rate_window():
    """Narrowed to a bpp window, the mean gap counts only the window. A curve 1 dB better at its three lowest
    points: PCHIP's slopes on [0.1, 0.12] and [0.5, 0.9] come from points that both curves share (shifted alike
    or equal), so the gap there is exactly 1 dB and 0 dB; over the whole range it lies between."""
    bpp = [0.1, 0.12, 0.25, 0.3, 0.5, 0.9, 1.5]
    psnr = [26.5, 27.0, 29.5, 30.0, 32.0, 34.1, 35.5]
    better_low = [p + (1.0 if b <= 0.25 else 0.0) for b, p in zip(bpp, psnr)]
    assert bd_metric(bpp, psnr, bpp, better_low, rate_range=(0.1, 0.12)) == pytest.approx(1.0, abs=1e-9)
    assert bd_metric(bpp, psnr, bpp, better_low, rate_range=(0.5, 0.9)) == pytest.approx(0.0, abs=1e-9)
    whole = bd_metric(bpp, psnr, bpp, better_low)
    assert 0.0 < whole < 1.0
    assert bd_metric(bpp, psnr, bpp, better_low, rate_range=(0.01, 10.0)) == pytest.approx(whole, abs=1e-12)


# --------------------------------------------------------------------------- plot
def test_plot_and_bd_rate_commands(eval_run, tmp_path, capsys):
    out, _, _ = eval_run
    png = tmp_path / "rd.png"
    assert main(["plot", str(out / "index.json"), "-o", str(png), "-m", "psnr-rgb,ms-ssim-rgb"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    ref = {"name": "REF", "results": {"bpp": [0.1, 0.2, 0.4], "psnr-rgb": [28.0, 30.0, 32.0]}}
    test = {"name": "TEST", "results": {"bpp": [0.09, 0.18, 0.36], "psnr-rgb": [28.0, 30.0, 32.0]}}
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    (tmp_path / "test.json").write_text(json.dumps(test))
    capsys.readouterr()
    assert main(["plot", "--bd-rate", str(tmp_path / "ref.json"), str(tmp_path / "test.json")]) == 0
    text = capsys.readouterr().out
    assert "-10.00" in text and "TEST" in text
    assert main(["plot", str(tmp_path / "ref.json"), "-m", "lpips-alex", "-o", str(tmp_path / "x.png")]) == 2


def _plotted_axes(monkeypatch, argv) -> list:
    """Run ``corrdiff plot ARGV`` and return the figure's panels (savefig captured)."""
    from matplotlib.figure import Figure

    figures = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), real(self, *a, **k)))
    assert main([str(a) for a in argv]) == 0
    return [ax for ax in figures[0].axes]


def test_plot_fits_corrdiff_draws_one_curve_per_method_and_clips_outliers(tmp_path, monkeypatch, capsys):
    """Issue 13, item 12: axes fit CorrDiff's range, a ladder evaluated model by model is one curve,
    an outlier does not flatten its panel."""
    def write(name: str, key: str, bpp: list, psnr: list, hf: list) -> Path:
        path = tmp_path / f"{key}.json"
        path.write_text(json.dumps({"name": name, "results": {"bpp": bpp, "psnr-rgb": psnr, "hf-ratio": hf}}))
        return path

    rungs = [write("CorrDiff (corrected)", f"rung{i}", [b], [p], [h])  # one eval run per model of the ladder
             for i, (b, p, h) in enumerate([(0.22, 29.6, 0.18), (0.11, 28.2, 0.13), (0.16, 29.1, 0.15)])]
    diffusion = write("CorrDiff (diffusion)", "diffusion", [0.11, 0.16, 0.22], [27.4, 28.3, 29.0], [7.9, 0.26, 0.29])
    jpeg = write("JPEG", "jpeg", [0.14, 0.22, 0.35, 0.64, 1.73], [25.0, 28.6, 31.0, 34.0, 38.8],
                 [0.6, 0.55, 0.57, 0.73, 0.91])
    psnr_ax, hf_ax = _plotted_axes(monkeypatch, ["plot", *rungs, diffusion, jpeg, "-o", tmp_path / "rd.png"])
    assert psnr_ax.get_xlim()[1] < 0.4  # CorrDiff's range, not JPEG q90's 1.7 bpp
    (ladder,) = [line for line in psnr_ax.get_lines() if line.get_label() == "CorrDiff (corrected)"]
    assert list(ladder.get_xdata()) == [0.11, 0.16, 0.22] and ladder.get_linestyle() == "-"
    assert hf_ax.get_ylim()[1] < 1.5  # the 7.9 outlier is drawn on the edge, not given the panel
    assert any("7.9" in text.get_text() for text in hf_ax.texts)
    psnr_ax, _ = _plotted_axes(monkeypatch, ["plot", *rungs, jpeg, "--full-range", "-o", tmp_path / "full.png"])
    assert psnr_ax.get_xlim()[1] > 1.73


def test_y_view_keeps_a_spread_and_drops_far_outliers():
    from corrdiff.plotting import y_view

    spread = [0.14, 0.14, 0.15, 0.16, 0.17, 0.41, 0.6, 0.55]
    lo, hi = y_view(spread + [61.0, 69.4, 940.0])
    assert lo < 0.14 and 0.6 < hi < 1.0
    lo, hi = y_view([23.2, 25.0, 28.2, 29.6, 33.9, 38.8])  # no outlier: everything shown
    assert lo < 23.2 and hi > 38.8


def test_compressai_plot_utility_reads_our_json(eval_run, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from compressai.utils.plot.__main__ import main as compressai_plot
    from compressai.utils.plot.__main__ import parse_json_file

    out, _, _ = eval_run
    ours = load(out, "corrdiff-corrected")
    parsed = parse_json_file(out / "corrdiff-corrected.json", "psnr")
    assert parsed["name"] == ours["name"] and parsed["xs"] == ours["results"]["bpp"]
    assert parsed["ys"] == ours["results"]["psnr-rgb"]
    png = tmp_path / "compressai.png"
    compressai_plot(["-f", str(out / "corrdiff-corrected.json"), str(out / "jpeg.json"), "-m", "ms-ssim",
                     "-o", str(png)])
    assert png.stat().st_size > 0
    assert load_results(out / "jpeg.json")["name"] == "JPEG"


# --------------------------------------------------------------------------- options and failures
def test_same_file_ablation_shares_one_bitstream(photos, tiny_codec, tmp_path):
    summaries = run_eval(photos, [tiny_codec], out=tmp_path / "out", modes="corrected,e2e", steps=1,
                         same_file=True, baselines="none", metrics="psnr-rgb", limit=1, progress=False,
                         log=lambda *_: None)
    assert summaries["corrdiff-corrected"]["results"]["bpp"] == summaries["corrdiff-e2e"]["results"]["bpp"]
    assert "decoded from the 'corrected' file" in summaries["corrdiff-e2e"]["description"]


def test_eval_usage_errors(photos, model_file, tmp_path, capsys):
    bad = [["--modes", "corrected,bogus"], ["--steps", "0"], ["--baselines", "gif"], ["--metrics", "psnr,nope"],
           ["--sampler", "euler"], ["--sampler", "ddim,order=2"], ["--sampler", "ddim,eta=2", "--modes", "e2e"]]
    for extra in bad:
        code = main(["eval", str(photos), "--model", str(model_file), "--out", str(tmp_path / "x"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("corrdiff eval: error: "), (extra, err)
    assert main(["eval", str(tmp_path / "missing"), "--model", str(model_file)]) == 2


def test_eval_encodes_with_the_sampler_spec(photos, model_file, tmp_path, monkeypatch):
    samplers = []
    encode = CorrDiffCodec.encode
    monkeypatch.setattr(CorrDiffCodec, "encode", lambda self, *a, **k: samplers.append(k["sampler"]) or encode(self, *a, **k))
    out = tmp_path / "out"
    code = main(["eval", str(photos), "--model", str(model_file), "--steps", "2", "--modes", "corrected", "--limit", "1",
                 "--baselines", "none", "--metrics", "psnr-rgb", "--sampler", "ddim_quadratic,eta=0.5", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    assert samplers == [{"name": "ddim_quadratic", "eta": 0.5}]
    assert load(out, "corrdiff-corrected")["settings"]["sampler"] == {"name": "ddim_quadratic", "eta": 0.5}
    with open(out / "per_image.csv") as f:
        assert [row["decode_mismatch"] for row in csv.DictReader(f)] == ["0"]


def test_all_images_failing_is_an_error(tmp_path, tiny_codec):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"junk")
    with pytest.raises(EvaluationError, match="all 1 image"):
        run_eval(folder, [tiny_codec], out=tmp_path / "out", baselines="none", metrics="psnr-rgb",
                 progress=False, log=lambda *_: None)
    assert json.loads((tmp_path / "out" / "index.json").read_text())["num_failed"] == 1


def test_network_scores_get_the_input_range_their_network_expects():
    """LPIPS takes [-1, 1] as (reference, test); DISTS [0, 1] as (test, reference)."""
    from torch import nn

    from corrdiff.metrics import network_score

    seen = []

    class Spy(nn.Module):
        def forward(self, a, b):
            seen.append((float(a.min()), float(a.max()), float(b.min()), float(b.max())))
            return torch.zeros(1)

    black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    network_score(Spy(), "cpu", signed=True)(black, white)
    network_score(Spy(), "cpu", signed=False)(black, white)
    assert seen == [(-1.0, -1.0, 1.0, 1.0), (1.0, 1.0, 0.0, 0.0)]
