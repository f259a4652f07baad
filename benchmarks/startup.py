"""Start-up time of the file tools: wall time of ``corrdiff compress`` / ``decompress`` of a small image
in fresh processes (issue 13's target: compress of a 64x64 PNG under 2 s), beside the floor that no
corrdiff change can lower: a process that only imports torch.

    python benchmarks/startup.py [--runs 7] [--size 64] [--model default] [--baseline DIR] [--importtime]

Measures the corrdiff of this checkout (put first on PYTHONPATH); ``--baseline DIR`` also measures
another checkout (e.g. ``git worktree add /tmp/old HEAD~5``), interleaved run by run so that both see
the same machine load. Prints the median and range of the wall time and the median CPU time (user +
system) of each; ``--importtime`` lists the slowest imports of one compress run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def timed_run(command: list[str], env: dict, cwd: str | Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh run of ``command``, which must succeed. ``cwd``: a folder
    outside any checkout (``python -m`` puts the working folder first on the path, before PYTHONPATH)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def report(label: str, runs: list[tuple[float, float]]) -> None:
    wall = [w for w, _ in runs]
    print(f"{label:46} median {statistics.median(wall):5.2f} s wall (min {min(wall):.2f}, max {max(wall):.2f}), "
          f"{statistics.median([c for _, c in runs]):5.2f} s CPU, {len(runs)} runs", flush=True)


def slowest_imports(command: list[str], env: dict, n: int = 12) -> None:
    """The ``n`` slowest top-level imports of one run (cumulative seconds)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], capture_output=True, text=True, env=env)
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2]
            if len(name) - len(name.lstrip()) == 1:  # top level: one space of indentation
                rows.append((int(parts[1]) / 1e6, name.strip()))
    for seconds, name in sorted(rows, reverse=True)[:n]:
        print(f"  {seconds:6.2f} s  import {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per command (default: 7)")
    parser.add_argument("--size", type=int, default=64, help="side of the test image (default: 64)")
    parser.add_argument("--model", default="default", help="model file or packaged name (default: default)")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to measure alongside")
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports of compress")
    args = parser.parse_args()
    versions = {"this checkout": REPO}
    if args.baseline is not None:
        versions["baseline"] = args.baseline.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        image, png = Path(tmp, "in.png"), Path(tmp, "out.png")
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(image)
        commands = {"python -c 'import torch' (the floor)": ([sys.executable, "-c", "import torch"], REPO),
                    # `import corrdiff` loads no torch (tests/test_import.py checks which modules; the time is here)
                    "python -c 'import corrdiff'": ([sys.executable, "-c", "import corrdiff"], REPO)}
        for name, root in versions.items():
            cdf = Path(tmp, f"{len(commands)}.cdf")
            # the baseline may predate `python -m corrdiff`; corrdiff.cli runs its main() either way
            cli = [sys.executable, "-m", "corrdiff" if (root / "corrdiff" / "__main__.py").exists() else "corrdiff.cli"]
            commands[f"compress {args.size}x{args.size} ({name})"] = (
                [*cli, "compress", str(image), "-o", str(cdf), "-f", "--model", args.model], root)
            commands[f"decompress {args.size}x{args.size} ({name})"] = (
                [*cli, "decompress", str(cdf), "-o", str(png), "-f", "--model", args.model], root)
        results: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
        for _ in range(args.runs):  # interleaved: every command sees the same load
            for label, (command, root) in commands.items():
                env = dict(os.environ, PYTHONPATH=str(root), PYTHONWARNINGS="default")
                results[label].append(timed_run(command, env, tmp))
        for label, runs in results.items():
            report(label, runs)
        if args.importtime:
            print("slowest imports of one compress run (this checkout):")
            compress = commands[f"compress {args.size}x{args.size} (this checkout)"][0]
            slowest_imports(compress, dict(os.environ, PYTHONPATH=str(REPO)))


if __name__ == "__main__":
    main()
