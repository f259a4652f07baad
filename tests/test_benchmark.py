"""``corrdiff bench`` (corrdiff.benchmark): the quick mode through the command line and in-process.

No timing thresholds: the tests check that every figure exists, is positive or finite where it
must be, and that derived figures (ratios, shares, FLOP/s, samples/s) agree with the figures
they come from. The quick mode runs the tiny untrained preset on images of a few thousand pixels.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch

from corrdiff import benchmark
from corrdiff.benchmark import (
    SECTIONS, Meter, bench_image, fit_exponent, markdown_table, parse_sizes, parse_skip, quick_settings,
    run_benchmark, time_call,
)
from corrdiff.cli import main

HEADINGS = ("# corrdiff bench", "## Machine", "## Encode and decode", "## Time vs pixels", "## Ours / peer",
            "## Decode time breakdown", "## Achieved FLOP/s of decoding", "## Training step",
            "## Gamma solver", "## Machine speed during the run")


@pytest.fixture(scope="module")
def quick_cli(tmp_path_factory):
    """``corrdiff bench --quick --json PATH``, run once: (exit code, stdout, parsed JSON)."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", "--quick", "--json", str(path)])
    return code, out.getvalue(), json.loads(path.read_text())


def test_cli_quick_prints_every_section(quick_cli):
    code, out, results = quick_cli
    assert code == 0
    positions = [out.index(h) for h in HEADINGS]
    assert positions == sorted(positions)  # in this order
    assert "UNTRAINED" in out and "(untrained: times only)" in out
    assert out.rstrip().endswith(".json")  # "wrote PATH" comes last
    # one table row per measured (codec, size)
    table = out.split("## Encode and decode")[1].split("\n\n")[1].splitlines()
    assert len(table) == 2 + len(results["codecs"]["rows"])


def test_codec_rows_are_real_measurements(quick_cli):
    _, _, results = quick_cli
    rows = results["codecs"]["rows"]
    peers = {"msh", "jpeg"} | ({"webp"} if "webp" in benchmark.baselines.available_formats() else set())
    assert {r["codec"] for r in rows} == {"corrdiff"} | peers
    assert len(rows) == len(results["settings"]["sizes"]) * (1 + len(peers))
    for row in rows:
        assert row["encode_s"] > 0 and row["decode_s"] > 0
        assert row["encode_s"] == pytest.approx(np.median(row["encode_times_s"]))
        assert len(row["encode_times_s"]) == row["repeats"] == 1
        assert row["bytes"] > 0 and row["bpp"] == pytest.approx(8 * row["bytes"] / row["pixels"])
        assert row["rss_loaded_MiB"] > 0 and row["encode_peak_MiB"] > 0 and row["decode_peak_MiB"] > 0
    ours = {r["size"]: r["bpp"] for r in rows if r["codec"] == "corrdiff"}
    assert set(ours) == {"48x32", "96x64"}


def test_exponents_finite_and_ratios_consistent(quick_cli):
    _, _, results = quick_cli
    section = results["codecs"]
    for name, exponents in section["exponents"].items():
        assert math.isfinite(exponents["encode"]) and math.isfinite(exponents["decode"]), name
    rows = {(r["codec"], r["size"]): r for r in section["rows"]}
    assert len(section["ratios"]) == len(rows) - 2  # every peer at every size
    for ratio in section["ratios"]:
        ours, peer = rows["corrdiff", ratio["size"]], rows[ratio["peer"], ratio["size"]]
        assert ratio["encode"] == pytest.approx(ours["encode_s"] / peer["encode_s"])
        assert ratio["decode"] == pytest.approx(ours["decode_s"] / peer["decode_s"])


def test_breakdown_and_flops_consistent(quick_cli):
    _, _, results = quick_cli
    breakdown = results["breakdown"]
    assert breakdown["total_s"] > 0
    assert sum(breakdown["share"].values()) == pytest.approx(1.0)
    assert sum(breakdown["seconds"].values()) == pytest.approx(breakdown["total_s"])
    for name in benchmark.NETWORKS[:3]:
        assert breakdown["seconds"][name] > 0
    # "rest" is the total minus the measured parts: negative would mean a part was counted twice
    assert all(seconds >= 0 for seconds in breakdown["seconds"].values()), breakdown["seconds"]
    flops = results["flops"]
    parts = {r["part"]: r for r in flops["rows"]}
    assert parts["score network"]["flop"] > 0
    assert parts["networks"]["flop"] == pytest.approx(sum(parts[n]["flop"] for n in benchmark.NETWORKS))
    assert parts["networks"]["flop"] <= flops["total_flop"] * (1 + 1e-9)
    for row in flops["rows"]:
        assert row["flops"] == pytest.approx(row["flop"] / row["seconds"])
        assert row["of_matmul"] == pytest.approx(row["flops"] / flops["reference"]["matmul"]["flops"])
    assert flops["reference"]["conv1x1"]["flops"] > 0
    speed = results["machine"]["speed"]
    assert speed["drift"] >= 0
    assert speed["drift"] == pytest.approx(benchmark.speed_drift(speed["start"], speed["end"]))


