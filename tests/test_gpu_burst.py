"""The GPU burst (experiments/gpu/burst.py, docs/gpu.md) on the CPU: split/join with hashes, the output
budget of the device's return limits, the ledger line, the fit command, and a dry run end to end (the tiny
recipe, two steps, the checks on the CPU), its checkpoint joined and resumed by a second dry run."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "experiments" / "gpu"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


burst = _load("gpu_burst", GPU / "burst.py")

LEDGER_FIELDS = {"date", "device", "torch", "recipe", "start", "start_kind", "precision", "batch_size", "dry_run",
                 "steps_before", "steps_after", "steps", "train_seconds", "steps_per_s", "fit_seconds", "fit_status",
                 "first_train_loss", "last_train_loss", "val", "wall_s", "files", "notes", "row"}


# ------------------------------------------------------------------------------------------- split / join
def _random_file(path: Path, size: int, seed: int = 0) -> Path:
    import random

    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def _manifest(out: Path, entry: dict, name: str = "last.ckpt") -> dict:
    manifest = {"files": {name: entry}, "part_bytes": entry["parts"][0]["size"], "notes": []}
    (out / burst.MANIFEST).write_text(json.dumps(manifest))
    return manifest


def test_split_join_round_trip_with_hashes(tmp_path):
    source = _random_file(tmp_path / "last.ckpt", 2 * 1024 * 1024 + 123)
    out = tmp_path / "out"
    entry = burst.split_file(source, out, part_bytes=1024 * 1024)
    assert [p["name"] for p in entry["parts"]] == ["last.ckpt.part00", "last.ckpt.part01", "last.ckpt.part02"]
    assert [p["size"] for p in entry["parts"]] == [1024 * 1024, 1024 * 1024, 123]
    assert entry["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    for part in entry["parts"]:
        assert hashlib.sha256((out / part["name"]).read_bytes()).hexdigest() == part["sha256"]
    _manifest(out, entry)
    joined = burst.join_parts(out, "last.ckpt", tmp_path / "back" / "last.ckpt")
    assert joined.read_bytes() == source.read_bytes()
    # the command line: join FOLDER -o PATH
    assert burst.main(["join", str(out), "-o", str(tmp_path / "cli" / "last.ckpt")]) == 0
    assert (tmp_path / "cli" / "last.ckpt").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("size, part, parts", [(3000, 1000, 3), (10, 1000, 1), (0, 1000, 1), (1001, 1000, 2)])
def test_split_part_counts(tmp_path, size, part, parts):
    source = _random_file(tmp_path / "f.bin", size)
    entry = burst.split_file(source, tmp_path / "out", part)
    assert len(entry["parts"]) == parts and sum(p["size"] for p in entry["parts"]) == size
    _manifest(tmp_path / "out", entry, "f.bin")
    assert burst.join_parts(tmp_path / "out", "f.bin", tmp_path / "j").read_bytes() == source.read_bytes()


def test_join_refuses_a_damaged_or_missing_part_and_leaves_no_file(tmp_path):
    source = _random_file(tmp_path / "last.ckpt", 5000)
    out = tmp_path / "out"
    _manifest(out, burst.split_file(source, out, 2000))
    damaged = bytearray((out / "last.ckpt.part01").read_bytes())
    damaged[7] ^= 1
    (out / "last.ckpt.part01").write_bytes(bytes(damaged))
    target = tmp_path / "j" / "last.ckpt"
    with pytest.raises(burst.JoinError, match="part01"):
        burst.join_parts(out, "last.ckpt", target)
    assert not target.exists() and not list(target.parent.iterdir())
    (out / "last.ckpt.part01").unlink()
    with pytest.raises(burst.JoinError, match="missing part"):
        burst.join_parts(out, "last.ckpt", target)
    assert burst.main(["join", str(out), "-o", str(target)]) == 1


def test_output_budget_keeps_within_the_devices_return_limits(tmp_path, monkeypatch):
    """4 small files + parts <= 8 files: the model goes first, then the checkpoint is replaced by the model."""
    monkeypatch.setattr(burst, "MAX_TOTAL_BYTES", 64 * 1024 * 1024)

    def place(ckpt_size: int, model_size: int, part: int = 1000):
        out = tmp_path / f"out-{ckpt_size}-{model_size}-{part}"
        out.mkdir()
        for name in burst.SMALL_FILES:
            (out / name).write_text("{}")
        ckpt, model = _random_file(tmp_path / "last.ckpt", ckpt_size), _random_file(tmp_path / "model.pt", model_size)
        notes: list[str] = []
        manifest = burst.place_outputs(out, ckpt, model, part, notes)
        files = sorted(p.name for p in out.iterdir())
        assert len(files) <= burst.MAX_FILES
        return manifest, files, notes

    manifest, files, notes = place(3000, 900)  # 3 parts + model: 8 files
    assert set(manifest["files"]) == {"last.ckpt", "model.pt"} and "model.pt" in files and not notes
    manifest, files, notes = place(4000, 900)  # 4 parts: no room for the model
    assert set(manifest["files"]) == {"last.ckpt"} and "model.pt" not in files and "no room" in notes[0]
    manifest, files, notes = place(3000, 1500)  # a model over the part size stays behind
    assert set(manifest["files"]) == {"last.ckpt"} and "over the" in notes[0]
    manifest, files, notes = place(5000, 1500)  # 5 parts: the model comes instead, split
    assert set(manifest["files"]) == {"model.pt"} and "cannot come back" in notes[0]
    assert [p["name"] for p in manifest["files"]["model.pt"]["parts"]] == ["model.pt.part00", "model.pt.part01"]
    paths = burst.join_all(tmp_path / "out-5000-1500-1000", tmp_path / "joined" / "last.ckpt")
    assert paths["model.pt"].read_bytes() == (tmp_path / "model.pt").read_bytes()


# ------------------------------------------------------------------------------------------- ledger, fit command
def test_metrics_and_ledger_row(tmp_path):
    path = tmp_path / "metrics.csv"
    columns = ["epoch", "step", "train/loss", "val/psnr", "val/bpp_real"]
    rows = [[0, 9, 0.9, "", ""], [0, 19, 0.7, "", ""], [0, 19, "", 30.5, 0.25], [1, 29, 0.6, "", ""]]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([columns, *rows])
    metrics = burst.read_metrics(path)
    assert metrics["first_train_loss"] == 0.9 and metrics["last_train_loss"] == 0.6
    assert metrics["val"] == {"val/psnr": 30.5, "val/bpp_real": 0.25} and metrics["val_step"] == 19
    assert burst.read_metrics(None)["val"] == {}
    entry = {"date": "2026-01-02T03:04:05+00:00", "device": "NVIDIA H100 80GB HBM3", "recipe": "r.yaml",
             "start": "runs/x/last.ckpt", "precision": "bf16-mixed", "batch_size": 16, "steps_before": 100,
             "steps_after": 400, "steps_per_s": 1.234, "wall_s": 480, **metrics}
    row = burst.ledger_row(entry)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == len(burst.LEDGER_COLUMNS)
    assert cells[:4] == ["2026-01-02 03:04", "NVIDIA H100 80GB HBM3", "r.yaml", "last.ckpt"]
    assert "100 → 400" in row and "0.9 → 0.6" in row and "psnr 30.5" in row and "8.0 min" in row
    # the ledger's header has the same columns
    header = next(line for line in (GPU / "ledger.md").read_text().splitlines() if line.startswith("| date"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(burst.LEDGER_COLUMNS)


def test_fit_command_resumes_a_checkpoint_or_starts_from_a_model(tmp_path):
    common = dict(precision="bf16-mixed", batch_size=16, dry_run=False, steps_before=0)
    recipe = ROOT / "experiments/learned_base/rate_distortion.yaml"
    command = burst.fit_command(recipe, tmp_path / "run", "m.pt", "model", 390.2, **common)
    assert command[1:4] == ["-m", "corrdiff", "fit"] and command[command.index("--run") + 1] == str(tmp_path / "run")
    assert command[command.index("--trainer.max_time") + 1] == "00:00:06:31"
    assert command[command.index("--model.init_from") + 1] == "m.pt"
    assert command[command.index("--model.init_skip") + 1] == "[]" and "--ckpt_path" not in command
    assert command[command.index("--trainer.precision") + 1] == "bf16-mixed"
    assert command[command.index("--data.batch_size") + 1] == "16"
    assert command[command.index("--trainer.max_steps") + 1] == "-1"
    command = burst.fit_command(recipe, tmp_path / "run", "x.ckpt", "checkpoint", 4000, **common, extra=["--a", "b"])
    assert command[command.index("--ckpt_path") + 1] == "x.ckpt" and "--model.init_from" not in command
    assert command[-2:] == ["--a", "b"]
    command = burst.fit_command(recipe, tmp_path / "run", "recipe", "recipe", 60, precision=None, batch_size=None,
                                dry_run=True, steps_before=7)
    assert "--model.init_from" not in command and "--ckpt_path" not in command and "--trainer.precision" not in command
    assert command[command.index("--trainer.max_steps") + 1] == "9"
    assert command[command.index("--trainer.accelerator") + 1] == "cpu"


def test_without_cuda_the_burst_refuses_and_the_checks_skip_with_a_note(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(GPU / "checks.py"), "--config", str(ROOT / "experiments/tiny/phase1.yaml"),
               "--json", str(tmp_path / "checks.json"), "--scratch", str(tmp_path / "s")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in json.loads((tmp_path / "checks.json").read_text())["skipped"]
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the burst would train")
    assert burst.main(["--config", str(ROOT / "experiments/tiny/phase1.yaml"), "--start", "recipe",
                       "--out", str(tmp_path / "out")]) == 2
    assert "no CUDA device" in json.loads((tmp_path / "out" / "checks.json").read_text())["skipped"]
    assert burst.main(["--dry-run", "--start", "runs/nowhere/last.ckpt", "--out", str(tmp_path / "out2")]) == 2
    assert "carry" in json.loads((tmp_path / "out2" / "checks.json").read_text())["skipped"]


# ------------------------------------------------------------------------------------------- the dry run
@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """scikit-image's bundled photos as train/ and val/ PNG folders (as tests/test_training.py makes them)."""
    pytest.importorskip("skimage")
    module = _load("skimage_photos", ROOT / "experiments/tools/skimage_photos.py")
    out = tmp_path_factory.mktemp("photos")
    module.write_photos(out)
    return out


