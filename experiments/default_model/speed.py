"""Decode time of packaged models side by side (same process, interleaved rounds, median).

    nice python experiments/default_model/speed.py --model smooth --model default --rounds 3

Each model compresses the 768x512 demo photo once (its own default steps), then the rounds decode
every model's file in turn, so both see the same machine load; prints each model's steps, median
decode seconds and the ratio to the first model. One torch thread (the default on a busy 2-core
machine, docs/benchmarks.md; ``--threads 2`` for two).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import corrdiff
from corrdiff.demo import demo_image_path
from corrdiff.image_io import load_image
from corrdiff.metrics import to_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = to_tensor(load_image(demo_image_path()))
    codecs = {name: corrdiff.load_model(name) for name in args.model}
    files = {name: codec.compress(image) for name, codec in codecs.items()}
    times: dict[str, list[float]] = {name: [] for name in codecs}
    for _ in range(args.rounds):
        for name, codec in codecs.items():
            start = time.perf_counter()
            codec.decompress(files[name])
            times[name].append(time.perf_counter() - start)
    first = statistics.median(times[args.model[0]])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name}: {corrdiff.bitstream.unpack(files[name]).steps} steps, decode median {median:.2f} s "
              f"of {[round(v, 2) for v in values]}, ratio to {args.model[0]} {median / first:.2f}")


if __name__ == "__main__":
    main()
