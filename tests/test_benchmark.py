"""``corrdiff bench`` (corrdiff.bench): the quick mode through the command line and in-process.

No timing thresholds: the tests check that every figure exists, is positive or finite where it
must be, that the rows cover what the settings ask for, that the bytes are the codec's real
output, and that the training section runs the LightningModules' own step (their parameters,
quantiles and EMA move; their guarded steps run). The quick mode runs the tiny untrained preset
on images of a few thousand pixels.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch

from corrdiff.baselines import available_formats
from corrdiff.bench import SECTIONS, parse_sizes, parse_skip, quick_settings, run_benchmark
from corrdiff.bench.codecs import fit_exponent
from corrdiff.bench.inputs import bench_image, demo_photo, load_bench_model, training_batch
from corrdiff.bench.measure import Meter, time_call
from corrdiff.bench.profile import HYPER_SYNTHESIS, NETWORKS, networks
from corrdiff.bench.report import markdown_table
from corrdiff.bench.training import fit_steps
from corrdiff.cli import main
from corrdiff.codec import CorrDiffCodec
from corrdiff.metrics import to_tensor
from corrdiff.training import AdversarialTraining, JointTraining, ScoreTraining
from corrdiff.training.terms import StepTerms

QUICK = quick_settings()

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


def _finite_positive(*values: float) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)


def test_codec_rows_cover_every_codec_and_size(quick_cli):
    _, _, results = quick_cli
    rows = results["codecs"]["rows"]
    peers = {"msh", "jpeg"} | ({"webp"} if "webp" in available_formats() else set())
    sizes = results["settings"]["sizes"]
    assert sorted((r["codec"], r["size"]) for r in rows) == sorted(
        (codec, size) for codec in {"corrdiff"} | peers for size in sizes)
    for row in rows:
        repeats, warmup = QUICK.runs((row["width"], row["height"]))
        assert (row["repeats"], row["warmup"], len(row["encode_times_s"])) == (repeats, warmup, repeats)
        assert _finite_positive(row["encode_s"], row["decode_s"], row["bytes"], row["bpp"])
        assert _finite_positive(row["rss_loaded_MiB"], row["encode_peak_MiB"], row["decode_peak_MiB"])


def test_codec_bytes_are_the_models_real_output(quick_cli):
    """The measuring process encodes with the same model: its byte count is this process's encoding's."""
    _, _, results = quick_cli
    codec = load_bench_model(QUICK.model)
    for row in (r for r in results["codecs"]["rows"] if r["codec"] == "corrdiff"):
        data = codec.encode(to_tensor(bench_image(row["width"], row["height"]))).data
        assert row["bytes"] == len(data), row["size"]


def test_exponents_finite_and_ratios_cover_every_peer(quick_cli):
    _, _, results = quick_cli
    section = results["codecs"]
    assert set(section["exponents"]) == {r["codec"] for r in section["rows"]}
    for name, exponents in section["exponents"].items():
        assert math.isfinite(exponents["encode"]) and math.isfinite(exponents["decode"]), name
    rows = {(r["codec"], r["size"]): r for r in section["rows"]}
    assert sorted((r["peer"], r["size"]) for r in section["ratios"]) == sorted(k for k in rows if k[0] != "corrdiff")
    for ratio in section["ratios"]:
        ours, peer = rows["corrdiff", ratio["size"]], rows[ratio["peer"], ratio["size"]]
        assert _finite_positive(ratio["encode"], ratio["decode"])
        assert (ratio["decode"] > 1) == (ours["decode_s"] > peer["decode_s"])  # above 1: ours is slower


def test_breakdown_and_flops_cover_the_networks(quick_cli):
    _, _, results = quick_cli
    breakdown = results["breakdown"]
    assert breakdown["size"] == results["settings"]["profile_size"]
    assert sum(breakdown["share"].values()) == pytest.approx(1.0)
    for name in NETWORKS:  # the tiny preset has a hyperprior: its h_s is found and timed too
        assert breakdown["seconds"][name] > 0, name
    # "rest" is the total minus the measured parts: negative would mean a part was counted twice
    assert all(seconds >= 0 for seconds in breakdown["seconds"].values()), breakdown["seconds"]
    flops = results["flops"]
    parts = {r["part"]: r for r in flops["rows"]}
    assert set(parts) == {*NETWORKS, "networks"}
    assert all(_finite_positive(r["flop"], r["flops"], r["of_matmul"], r["of_conv1x1"]) for r in flops["rows"])
    assert max(r["flop"] for r in flops["rows"]) == parts["networks"]["flop"] <= flops["total_flop"] * (1 + 1e-9)
    speed = results["machine"]["speed"]
    assert math.isfinite(speed["drift"]) and speed["drift"] >= 0


def test_training_and_gamma_figures(quick_cli):
    _, _, results = quick_cli
    rows = results["training"]
    phases = ("phase 1 (ScoreTraining)", "phase 2 (JointTraining)", "adversarial (AdversarialTraining)",
              "base (RateDistortionTraining)")
    assert [(r["phase"], r["batch"]) for r in rows] == [
        (phase, batch) for phase in phases for batch in QUICK.train_batches]
    for row in rows:
        assert row["loss_finite"] and row["crop"] == QUICK.train_crop
        assert len(row["timing"]["times_s"]) == QUICK.train_steps and row["timing"]["warmup"] == QUICK.warmup
        assert _finite_positive(row["step_s"], row["samples_per_s"])
    gamma = results["gamma"]
    closed, gradient = gamma["solvers"]["closed form"], gamma["solvers"]["gradient (L-BFGS)"]
    assert _finite_positive(closed["median_s"], gradient["median_s"], gamma["ratio_gradient_over_closed"])
    assert gamma["agree_fp16"] and closed["gamma_fp16"] == gradient["gamma_fp16"]


@pytest.mark.parametrize("phase", [ScoreTraining, JointTraining, AdversarialTraining])
def test_training_steps_are_the_modules_own(phase):
    """fit_steps runs the module's step: its guarded step (the codec's optimiser, and the discriminator's
    for the adversarial phase), its optimiser (main weights and quantiles) and its EMA; the phase's frozen
    parts stay as they were."""
    steps = 2
    torch.manual_seed(0)
    module = phase(preset="tiny", val_compress_images=0)
    before = {k: v.clone() for k, v in module.codec.state_dict().items()}
    ema_before = {k: v.clone() for k, v in module.ema.module.state_dict().items()}
    guarded = []
    step = module.guarded_step
    module.guarded_step = lambda *args, **kwargs: guarded.append(step(*args, **kwargs)) or guarded[-1]
    timer = fit_steps(module, training_batch(1, QUICK.train_crop, photo=demo_photo()), steps)
    assert len(timer.times) == len(timer.losses) == steps
    assert guarded == [True] * steps
    assert all(t > 0 for t in timer.times) and all(math.isfinite(loss) for loss in timer.losses)
    after = module.codec.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("score_net.") for k in moved) and any(k.endswith("quantiles") for k in moved)
    assert any(k.startswith("decoder.") for k in moved) == module.trains_decoder
    assert int(module.ema.n_averaged) == steps
    ema = module.ema.module.state_dict()
    assert any(not torch.equal(ema_before[k], ema[k]) for k in ema_before if ema[k].is_floating_point())


def test_a_nonfinite_step_is_skipped_by_the_module():
    """The module's own NaN guard runs: a non-finite loss is a skipped step (no loss) with nothing trained."""
    module = ScoreTraining(preset="tiny", val_compress_images=0)
    terms = StepTerms()
    terms.add("nan", torch.tensor(float("nan"), requires_grad=True))
    module.compute_terms = lambda x: (terms, None)
    before = {k: v.clone() for k, v in module.codec.state_dict().items()}
    with pytest.warns(UserWarning, match="non-finite loss"):
        timer = fit_steps(module, training_batch(1, QUICK.train_crop, photo=demo_photo()), steps=1)
    assert timer.losses == [None] and module.skipped_steps == 1
    assert all(torch.equal(before[k], v) for k, v in module.codec.state_dict().items())


