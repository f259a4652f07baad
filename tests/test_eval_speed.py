"""``corrdiff eval`` does no work twice and codes the baselines beside the rest, with the same results.

* each (image, codec, quality) is encoded once, whether a fixed quality or a probe of a bisection, and only
  the files whose result is asked for are decoded;
* each distinct reconstruction of an image is scored once;
* LPIPS and DISTS compute the reference's backbone features once per image, with unchanged scores;
* the baselines coded in worker threads give the same CSV and JSON as coded in turn;
* the seconds per stage are in ``index.json`` and in the printed summary.

Sized for a 2-core CPU: two 48x64 crops, 1 sampling step, the 'e2e' mode, PSNR only.
"""

from __future__ import annotations

import csv
import hashlib
import json
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corrdiff import baselines
from corrdiff.evaluation import run_eval
from corrdiff.evaluation.inference import code_baseline
from corrdiff.evaluation.timing import STAGES, StageTimes
from corrdiff.image_io import to_model_range, to_tensor
from corrdiff.metrics import MetricSuite, build_dists, build_lpips, dists, lpips_alex

TIMING_COLUMNS = ("encoding_time", "decoding_time")


def key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    from skimage import data

    folder = tmp_path_factory.mktemp("crops")
    Image.fromarray(np.ascontiguousarray(data.astronaut()[::6, ::6][:48, :64])).save(folder / "astronaut.png")
    Image.fromarray(np.ascontiguousarray(data.coffee()[::6, ::6][:48, :64])).save(folder / "coffee.png")
    return folder


def evaluate(crops: Path, codecs: list, out: Path, **options) -> str:
    """run_eval on ``crops`` with small settings; returns what it printed."""
    printed: list[str] = []
    settings = dict(modes="e2e", steps=1, baselines="jpeg,webp", qualities="1,51,90", metrics="psnr-rgb",
                    progress=False, log=printed.append, warn=printed.append)
    run_eval(crops, codecs, out=out, **(settings | options))
    return "\n".join(printed)


@pytest.fixture(scope="module")
def counted_run(crops, tiny_codec, tmp_path_factory):
    """One run with the same model twice (two identical targets per image) and qualities 1 and 51, which the
    bisection probes first; counts the encodes, decodes and scorings it makes."""
    encodes, decodes, scored = Counter(), Counter(), Counter()
    to_bytes, from_bytes, score = baselines.to_bytes, baselines.from_bytes, MetricSuite.score

    def counting_to_bytes(rgb, codec, quality):
        encodes[key(rgb), codec, int(quality)] += 1
        return to_bytes(rgb, codec, quality)

    def counting_from_bytes(data):
        decodes[hashlib.sha1(data).hexdigest()] += 1
        return from_bytes(data)

    def counting_score(self, reference, test):
        scored[key(reference), key(test)] += 1
        return score(self, reference, test)

    out = tmp_path_factory.mktemp("counted") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(baselines, "to_bytes", counting_to_bytes)
        mp.setattr(baselines, "from_bytes", counting_from_bytes)
        mp.setattr(MetricSuite, "score", counting_score)
        evaluate(crops, [tiny_codec, tiny_codec], out, workers=1)
    return out, encodes, decodes, scored


def test_each_baseline_quality_is_encoded_once_per_image(counted_run):
    out, encodes, decodes, _ = counted_run
    assert encodes and max(encodes.values()) == 1, [k[1:] for k, n in encodes.items() if n > 1]
    assert max(decodes.values()) == 1
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    matched = [r for r in rows if r["method"] == "jpeg-matched"]
    assert {r["point"] for r in matched} == {"model0", "model1"} and len(matched) == 4


def test_bisections_share_the_encodes_and_decode_only_the_chosen_file(crops, monkeypatch):
    """Two targets and fixed qualities of one image and codec: each probed quality is encoded once, only
    the fixed qualities and the chosen ones are decoded, and the choices are encode_at_bpp's."""
    rgb = np.asarray(Image.open(crops / "coffee.png").convert("RGB"))
    targets = [("a", baselines.encode(rgb, "jpeg", 60).bpp), ("b", baselines.encode(rgb, "jpeg", 30).bpp),
               ("c", baselines.encode(rgb, "jpeg", 60).bpp)]
    expected = [baselines.encode_at_bpp(rgb, "jpeg", t) for _, t in targets]
    encodes, decodes = Counter(), Counter()
    to_bytes, from_bytes = baselines.to_bytes, baselines.from_bytes
    monkeypatch.setattr(baselines, "to_bytes", lambda rgb, codec, q: encodes.update([q]) or to_bytes(rgb, codec, q))
    monkeypatch.setattr(baselines, "from_bytes", lambda data: decodes.update([len(data)]) or from_bytes(data))

    coded = code_baseline(rgb, "jpeg", [51, 90], targets, StageTimes())
    assert max(encodes.values()) == 1 and len(encodes) > 7  # bisections probed, 51 among their probes
    assert sum(decodes.values()) == len({51, 90} | {r.quality for r in expected}) < len(encodes)
    matched = coded[2:]
    assert [c[4]["quality"] for c in matched] == [r.quality for r in expected]
    assert all(np.array_equal(c[3], r.decoded) and c[2] == len(r.data) for c, r in zip(matched, expected))
    assert all(c[4]["quality"] < 100 and c[4]["quality"] > 1 for c in matched)


