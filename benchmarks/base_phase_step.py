"""Step time of the base phase (RateDistortionTraining) against the joint phase (JointTraining), side by side.

    OMP_NUM_THREADS=1 python benchmarks/base_phase_step.py --rounds 5 --steps 4

Both phases start from the packaged default model's weights (its codec and score network), on the same batch
of crops of the bundled photo (``--batch`` x ``--crop``); the rounds alternate the two phases so both see the
same machine load. Each round is a ``lightning.Trainer.fit`` of ``--steps`` steps after one warm-up step
(corrdiff/bench/training.py); prints each phase's median step time over all rounds and their ratio.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from corrdiff.bench.inputs import training_batch
from corrdiff.bench.training import fit_steps
from corrdiff.training import JointTraining, RateDistortionTraining


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    batch = training_batch(args.batch, args.crop)
    phases = {"joint (JointTraining)": JointTraining(init_from="default", val_compress_images=0),
              "base (RateDistortionTraining)": RateDistortionTraining(init_from="default", val_compress_images=0)}
    times: dict[str, list[float]] = {name: [] for name in phases}
    for _ in range(args.rounds):
        for name, module in phases.items():
            times[name] += fit_steps(module, batch, args.steps, warmup=1).times[1:]
    medians = {name: statistics.median(values) for name, values in times.items()}
    joint = medians["joint (JointTraining)"]
    for name, median in medians.items():
        print(f"{name}: median step {median:.3f} s over {len(times[name])} steps, ratio to joint {median / joint:.2f}")


if __name__ == "__main__":
    main()