def _dry_run(photos: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(GPU / "burst.py"), "--dry-run", "--out", str(out), "--part-mib", "3",
               "--scratch", str(out.parent / (out.name + "-scratch")), *options, "--",
               "--data.train_dirs", str(photos / "train"), "--data.val_dirs", str(photos / "val"),
               "--data.crop_size", "32", "--data.train_repeat", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def dry_run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("burst") / "out"
    return out, _dry_run(photos, out)


def test_dry_run_brings_back_parts_manifest_model_metrics_ledger_checks(dry_run, tmp_path):
    out, result = dry_run
    names = sorted(p.name for p in out.iterdir())
    assert len(names) <= burst.MAX_FILES
    assert {"manifest.json", "ledger.json", "checks.json", "metrics.csv", "model.pt", "last.ckpt.part00"} <= set(names)
    assert all((out / n).stat().st_size <= 3 * 2**20 for n in names)
    assert not (out.parent / "out-scratch").exists()  # the scratch run folder is removed
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"last.ckpt", "model.pt"}
    paths = burst.join_all(out, tmp_path / "last.ckpt")
    import torch

    state = torch.load(paths["last.ckpt"], map_location="cpu", weights_only=False)
    assert state["global_step"] == 2
    import corrdiff

    corrdiff.load_model(paths["model.pt"])  # the exported model loads (validated)
    assert "LEDGER | " in result.stdout