def test_each_distinct_reconstruction_is_scored_once_per_image(counted_run):
    out, _, _, scored = counted_run
    assert max(scored.values()) == 1
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    # the two identical models: the same files, scored once and reported for both
    for image in ("astronaut.png", "coffee.png"):
        e2e = [r for r in rows if r["method"] == "corrdiff-e2e" and r["image"] == image]
        assert [r["point"] for r in e2e] == ["model0", "model1"]
        assert e2e[0]["psnr-rgb"] == e2e[1]["psnr-rgb"] and e2e[0]["bytes"] == e2e[1]["bytes"]
    assert len(scored) < len([r for r in rows if r["status"] == "ok"])


@pytest.mark.parametrize("metric", ["lpips-alex", "dists"])
def test_reference_features_are_computed_once_per_image(metric, random_weights_dir, monkeypatch):
    """The backbone runs once per reconstruction plus once for the reference; the scores are those
    of the network run on each pair afresh."""
    import lpips.pretrained_networks as lpips_nets

    from corrdiff.metrics.dists_network import DISTS

    owner, name = (lpips_nets.alexnet, "forward") if metric == "lpips-alex" else (DISTS, "features")
    passes = []
    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda self, x: passes.append(x.shape) or real(self, x))
    score = (lpips_alex if metric == "lpips-alex" else dists)(random_weights_dir, "cpu")

    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    tests = [np.clip(reference.astype(int) + rng.integers(-s, s + 1, reference.shape), 0, 255).astype(np.uint8)
             for s in (5, 20, 60)]
    values = [score(reference, t) for t in tests]
    assert len(passes) == len(tests) + 1

    fresh = build_lpips("alex", random_weights_dir) if metric == "lpips-alex" else build_dists(random_weights_dir)
    with torch.no_grad():
        a = to_tensor(reference)
        expected = [float(fresh(to_model_range(a), to_model_range(to_tensor(t))) if metric == "lpips-alex"
                          else fresh(to_tensor(t), a)) for t in tests]
    assert values == expected
    assert len(set(values)) == len(values)


@pytest.fixture(scope="module")
def serial_and_parallel(crops, tiny_codec, tmp_path_factory):
    """The same evaluation with the baselines coded in turn and in worker threads (the threads that encoded
    a baseline file recorded)."""
    root = tmp_path_factory.mktemp("workers")
    threads: dict[int, set[str]] = {}
    to_bytes = baselines.to_bytes
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        for workers in (1, 3):
            seen = threads.setdefault(workers, set())
            mp.setattr(baselines, "to_bytes", lambda *a, seen=seen: seen.add(threading.current_thread().name)
                       or to_bytes(*a))
            runs[workers] = (root / f"w{workers}", evaluate(crops, [tiny_codec], root / f"w{workers}",
                                                            baselines=None, workers=workers))
    return runs, threads


def without_timings(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(open(path))]


def test_parallel_and_serial_runs_write_identical_results(serial_and_parallel):
    runs, threads = serial_and_parallel
    (serial, _), (parallel, _) = runs[1], runs[3]
    assert threads[1] == {threading.current_thread().name}
    assert any(name.startswith("corrdiff-eval-baseline") for name in threads[3])
    rows = without_timings(serial / "per_image.csv")
    assert rows == without_timings(parallel / "per_image.csv") and len(rows) > 10
    index = json.loads((serial / "index.json").read_text())
    for name in index["methods"].values():
        a, b = (json.loads((folder / name).read_text()) for folder in (serial, parallel))
        for summary in (a, b):
            for column in TIMING_COLUMNS:
                summary["results"].pop(column, None)
        assert a == b, name
    with pytest.raises(ValueError, match="workers"):
        run_eval(serial.parent, ["default"], out=serial.parent / "never", workers=0)


def test_seconds_per_stage_are_in_the_summary(serial_and_parallel):
    runs, _ = serial_and_parallel
    for workers, (out, printed) in runs.items():
        index = json.loads((out / "index.json").read_text())
        seconds = index["stage_seconds"]
        assert list(seconds) == [*STAGES, "total"]
        assert all(v >= 0 for v in seconds.values())
        for stage in ("corrdiff encode", "corrdiff decode", "baselines", "metrics"):
            assert seconds[stage] > 0, stage
        assert seconds["total"] >= seconds["corrdiff encode"] + seconds["corrdiff decode"] + seconds["metrics"]
        assert index["baseline_workers"] == min(workers, len(baselines.available_formats()))
        for stage in (*STAGES, "total (wall clock)"):
            assert stage in printed


def test_reference_memory_sees_in_place_changes_and_is_released(random_weights_dir):
    """The memory keys on a copy of each input (an input changed in place is a new input), and
    MetricSuite.release empties it (the reference's features are not kept across images)."""
    from corrdiff.metrics.reference_features import RecentInputs

    memo = RecentInputs(lambda x: float(x.sum()))
    x = torch.zeros(3)
    assert memo(x) == 0.0
    x.add_(1)
    assert memo(x) == 3.0 and memo.calls == 2
    memo.clear()
    assert memo.entries == []

    suite = MetricSuite(["lpips-alex", "dists"], weights_dir=random_weights_dir)
    rng = np.random.default_rng(1)
    reference, test = (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    suite.score(reference, test)
    memories = [fn.release.__self__ for fn in suite._image_fns.values()]
    assert all(m.entries for m in memories)
    suite.release()
    assert not any(m.entries for m in memories)