def test_training_and_gamma_figures(quick_cli):
    _, _, results = quick_cli
    rows = results["training"]
    assert [(r["phase"].split()[1], r["batch"]) for r in rows] == [("1", 1), ("1", 2), ("2", 1), ("2", 2)]
    for row in rows:
        assert row["step_s"] > 0 and row["loss_finite"]
        assert row["samples_per_s"] == pytest.approx(row["batch"] / row["step_s"])
    gamma = results["gamma"]
    closed, gradient = gamma["solvers"]["closed form"], gamma["solvers"]["gradient (L-BFGS)"]
    assert closed["median_s"] > 0 and gradient["median_s"] > 0
    assert gamma["ratio_gradient_over_closed"] == pytest.approx(gradient["median_s"] / closed["median_s"])
    assert gamma["agree_fp16"] and closed["gamma_fp16"] == gradient["gamma_fp16"]


def test_in_process_sections_follow_skip():
    emitted: list[str] = []
    settings = quick_settings(skip=frozenset({"codecs", "training", "flops"}))
    results = run_benchmark(settings, emit=emitted.append, progress=lambda text: None)
    text = "\n".join(emitted)
    assert "## Decode time breakdown" in text and "## Gamma solver" in text
    assert "## Encode and decode" not in text and "## Training step" not in text and "## Achieved" not in text
    assert "codecs" not in results and "training" not in results and "flops" not in results
    assert results["gamma"]["agree_fp16"]
    json.dumps(results)  # every figure is plain data


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "256by256"], "WIDTHxHEIGHT"),
    (["--sizes", "0x5"], "positive"),
    (["--skip", "codecs,nope"], "unknown section"),
    (["--repeats", "0"], "--repeats"),
    (["--model", "preset:nope"], "unknown preset"),
])
def test_cli_rejects_bad_options(capsys, argv, message):
    assert main(["bench", "--quick", *argv]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("corrdiff bench: error:") and message in err
    assert "## Encode and decode" not in out


def test_cli_refuses_to_overwrite_json_before_any_work(capsys, tmp_path):
    path = tmp_path / "bench.json"
    path.write_text("keep")
    assert main(["bench", "--quick", "--json", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "--force" in err and out == "" and path.read_text() == "keep"


def test_time_call_counts_warmup_and_repeats():
    calls = []
    timing, results = time_call(lambda: calls.append(len(calls)) or len(calls), repeats=3, warmup=2)
    assert len(calls) == 5 and results == [3, 4, 5]
    assert len(timing.times) == 3 and all(t >= 0 for t in timing.times) and timing.warmup == 2
    assert timing.median == sorted(timing.times)[1]
    with pytest.raises(ValueError):
        time_call(lambda: None, repeats=0)


def test_meter_sums_readings_and_cleans_up():
    ticks = iter(range(1000))
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())

    class Owner:
        def work(self):
            return net(torch.zeros(1, 2))

    owner = Owner()
    with Meter(reading=lambda: float(next(ticks))) as meter:
        meter.module("linear", net[0])
        meter.method("work", owner, "work")
        owner.work()
        owner.work()
    # per call of work: reading at entry, linear pre, linear post, exit -> linear 1, work 3
    assert meter.totals == {"linear": 2.0, "work": 6.0}
    assert not net[0]._forward_hooks and not net[0]._forward_pre_hooks and "work" not in vars(owner)


def test_fit_exponent():
    pixels = [1e4, 1e5, 1e6]
    assert fit_exponent(pixels, [2e-3 * p**1.5 for p in pixels]) == pytest.approx(1.5)
    assert fit_exponent([1e4], [1.0]) is None
    assert fit_exponent([1e4, 1e5], [0.0, 1.0]) is None


@pytest.mark.parametrize("size", [(48, 32), (256, 256), (1000, 100), (1920, 1080)])
def test_bench_image_sizes(size):
    photo = benchmark.demo_photo()
    image = bench_image(*size, photo=photo)
    assert image.shape == (size[1], size[0], 3) and image.dtype == np.uint8
    if size[0] >= photo.shape[1] and size[1] >= photo.shape[0]:  # tiled: the photo itself comes first
        assert np.array_equal(image[: photo.shape[0], : photo.shape[1]], photo)


def test_parsers_and_table():
    assert parse_sizes("256x256, 768X512") == ((256, 256), (768, 512))
    assert parse_skip("peers,training") == {"peers", "training"} and parse_skip(None) == frozenset()
    assert set(SECTIONS) >= {"codecs", "peers", "breakdown", "flops", "training", "gamma"}
    table = markdown_table(["name", "seconds"], [["a", "1.5"], ["longer name", "n/a"]]).splitlines()
    assert len({len(line) for line in table}) == 1  # aligned
    assert table[1].endswith("--:|") and table[2].endswith("    1.5 |")
