"""A bounded training burst on a lent GPU machine, and what it brings back (docs/gpu.md).

On the device (one command, experiments/gpu/README.md)::

    python experiments/gpu/burst.py --config RECIPE.yaml --start CKPT_OR_MODEL --minutes 8 --out $OUT \\
        [--precision bf16-mixed] [--batch-size N] [-- EXTRA corrdiff fit ARGS]

Back here::

    python experiments/gpu/burst.py join FILES_AT -o runs/NAME/last.ckpt   # parts -> checkpoint, sha256 checked
    python experiments/gpu/burst.py row FILES_AT/ledger.json >> experiments/gpu/ledger.md

What a burst does, within ``--minutes`` of wall time for the whole script (keep it under the device's
10-minute command limit):

1. cheap checks (experiments/gpu/checks.py, in a subprocess killed after ``--check-seconds``): step
   throughput of the recipe's phase in fp32 and bf16-mixed, and a file encoded on the GPU decoded on the CPU
   (``checks.json``); skipped with a note when there is no CUDA device;
2. ``corrdiff fit`` of the recipe into a scratch run folder (``--run``), resuming a Lightning checkpoint
   (``--ckpt_path``: optimiser, EMA and step count) or starting from a model file or packaged name
   (``--model.init_from START --model.init_skip []``, all its weights) or, with ``--start recipe``, from the
   recipe's own ``init_from``; Lightning's ``--trainer.max_time`` stops it ``--margin`` minutes before the end
   (a resumed run's timer counts the time already trained, so that time is added), and the process is
   stopped outright shortly before the end should start-up have eaten the margin;
3. into ``--out``: ``last.ckpt`` in parts of at most ``--part-mib`` MiB (``last.ckpt.part00``, ...),
   ``manifest.json`` (sha256 of every part and of each whole file), the exported model ``model.pt``
   (``corrdiff export --half``) when it is under ``--part-mib``, the run's ``metrics.csv``, ``ledger.json``
   (date, device, steps, steps/s, wall time, first/last train loss, last validation metrics; the ledger
   row is printed too), ``checks.json``. At most 8 files and 64 MiB come back from the device: the model
   file is left out first (it can be exported here from the checkpoint), and a checkpoint too large to
   come back is replaced by the model file (a fresh optimiser, but the weights).

``--dry-run``: the same on the CPU, the tiny recipe by default, two training steps, the checks run on the
CPU: what tests/test_gpu_burst.py runs. Without CUDA and without ``--dry-run`` the script refuses.
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime as dt
import hashlib
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TINY_RECIPE = ROOT / "experiments" / "tiny" / "phase1.yaml"

MiB = 2**20
#: what the device tool brings back from $OUT (docs: device README, Limits)
MAX_FILES = 8
MAX_FILE_BYTES = 16 * MiB
MAX_TOTAL_BYTES = 64 * MiB
#: the small files of every burst: manifest.json, ledger.json, checks.json, metrics.csv
SMALL_FILES = ("manifest.json", "ledger.json", "checks.json", "metrics.csv")
MANIFEST = "manifest.json"
CHECKPOINT = "last.ckpt"
MODEL = "model.pt"
#: ``--start recipe``: keep the recipe's own init_from / init_skip
START_FROM_RECIPE = "recipe"
#: seconds kept after the fit process for export, split and ledger
FINALIZE_SECONDS = 30.0
#: columns of the ledger table (experiments/gpu/ledger.md)
LEDGER_COLUMNS = ("date", "device", "recipe", "start", "precision", "batch", "steps", "steps/s", "wall",
                  "train loss first → last", "val (last)")


def _train_long():
    """experiments/default_model/train_long.py as a module (its duration and Timer helpers)."""
    spec = importlib.util.spec_from_file_location("train_long", ROOT / "experiments/default_model/train_long.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------- split / join
def sha256_file(path: Path, chunk: int = 4 * MiB) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def split_file(path: Path, out_dir: Path, part_bytes: int) -> dict[str, Any]:
    """Write ``path`` as ``out_dir/NAME.part00``, ``.part01``, ... of at most ``part_bytes`` each.

    Returns the manifest entry: ``{"size", "sha256", "parts": [{"name", "size", "sha256"}, ...]}``.
    """
    if part_bytes < 1:
        raise ValueError(f"part size must be >= 1 byte, got {part_bytes}")
    size = path.stat().st_size
    count = max(1, math.ceil(size / part_bytes))
    if count > 100:
        raise ValueError(f"{path}: {count} parts of {part_bytes} bytes: more than the 100 that two digits name")
    whole, parts = hashlib.sha256(), []
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as src:
        for index in range(count):
            block = src.read(part_bytes)
            whole.update(block)
            name = f"{path.name}.part{index:02d}"
            (out_dir / name).write_bytes(block)
            parts.append({"name": name, "size": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    return {"size": size, "sha256": whole.hexdigest(), "parts": parts}


class JoinError(Exception):
    """A part or a whole file is missing or its sha256 differs from the manifest's."""


