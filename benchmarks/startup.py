"""Start-up time of the file tools: wall time of ``corrdiff compress`` / ``decompress`` of a small image
in fresh processes (issue 13's target: compress of a 64x64 PNG under 2 s), beside the floor that no
corrdiff change can lower: a process that only imports torch.

    PYTHONPATH=. python benchmarks/startup.py [--runs 7] [--size 64] [--model default]

Prints the median and the range of each; ``--importtime`` also prints the slowest imports of one
compress run (``python -X importtime``). Measures the corrdiff found first on PYTHONPATH (this checkout).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def wall_times(command: list[str], runs: int, env: dict) -> list[float]:
    """Wall seconds of ``runs`` fresh runs of ``command`` (each must succeed)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr}")
    return times


def report(label: str, times: list[float]) -> None:
    print(f"{label:44} median {statistics.median(times):5.2f} s  (min {min(times):.2f}, max {max(times):.2f}, "
          f"{len(times)} runs)", flush=True)


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
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports of compress")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONWARNINGS="default")
    with tempfile.TemporaryDirectory() as tmp:
        image, cdf, png = Path(tmp, "in.png"), Path(tmp, "in.cdf"), Path(tmp, "out.png")
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(image)
        cli = [sys.executable, "-m", "corrdiff"]
        compress = [*cli, "compress", str(image), "-o", str(cdf), "-f", "--model", args.model]
        decompress = [*cli, "decompress", str(cdf), "-o", str(png), "-f", "--model", args.model]
        report("python -c 'import torch' (the floor)", wall_times([sys.executable, "-c", "import torch"], args.runs, env))
        report(f"corrdiff compress {args.size}x{args.size}", wall_times(compress, args.runs, env))
        report(f"corrdiff decompress {args.size}x{args.size}", wall_times(decompress, args.runs, env))
        if args.importtime:
            print("slowest imports of one compress run:")
            slowest_imports(compress, env)


if __name__ == "__main__":
    main()