def test_dry_run_ledger_line_fields(dry_run):
    out, result = dry_run
    entry = json.loads((out / "ledger.json").read_text())
    assert LEDGER_FIELDS <= set(entry)
    assert entry["dry_run"] is True and entry["device"].startswith("cpu") and entry["start_kind"] == "recipe"
    assert (entry["steps_before"], entry["steps_after"], entry["steps"]) == (0, 2, 2)
    assert entry["steps_per_s"] > 0 and entry["train_seconds"] > 0 and entry["fit_status"] == 0
    assert entry["first_train_loss"] > 0 and entry["last_train_loss"] > 0
    assert {"val/psnr", "val/bpp_real"} <= set(entry["val"])
    assert entry["files"] == ["last.ckpt", "model.pt"] and entry["notes"] == []
    assert entry["recipe"] == "experiments/tiny/phase1.yaml"
    assert entry["row"] in result.stdout and entry["row"] == burst.ledger_row(entry)
    with open(out / "metrics.csv", newline="") as f:
        assert any(row.get("train/loss") for row in csv.DictReader(f))


def test_dry_run_checks_ran_on_the_cpu(dry_run):
    out, _ = dry_run
    checks = json.loads((out / "checks.json").read_text())
    assert checks["exit_status"] == 0 and "dry run" in checks["note"] and checks["phase"] == "ScoreTraining"
    codec = checks["gpu_to_cpu"]
    assert codec["entropy_exact"] is True and codec["cpu_vs_encoder"]["max"] == 0.0
    assert codec["same_bytes_as_cpu_encode"] is True and codec["bytes"] > 0
    for precision in ("32-true", "bf16-mixed"):
        row = checks["throughput"][precision]
        assert row["step_s"] > 0 and row["loss_finite"] is True, row
    assert checks["throughput"]["bf16_speedup"] > 0