def join_parts(folder: Path, name: str, output: Path, manifest: dict[str, Any] | None = None) -> Path:
    """Reassemble ``name`` from its parts in ``folder`` into ``output``, checking every hash.

    The file is written beside ``output`` under a temporary name and moved into place only when the whole
    file's sha256 matches: a failed join leaves no file at ``output``.
    """
    manifest = manifest if manifest is not None else read_manifest(folder)
    entry = manifest["files"].get(name)
    if entry is None:
        raise JoinError(f"{folder / MANIFEST}: no entry {name!r} (has: {', '.join(manifest['files'])})")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".joining")
    whole = hashlib.sha256()
    try:
        with open(partial, "wb") as dst:
            for part in entry.get("parts") or [{"name": name, "size": entry["size"], "sha256": entry["sha256"]}]:
                path = folder / part["name"]
                if not path.is_file():
                    raise JoinError(f"{path}: missing part")
                block = path.read_bytes()
                if len(block) != part["size"] or hashlib.sha256(block).hexdigest() != part["sha256"]:
                    raise JoinError(f"{path}: sha256 or size differs from the manifest (damaged part)")
                whole.update(block)
                dst.write(block)
        if whole.hexdigest() != entry["sha256"]:
            raise JoinError(f"{name}: the joined file's sha256 differs from the manifest")
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise JoinError(f"{path}: no manifest (not a burst's output folder?)")
    return json.loads(path.read_text())


def verify_file(folder: Path, name: str, manifest: dict[str, Any]) -> None:
    """Check an unsplit file of the manifest (the model file)."""
    entry, path = manifest["files"][name], folder / name
    if not path.is_file():
        raise JoinError(f"{path}: missing")
    if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
        raise JoinError(f"{path}: sha256 or size differs from the manifest")


# ---------------------------------------------------------------------------------------------- metrics / ledger
def read_metrics(path: Path | None) -> dict[str, Any]:
    """First and last logged ``train/loss`` and the last validation metrics of a CSVLogger metrics.csv."""
    result: dict[str, Any] = {"first_train_loss": None, "last_train_loss": None, "first_logged_step": None,
                              "last_logged_step": None, "val_step": None, "val": {}}
    if path is None or not path.is_file():
        return result
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    losses = [(row.get("step"), row["train/loss"]) for row in rows if row.get("train/loss")]
    if losses:
        result["first_logged_step"], result["first_train_loss"] = int(losses[0][0]), float(losses[0][1])
        result["last_logged_step"], result["last_train_loss"] = int(losses[-1][0]), float(losses[-1][1])
    val_rows = [row for row in rows if any(k.startswith("val") and v for k, v in row.items())]
    if val_rows:
        step = val_rows[-1].get("step")
        result["val_step"] = int(step) if step not in (None, "") else None
        for row in val_rows:
            if row.get("step") == step:
                result["val"].update({k: float(v) for k, v in row.items() if k.startswith("val") and v})
    return result


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def ledger_row(entry: dict[str, Any]) -> str:
    """The markdown row of one burst (columns :data:`LEDGER_COLUMNS`)."""
    val = entry.get("val") or {}
    shown = [k for k in sorted(val) if any(t in k for t in ("psnr", "bpp_real", "ms_ssim", "lpips"))][:4]
    shown = shown or sorted(val)[:3]
    cells = [
        entry.get("date", "")[:16].replace("T", " "), entry.get("device", ""), entry.get("recipe", ""),
        Path(str(entry.get("start", ""))).name, entry.get("precision") or "recipe", entry.get("batch_size") or "recipe",
        f"{_fmt(entry.get('steps_before'))} → {_fmt(entry.get('steps_after'))}", _fmt(entry.get("steps_per_s"), 3),
        f"{entry.get('wall_s', 0) / 60:.1f} min",
        f"{_fmt(entry.get('first_train_loss'))} → {_fmt(entry.get('last_train_loss'))}",
        ", ".join(f"{k.removeprefix('val/')} {_fmt(val[k])}" for k in shown) or "–",
    ]
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


