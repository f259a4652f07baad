"""The default torch thread count (corrdiff/threads.py; docs/benchmarks.md, "Threads on a busy machine"):
the cores the process may use minus the 1-minute load average, at least 1; ``corrdiff eval --threads``;
the default of ``corrdiff bench``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from corrdiff.cli import main
from corrdiff.threads import DEFAULT_THREADS_RULE, available_cores, default_threads


def machine(monkeypatch, cores: int, load: float) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0), raising=False)


@pytest.mark.parametrize("cores, load, expected", [
    (2, 5.85, 1),  # 2 cores, five other jobs: one thread
    (2, 0.2, 2),  # idle
    (2, 0.7, 1),
    (8, 3.0, 5),
    (16, 0.0, 16),
    (4, 0.4, 4),
])
def test_default_threads_is_the_cores_less_the_load(monkeypatch, cores, load, expected):
    machine(monkeypatch, cores, load)
    assert default_threads() == expected


def test_default_threads_without_affinity_or_load_average(monkeypatch):
    """Where the OS has no CPU affinity (macOS) every core counts; without a load average, all of them."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 0.0, 0.0), raising=False)
    assert available_cores() == 3 and default_threads() == 2

    def unreadable():
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", unreadable)
    assert default_threads() == 3


def test_encode_threads_option_and_default(tmp_path, model_file, monkeypatch, encode_threads, capsys):
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(
        tmp_path / "photos" / "a.png")
    before = torch.get_num_threads()
    args = ["eval", str(tmp_path / "photos"), "--model", str(model_file), "--modes", "e2e", "--baselines",
            "none", "--no-matched", "--metrics", "psnr-rgb", "--no-progress", "-f",
            "--out", str(tmp_path / "out")]
    assert main([*args, "--threads", "2"]) == 0
    machine(monkeypatch, 2, 5.85)  # busy: the default is one thread
    torch.set_num_threads(2)
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(before)
    assert encode_threads == [2, 1]
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--threads N" in help_text and DEFAULT_THREADS_RULE in help_text and "--offline" in help_text


def test_bench_default_threads(monkeypatch, tmp_path, capsys):
    from corrdiff.bench.settings import SECTIONS

    machine(monkeypatch, 4, 2.0)
    before = torch.get_num_threads()
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--skip", ",".join(SECTIONS), "--json", str(path)]) == 0
    assert json.loads(path.read_text())["machine"]["torch_threads"] == 2
    assert torch.get_num_threads() == before
