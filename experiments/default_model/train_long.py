"""Train for a given wall time, continuing whatever the last session left (issue 12).

    nice python experiments/default_model/train_long.py --max-time 02:00:00 \
        --run runs/default_model/long --export corrdiff/assets/default.pt

Each call adds ``--max-time`` of training to the run, then exports ``last.ckpt`` to ``--export``:

* When ``RUN/checkpoints/last.ckpt`` exists (the same machine, a later call), the run is resumed
  with its optimiser, EMA and step count (``corrdiff fit --ckpt_path``); Lightning's timer counts
  the time already trained, so the limit passed on is that time plus ``--max-time``.
* Otherwise (a fresh clone: Lightning checkpoints are too large to commit), it starts from the
  exported model ``--start`` (default: ``--export``, i.e. the model the last session committed),
  with all its weights (``init_skip`` emptied: the score network is continued, not re-initialised)
  and a fresh optimiser.

Anything after ``--`` is passed to ``corrdiff fit`` (e.g. ``-- --model.lr 2e-4``); ``--config`` picks
the recipe (``score.yaml``, or ``adversarial.yaml``: from a model file its discriminator starts afresh,
under its warm-up). Commit the exported model (about 12 MB), not the checkpoint, at most once a session.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def parse_duration(text: str) -> float:
    """Seconds of ``[DD:]HH:MM:SS`` (Lightning's ``max_time`` format) or of plain minutes (``90``)."""
    parts = [float(p) for p in text.split(":")]
    if len(parts) == 1:
        return parts[0] * 60
    if not 3 <= len(parts) <= 4:
        raise ValueError(f"duration must be [DD:]HH:MM:SS or minutes, got {text!r}")
    days, hours, minutes, seconds = ([0.0] * (4 - len(parts))) + parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def format_duration(seconds: float) -> str:
    """``DD:HH:MM:SS`` for Lightning's ``--trainer.max_time`` (rounded up to a whole second)."""
    total = int(-(-seconds // 1))
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"


def trained_seconds(checkpoint: dict) -> float:
    """Training time already spent by a run, as Lightning's Timer callback saved it (0 if none)."""
    for key, state in checkpoint.get("callbacks", {}).items():
        if str(key).startswith("Timer") and isinstance(state, dict):
            return float(state.get("time_elapsed", {}).get("train", 0.0))
    return 0.0


def fit_command(run: Path, start: Path, max_time: float, extra: list[str]) -> list[str]:
    """The ``corrdiff fit`` call that adds ``max_time`` seconds of training to ``run``."""
    last = run / "checkpoints" / "last.ckpt"
    command = ["corrdiff", "fit", "--config", str(run / "config.yaml"), "--trainer.max_steps", "-1"]
    if last.exists():
        done = trained_seconds(torch.load(last, map_location="cpu", weights_only=False))
        command += ["--ckpt_path", str(last), "--trainer.max_time", format_duration(done + max_time)]
    else:
        command += ["--model.init_from", str(start), "--model.init_skip", "[]",
                    "--trainer.max_time", format_duration(max_time)]
    return command + extra


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-time", required=True, help="training time to add: [DD:]HH:MM:SS or minutes")
    parser.add_argument("--run", type=Path, default=Path("runs/default_model/long"), help="run folder")
    parser.add_argument("--config", type=Path, default=HERE / "score.yaml", help="corrdiff fit config")
    parser.add_argument("--export", type=Path, required=True, help="model file to write at the end")
    parser.add_argument("--start", type=Path, default=None, help="model to start from without a checkpoint "
                        "(default: --export)")
    args = parser.parse_args(argv)
    start = args.start or args.export
    last = args.run / "checkpoints" / "last.ckpt"
    if not last.exists() and not start.exists():
        parser.error(f"neither {last} nor the start model {start} exists")
    args.run.mkdir(parents=True, exist_ok=True)
    # the config's output paths (everything under its default_root_dir), pointed at this run
    text = args.config.read_text()
    root = re.search(r"default_root_dir:\s*(\S+)", text)
    if root is None:
        parser.error(f"{args.config} sets no trainer.default_root_dir to point at --run")
    text = text.replace(root.group(1), str(args.run))
    (args.run / "config.yaml").write_text(text)
    command = fit_command(args.run, start, parse_duration(args.max_time), extra)
    print("$", shlex.join(command), flush=True)
    status = subprocess.call(command)
    if not last.exists():
        print(f"no checkpoint in {last.parent}: nothing to export", file=sys.stderr)
        return status or 1
    export = ["corrdiff", "export", str(last), "-o", str(args.export), "--half", "--force"]
    print("$", shlex.join(export), flush=True)
    return status or subprocess.call(export)


if __name__ == "__main__":
    sys.exit(main())