def test_networks_find_the_hyper_synthesis_through_the_prior():
    """A hyperprior's h_s is profiled through the prior's accessor; a factorized prior has none."""
    from corrdiff.codec import CorrDiffCodec
    from corrdiff.presets import preset

    codec = load_bench_model(QUICK.model)
    assert networks(codec)[HYPER_SYNTHESIS] is codec.prior.hyper_synthesis is not None
    factorized = CorrDiffCodec(**{**preset(QUICK.model.split(":")[1]), "prior": {"name": "factorized"}})
    assert factorized.prior.hyper_synthesis is None and HYPER_SYNTHESIS not in networks(factorized)
    assert set(networks(factorized)) == set(NETWORKS) - {HYPER_SYNTHESIS}


def test_measuring_processes_do_not_load_lightning():
    """The process server preloads the codecs module: Lightning (the training section's) stays out of
    every measuring process's resident memory."""
    import subprocess
    import sys

    probe = "import sys, corrdiff.bench.codecs; print(sorted(m for m in sys.modules if m.startswith('lightning')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "256by256"], "WIDTHxHEIGHT"),
    (["--sizes", "0x5"], "positive"),
    (["--skip", "codecs,nope"], "unknown section"),
    (["--repeats", "0"], "--repeats"),
    (["--model", "preset:nope"], "unknown preset"),
    (["--sampler", "euler"], "unknown sampler 'euler'; registered: ddim"),
    (["--sampler", "ddim,order=2"], "--sampler"),
])
def test_cli_rejects_bad_options(capsys, argv, message):
    assert main(["bench", "--quick", *argv]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("corrdiff bench: error:") and message in err
    assert "## Encode and decode" not in out


def test_cli_encodes_with_the_sampler_spec(capsys, monkeypatch):
    samplers = []
    encode = CorrDiffCodec.encode
    monkeypatch.setattr(CorrDiffCodec, "encode", lambda self, *a, **k: samplers.append(k["sampler"]) or encode(self, *a, **k))
    skip = ",".join(s for s in SECTIONS if s != "breakdown")  # the one section that encodes in this process
    assert main(["bench", "--quick", "--skip", skip, "--sampler", "ddim_quadratic"]) == 0
    assert samplers == [{"name": "ddim_quadratic"}]


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
    assert timing.to_json()["times_s"] == timing.times and min(timing.times) <= timing.median <= max(timing.times)
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
    photo = demo_photo()
    image = bench_image(*size, photo=photo)
    assert image.shape == (size[1], size[0], 3) and image.dtype == np.uint8
    if size[0] >= photo.shape[1] and size[1] >= photo.shape[0]:  # tiled: the photo itself comes first
        assert np.array_equal(image[: photo.shape[0], : photo.shape[1]], photo)


def test_parsers_and_table():
    assert parse_sizes("256x256, 768X512") == ((256, 256), (768, 512))
    assert parse_skip("peers,training") == {"peers", "training"} and parse_skip(None) == frozenset()
    assert parse_skip(",".join(SECTIONS)) == frozenset(SECTIONS)
    table = markdown_table(["name", "seconds"], [["a", "1.5"], ["longer name", "n/a"]]).splitlines()
    assert len({len(line) for line in table}) == 1  # aligned
    assert table[1].endswith("--:|") and table[2].endswith("    1.5 |")