def test_joined_checkpoint_resumes_in_a_second_burst(dry_run, photos, tmp_path):
    out, _ = dry_run
    assert burst.main(["join", str(out), "-o", str(tmp_path / "in" / "last.ckpt")]) == 0
    second = tmp_path / "out"
    _dry_run(photos, second, "--start", str(tmp_path / "in" / "last.ckpt"), "--no-checks")
    entry = json.loads((second / "ledger.json").read_text())
    assert entry["start_kind"] == "checkpoint" and (entry["steps_before"], entry["steps_after"]) == (2, 4)
    assert json.loads((second / "checks.json").read_text()) == {"skipped": "--no-checks"}


# ------------------------------------------------------------------------------------------- what travels
travel = _load("gpu_travel", GPU / "travel.py")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def test_slim_leaves_out_what_a_burst_does_not_need_and_restore_puts_it_back(tmp_path):
    root = tmp_path / "repo"
    files = {"corrdiff/codec.py": 10, "corrdiff/assets/default.pt": 3 * 2**20, "corrdiff/assets/variable.pt": 2**20,
             "corrdiff/assets/demo.png": 1000, "experiments/default_model/models/v1/old.pt": 2 * 2**20,
             "data/default_model/val/Kite.png": 5000, "docs/crops.png": 7000, "docs/training.md": 100}
    for name, size in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * size)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "tree")
    (root / "notes.txt").write_text("untracked, not ignored: travels")
    (root / "docs/training.md").write_text("an unstaged edit survives the slim and the restore")
    before = _git(root, "ls-files")
    status_before = _git(root, "status", "--porcelain")

    out = travel.slim(root, keep=["corrdiff/assets/variable.pt"], carry=[])
    assert sorted(out) == ["corrdiff/assets/default.pt", "data/default_model/val/Kite.png", "docs/crops.png",
                           "experiments/default_model/models/v1/old.pt"]
    assert travel.travelling(root) == ["corrdiff/assets/demo.png", "corrdiff/assets/variable.pt", "corrdiff/codec.py",
                                       "docs/training.md", "notes.txt"]
    assert all((root / p).is_file() for p in files)  # nothing on disk changed
    assert travel.slimmed_paths(root) == out
    with pytest.raises(SystemExit, match="already in place"):
        travel.slim(root, keep=[], carry=[])

    assert sorted(travel.restore(root)) == sorted(out)
    assert _git(root, "ls-files") == before
    assert _git(root, "status", "--porcelain") == status_before
    assert "travel.py" not in travel.exclude_file(root).read_text()


def test_slim_refuses_staged_changes_and_an_over_limit_result(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "corrdiff").mkdir(parents=True)
    (root / "corrdiff/big.bin").write_bytes(b"x" * 4096)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "tree")
    monkeypatch.setattr(travel, "LIMIT_BYTES", 1024)
    with pytest.raises(SystemExit, match="still"):
        travel.slim(root, keep=[], carry=[])
    assert travel.slimmed_paths(root) == [] and _git(root, "ls-files") == "corrdiff/big.bin\n"
    (root / "corrdiff/new.py").write_text("staged")
    _git(root, "add", "corrdiff/new.py")
    with pytest.raises(SystemExit, match="staged changes"):
        travel.slim(root, keep=[], carry=[])