# ---------------------------------------------------------------------------------------------- the fit
def start_kind(start: str) -> str:
    """``recipe``, ``checkpoint`` (a Lightning checkpoint: resumed) or ``model`` (a model file or packaged name)."""
    if start == START_FROM_RECIPE:
        return "recipe"
    path = Path(start)
    if path.is_file():
        import torch

        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        if isinstance(state, dict) and "state_dict" in state and ("pytorch-lightning_version" in state
                                                                   or "global_step" in state):
            return "checkpoint"
        return "model"
    return "model"  # a packaged model's name (default, variable, ...): corrdiff resolves it


def checkpoint_state(path: Path) -> tuple[int, float]:
    """(global_step, training seconds of Lightning's Timer) of a checkpoint."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return int(state.get("global_step", 0)), float(_train_long().trained_seconds(state))


def fit_command(config: Path, run: Path, start: str, kind: str, max_time_s: float, *, precision: str | None,
                batch_size: int | None, dry_run: bool, steps_before: int, extra: Iterable[str] = ()) -> list[str]:
    """The ``python -m corrdiff fit`` call of a burst (``max_time_s``: the Timer's limit, time already trained
    included)."""
    fmt = _train_long().format_duration
    command = [sys.executable, "-m", "corrdiff", "fit", "--config", str(config), "--run", str(run),
               "--trainer.max_time", fmt(max_time_s), "--trainer.enable_progress_bar", "false"]
    if dry_run:
        command += ["--trainer.accelerator", "cpu", "--trainer.max_steps", str(steps_before + 2),
                    "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
                    "--trainer.log_every_n_steps", "1"]
    else:
        command += ["--trainer.max_steps", "-1"]
    if precision:
        command += ["--trainer.precision", precision]
    if batch_size:
        command += ["--data.batch_size", str(batch_size)]
    if kind == "checkpoint":
        command += ["--ckpt_path", str(start)]
    elif kind == "model":
        command += ["--model.init_from", str(start), "--model.init_skip", "[]"]
    return command + list(extra)


def _stream(process: subprocess.Popen, tail: collections.deque) -> threading.Thread:
    def pump():
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line.rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def run_bounded(command: list[str], timeout_s: float, env: dict[str, str], tail_lines: int = 40
                ) -> tuple[int | None, bool, float, list[str]]:
    """Run ``command``, its output passed through; SIGINT at ``timeout_s`` (Lightning shuts down and saves
    on exception where set), SIGKILL 15 s later. (exit status or None, stopped, seconds, last lines)."""
    print("$", shlex.join(command), flush=True)
    tail: collections.deque = collections.deque(maxlen=tail_lines)
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=ROOT, start_new_session=True)
    pump = _stream(process, tail)
    stopped = False
    try:
        status = process.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        stopped = True
        print(f"[burst] {Path(command[1]).name if len(command) > 1 else command[0]}: out of time, stopping it",
              flush=True)
        os.killpg(process.pid, signal.SIGINT)
        try:
            status = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            status = process.wait()
    pump.join(timeout=5)
    return status, stopped, time.monotonic() - start, list(tail)


def child_env(dry_run: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("PYTHONUNBUFFERED", "1")
    if dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def device_name(dry_run: bool) -> str:
    import torch

    if not dry_run and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)" + (" dry run" if dry_run else "")


# ---------------------------------------------------------------------------------------------- output budget
def place_outputs(out: Path, checkpoint: Path | None, model: Path | None, part_bytes: int,
                  notes: list[str]) -> dict[str, Any]:
    """Split the checkpoint and copy the model into ``out`` within the device's return limits
    (:data:`MAX_FILES`, :data:`MAX_TOTAL_BYTES`, beside the small files); write and return the manifest.

    The checkpoint comes first; the model file comes whole beside it when it is under ``part_bytes`` and
    there is room. A checkpoint that cannot come back is replaced by the model file, split if need be.
    """
    files: dict[str, Any] = {}
    small = sum((out / n).stat().st_size for n in SMALL_FILES if (out / n).is_file()) + 64 * 1024
    room_files, room_bytes = MAX_FILES - len(SMALL_FILES), MAX_TOTAL_BYTES - small

    def fits(size: int, count: int) -> bool:
        return count <= room_files and size <= room_bytes

    model_size = model.stat().st_size if model is not None and model.is_file() else None
    if checkpoint is not None and checkpoint.is_file():
        size = checkpoint.stat().st_size
        parts = max(1, math.ceil(size / part_bytes))
        if fits(size, parts):
            files[CHECKPOINT] = split_file(checkpoint, out, part_bytes)
            room_files, room_bytes = room_files - parts, room_bytes - size
        else:
            notes.append(f"last.ckpt ({size / MiB:.1f} MiB, {parts} parts) cannot come back within {MAX_FILES} "
                         f"files / {MAX_TOTAL_BYTES // MiB} MiB: the model file comes instead (continue with "
                         "--start model.pt: the weights, a fresh optimiser)")
    elif checkpoint is not None:
        notes.append(f"no checkpoint at {checkpoint}: training saved none")
    if model_size is not None:
        if CHECKPOINT in files:
            if model_size > part_bytes:
                notes.append(f"model.pt is {model_size / MiB:.1f} MiB, over the {part_bytes / MiB:g} MiB part "
                             "size: left out (export it here from the joined checkpoint)")
            elif not fits(model_size, 1):
                notes.append("model.pt left out: no room beside the checkpoint's parts (export it here from "
                             "the joined checkpoint)")
            else:
                shutil.copyfile(model, out / MODEL)
                files[MODEL] = {"size": model_size, "sha256": sha256_file(out / MODEL)}
        elif fits(model_size, max(1, math.ceil(model_size / part_bytes))):
            if model_size <= part_bytes:
                shutil.copyfile(model, out / MODEL)
                files[MODEL] = {"size": model_size, "sha256": sha256_file(out / MODEL)}
            else:
                files[MODEL] = split_file(model, out, part_bytes)
        else:
            notes.append(f"model.pt ({model_size / MiB:.1f} MiB) cannot come back either")
    manifest = {"files": files, "part_bytes": part_bytes, "notes": list(notes)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ---------------------------------------------------------------------------------------------- main
def burst(args: argparse.Namespace, extra: list[str]) -> int:
    t0 = time.monotonic()
    deadline = t0 + args.minutes * 60
    out, notes = args.out.resolve(), []
    out.mkdir(parents=True, exist_ok=True)
    import torch

    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        message = ("no CUDA device here: nothing trained or measured (a recipe is not trained on the CPU for "
                   "minutes; --dry-run tests this script on the CPU)")
        (out / "checks.json").write_text(json.dumps({"skipped": message, "torch": torch.__version__}) + "\n")
        print(f"[burst] {message}", file=sys.stderr)
        return 2
    config = (args.config or TINY_RECIPE).resolve()
    if not config.is_file():
        print(f"[burst] --config {config}: no such recipe", file=sys.stderr)
        return 2
    start = args.start or (START_FROM_RECIPE if args.dry_run else None)
    if start is None:
        print("[burst] --start is required: a Lightning checkpoint, a model file, a packaged model's name, or "
              "'recipe'", file=sys.stderr)
        return 2
    if start != START_FROM_RECIPE and not Path(start).is_file() and ("/" in start or start.endswith((".pt", ".ckpt"))):
        message = f"--start {start}: no such file (a checkpoint under runs/ is git-ignored: name it in carry)"
        (out / "checks.json").write_text(json.dumps({"skipped": message}) + "\n")
        print(f"[burst] {message}", file=sys.stderr)
        return 2
    if args.scratch is not None:
        scratch = args.scratch.resolve()
        if scratch.exists() and any(scratch.iterdir()):
            print(f"[burst] --scratch {scratch} is not empty: give a new or empty folder", file=sys.stderr)
            return 2
        scratch.mkdir(parents=True, exist_ok=True)
    else:
        scratch = Path(tempfile.mkdtemp(prefix="corrdiff-burst-"))
    run = scratch / "run"
    env = child_env(args.dry_run)
    kind = start_kind(start)
    if kind == "checkpoint":
        start = str(Path(start).resolve())
    elif kind == "model" and Path(start).is_file():
        start = str(Path(start).resolve())
    steps_before, trained_before = checkpoint_state(Path(start)) if kind == "checkpoint" else (0, 0.0)
    device = device_name(args.dry_run)
    print(f"[burst] {device}; torch {torch.__version__}; recipe {config.name}; start {start} ({kind}, step "
          f"{steps_before}); {args.minutes:g} min in all", flush=True)

    # 1. the checks
    checks_path = out / "checks.json"
    check_timeout = min(args.check_seconds, deadline - time.monotonic() - 180)
    if args.no_checks:
        checks_path.write_text(json.dumps({"skipped": "--no-checks"}, indent=2) + "\n")
    elif check_timeout < 10:
        checks_path.write_text(json.dumps({"skipped": f"no time for checks in {args.minutes} min"}) + "\n")
    else:
        command = [sys.executable, str(HERE / "checks.py"), "--config", str(config), "--start", start,
                   "--json", str(checks_path), "--scratch", str(scratch / "checks"), "--steps", str(args.check_steps)]
        if args.batch_size:
            command += ["--batch-size", str(args.batch_size)]
        if args.dry_run:
            command += ["--dry-run"]
        status, stopped, seconds, tail = run_bounded(command + ["--", *extra], check_timeout, env)
        checks = json.loads(checks_path.read_text()) if checks_path.is_file() else {}
        checks.update({"exit_status": status, "stopped_at_time_limit": stopped, "seconds": round(seconds, 1)})
        if status != 0:
            checks["log_tail"] = tail
            notes.append(f"checks ended with status {status}{' (stopped at its time limit)' if stopped else ''}")
        checks_path.write_text(json.dumps(checks, indent=2) + "\n")

    # 2. the fit
    remaining = deadline - time.monotonic()
    budget = remaining - args.margin * 60
    fit = {"status": None, "stopped": False, "seconds": 0.0, "tail": []}
    if budget < 20:
        notes.append(f"only {remaining:.0f} s left after the checks: no training")
    else:
        command = fit_command(config, run, start, kind, trained_before + budget, precision=args.precision,
                              batch_size=args.batch_size, dry_run=args.dry_run, steps_before=steps_before,
                              extra=extra)
        status, stopped, seconds, tail = run_bounded(command, remaining - FINALIZE_SECONDS, env)
        fit = {"status": status, "stopped": stopped, "seconds": seconds, "tail": tail}
        if status != 0:
            notes.append(f"corrdiff fit ended with status {status}" + (" (stopped at the time limit; the last "
                         "periodic checkpoint is what comes back)" if stopped else ""))

    # 3. what comes back
    last = run / "checkpoints" / CHECKPOINT
    metrics_files = sorted(run.glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime)
    metrics_path = metrics_files[-1] if metrics_files else None
    if metrics_path is not None:
        shutil.copyfile(metrics_path, out / "metrics.csv")
    steps_after, trained_after = checkpoint_state(last) if last.is_file() else (steps_before, trained_before)
    model = None
    if last.is_file():
        model = scratch / MODEL
        export = [sys.executable, "-m", "corrdiff", "export", str(last), "-o", str(model), "--half", "--force"]
        status, _, _, tail = run_bounded(export, max(10.0, deadline - time.monotonic() - 5), env)
        if status != 0 or not model.is_file():
            notes.append(f"corrdiff export failed ({status}): " + " / ".join(tail[-3:]))
            model = None
    steps = steps_after - steps_before
    train_seconds = trained_after - trained_before
    entry: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "device": device,
        "torch": torch.__version__, "recipe": str(config.relative_to(ROOT) if config.is_relative_to(ROOT) else config),
        "start": start, "start_kind": kind, "precision": args.precision, "batch_size": args.batch_size,
        "dry_run": args.dry_run, "steps_before": steps_before, "steps_after": steps_after, "steps": steps,
        "train_seconds": round(train_seconds, 1),
        "steps_per_s": round(steps / train_seconds, 4) if steps > 0 and train_seconds > 0 else None,
        "fit_seconds": round(fit["seconds"], 1), "fit_status": fit["status"], "fit_stopped": fit["stopped"],
        **read_metrics(metrics_path), "extra_args": extra,
    }
    # written before the split so that its size counts in the return budget, rewritten once the files are placed
    (out / "ledger.json").write_text(json.dumps(entry, indent=2) + "\n")
    trained = last.is_file() or fit["status"] is not None
    manifest = place_outputs(out, last if trained else None, model, int(args.part_mib * MiB), notes)
    entry.update({"wall_s": round(time.monotonic() - t0, 1), "files": sorted(manifest["files"]), "notes": notes,
                  "fit_log_tail": fit["tail"] if fit["status"] != 0 else fit["tail"][-8:]})
    entry["row"] = ledger_row(entry)
    (out / "ledger.json").write_text(json.dumps(entry, indent=2) + "\n")
    if not args.keep_scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    for note in notes:
        print(f"[burst] note: {note}", flush=True)
    print("[burst] back in --out:", ", ".join(sorted(p.name for p in out.iterdir())), flush=True)
    print("LEDGER " + entry["row"], flush=True)
    return 0 if fit["status"] == 0 and CHECKPOINT in manifest["files"] else 1


def join_all(folder: Path, output: Path | None = None) -> dict[str, Path]:
    """Every file of a burst's manifest, checked: split ones joined (``last.ckpt`` to ``output``, default
    ``FOLDER-joined/last.ckpt``; others beside it), whole ones verified where they are. {name: path}."""
    manifest = read_manifest(folder)
    output = output or folder.with_name(folder.name + "-joined") / CHECKPOINT
    paths = {}
    for name, entry in manifest["files"].items():
        if entry.get("parts"):
            paths[name] = join_parts(folder, name, output if name == CHECKPOINT else output.with_name(name), manifest)
        else:
            verify_file(folder, name, manifest)
            paths[name] = folder / name
    return paths


def join_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="burst.py join", description="Reassemble a burst's checkpoint from its "
                                     "parts and check every sha256 (the model file's too).")
    parser.add_argument("folder", type=Path, help="the burst's output folder (the device reply's files_at)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="where to write last.ckpt (default: FOLDER-joined/last.ckpt)")
    args = parser.parse_args(argv)
    try:
        manifest = read_manifest(args.folder)
        paths = join_all(args.folder, args.output)
    except JoinError as exc:
        print(f"join: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        parts = manifest["files"][name].get("parts")
        print(f"{path}: " + (f"{len(parts)} parts joined, sha256 ok" if parts else "sha256 ok"))
    for note in manifest.get("notes", []):
        print(f"note: {note}")
    if not paths:
        print("join: the manifest lists no file (see its notes)", file=sys.stderr)
        return 1
    return 0


def row_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="burst.py row", description="The ledger row of a burst's ledger.json.")
    parser.add_argument("ledger", type=Path)
    print(ledger_row(json.loads(parser.parse_args(argv).ledger.read_text())))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "join":
        return join_main(argv[1:])
    if argv and argv[0] == "row":
        return row_main(argv[1:])
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help="the recipe (default with --dry-run: "
                        "experiments/tiny/phase1.yaml)")
    parser.add_argument("--start", default=None, help="a Lightning checkpoint (resumed), a model file or packaged "
                        "name (init_from, all weights), or 'recipe' (the recipe's own start)")
    parser.add_argument("--minutes", type=float, default=8.0, help="wall time of the whole script (default 8)")
    parser.add_argument("--margin", type=float, default=1.5, help="minutes between the end of training and "
                        "--minutes, for start-up, saving and export (default 1.5)")
    parser.add_argument("--out", type=Path, required=True, help="folder of what comes back ($OUT on the device)")
    parser.add_argument("--precision", default=None, help="trainer.precision, e.g. bf16-mixed (default: recipe)")
    parser.add_argument("--batch-size", type=int, default=None, help="data.batch_size (default: recipe)")
    parser.add_argument("--part-mib", type=float, default=15.0, help="checkpoint part size in MiB (default 15)")
    parser.add_argument("--check-seconds", type=float, default=75.0, help="time limit of all checks (default 75)")
    parser.add_argument("--check-steps", type=int, default=None, help="timed steps per precision "
                        "(default 5; 1 with --dry-run)")
    parser.add_argument("--no-checks", action="store_true", help="skip the checks")
    parser.add_argument("--scratch", type=Path, default=None, help="scratch folder of the run (default: a new "
                        "temporary folder; removed at the end unless --keep-scratch)")
    parser.add_argument("--keep-scratch", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, two steps, the tiny recipe by default")
    args = parser.parse_args(argv)
    if args.check_steps is None:
        args.check_steps = 1 if args.dry_run else 5
    if args.part_mib * MiB > MAX_FILE_BYTES:
        parser.error(f"--part-mib over {MAX_FILE_BYTES // MiB}: a part would not come back from the device")
    return burst(args, extra)


if __name__ == "__main__":
    sys.exit(main())
