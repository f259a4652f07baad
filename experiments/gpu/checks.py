"""The cheap checks of a GPU burst (experiments/gpu/burst.py runs this in a subprocess with a time limit).

    python experiments/gpu/checks.py --config RECIPE.yaml --start CKPT_OR_MODEL --json checks.json \\
        [--steps 5] [--batch-size N] [--dry-run] [-- EXTRA corrdiff fit ARGS]

* ``throughput``: the recipe's phase (its LightningModule and one batch of its own data module, built as
  ``corrdiff fit`` builds them, started from ``--start``) stepped by a ``lightning.Trainer`` on the device in
  fp32 (``32-true``) and ``bf16-mixed``: median step time, samples/s, peak GPU memory, losses finite, and
  the bf16 speed-up. The step loop is :func:`corrdiff.bench.training.fit_steps`'s with the accelerator and
  precision as arguments (fit_steps itself runs on the CPU in fp32 only).
* ``gpu_to_cpu``: the phase's codec saved as a model file (half weights, entropy tables built once, as
  ``corrdiff export`` writes them), loaded on the GPU and on the CPU; a 256x256 crop of the bundled photo
  encoded on the GPU is parsed and decoded on the CPU: the latent equal to the encoder's (entropy-exact)? the
  CPU image against the encoder's reconstruction (max/mean absolute difference in 8-bit levels, pixels that
  differ after rounding to 8 bits); the GPU's own decode against it too, and whether a CPU encode of the same
  crop gives the same bytes and decodes on the GPU.

Each result is written to ``--json`` as soon as it is known, so a check stopped at its time limit still leaves
the others. Without CUDA (and without ``--dry-run``) both are skipped with a note; ``--dry-run`` runs both
on the CPU (fp32 vs bf16-mixed on the CPU, CPU encode against CPU decode) with one timed step.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRECISIONS = ("32-true", "bf16-mixed")


class Results:
    """A JSON file rewritten after every change."""

    def __init__(self, path: Path):
        self.path, self.data = path, {}

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")


def fit_steps_on(module, batch, steps: int, warmup: int, accelerator: str, precision: str):
    """:func:`corrdiff.bench.training.fit_steps` on ``accelerator`` at ``precision``: ``warmup + steps``
    optimisation steps of ``module`` on ``batch``, each step's wall time and loss in the returned StepTimer."""
    import lightning as L
    from torch.utils.data import DataLoader

    from corrdiff.bench.training import StepTimer, quiet_lightning

    total = warmup + steps
    timer = StepTimer()
    with quiet_lightning():
        trainer = L.Trainer(
            accelerator=accelerator, devices=1, precision=precision, max_steps=total, max_epochs=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
            num_sanity_val_steps=0, callbacks=[timer],
        )
        trainer.fit(module, train_dataloaders=DataLoader([batch] * total, batch_size=None))
    return timer


def build_phase(config: Path, start: str, scratch: Path, accelerator: str, batch_size: int | None,
                extra: list[str]):
    """The recipe's LightningModule and one training batch, as ``corrdiff fit`` would build them."""
    import lightning as L

    from corrdiff.training.cli import CorrDiffCLI, _quiet_lightning
    from corrdiff.training.lit import CodecTraining

    args = ["--config", str(config), "--run", str(scratch / "run"), "--trainer.accelerator", accelerator,
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    if start != "recipe":
        args += ["--model.init_from", start, "--model.init_skip", "[]"]
    if batch_size:
        args += ["--data.batch_size", str(batch_size)]
    args += extra  # the burst's overrides of the recipe (data folders, ...)
    with _quiet_lightning():
        cli = CorrDiffCLI(CodecTraining, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                          args=args, run=False, save_config_callback=None, auto_configure_optimizers=False,
                          parser_kwargs={"prog": "corrdiff"})
    data = cli.datamodule
    data.prepare_data()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    return cli.model, batch


def batch_len(batch) -> int:
    if isinstance(batch, dict):
        return int(next(v for v in batch.values() if hasattr(v, "shape")).shape[0])
    if isinstance(batch, (list, tuple)):
        return batch_len(batch[0])
    return int(batch.shape[0])


def throughput(module, batch, device: str, steps: int, warmup: int) -> dict[str, Any]:
    import torch

    from corrdiff.bench.measure import Timing

    accelerator = "gpu" if device == "cuda" else "cpu"
    rows: dict[str, Any] = {}
    for precision in PRECISIONS:
        torch.manual_seed(0)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            timer = fit_steps_on(module, batch, steps, warmup, accelerator, precision)
        except Exception as exc:  # noqa: BLE001 - recorded, the next precision still runs
            rows[precision] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        timing = Timing(timer.times[warmup:], warmup)
        rows[precision] = {
            "step_s": timing.median, "samples_per_s": batch_len(batch) / timing.median, "timing": timing.to_json(),
            "losses": timer.losses,
            "loss_finite": all(v is not None and math.isfinite(v) for v in timer.losses),
            "peak_GiB": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        }
    fp32, bf16 = rows.get("32-true", {}), rows.get("bf16-mixed", {})
    if "step_s" in fp32 and "step_s" in bf16:
        rows["bf16_speedup"] = fp32["step_s"] / bf16["step_s"]
    rows["batch_size"] = batch_len(batch)
    return rows


def gpu_to_cpu(codec, device: str, scratch: Path, size: int) -> dict[str, Any]:
    """A file encoded on ``device`` decoded on the CPU (see the module docstring)."""
    import torch

    from corrdiff.bench.inputs import bench_image
    from corrdiff.model_io import load_model, save_model

    path = scratch / "check_model.pt"
    codec = copy.deepcopy(codec).cpu().float().eval()
    codec.update(force=True)
    save_model(codec, path, half=True)
    on_device, on_cpu = load_model(path, map_location=device), load_model(path, map_location="cpu")
    x = torch.from_numpy(bench_image(size, size)).permute(2, 0, 1)[None].float().div(255)
    result: dict[str, Any] = {"size": f"{size}x{size}", "encoder": device, "decoder": "cpu"}
    with torch.no_grad():
        t = time.perf_counter()
        enc = on_device.encode(x.to(device))
        result.update(encode_s=time.perf_counter() - t, bytes=len(enc.data), bpp=enc.bpp())
        reference = enc.reconstruction.float().cpu()
        _, y_cpu = on_cpu.read(enc.data)
        result["entropy_exact"] = bool(torch.equal(y_cpu.cpu(), enc.y_hat.cpu()))
        if not result["entropy_exact"]:
            diff = (y_cpu.cpu().float() - enc.y_hat.cpu().float()).abs()
            result["latent_mismatches"] = int((diff > 0).sum())
        t = time.perf_counter()
        cpu_image = on_cpu.decompress(enc.data).float().cpu()
        result["cpu_decode_s"] = time.perf_counter() - t
        result["cpu_vs_encoder"] = image_difference(cpu_image, reference)
        result["device_vs_encoder"] = image_difference(on_device.decompress(enc.data).float().cpu(), reference)
        cpu_enc = on_cpu.encode(x)
        result["same_bytes_as_cpu_encode"] = cpu_enc.data == enc.data
        result["cpu_file_on_device_vs_cpu_encoder"] = image_difference(
            on_device.decompress(cpu_enc.data).float().cpu(), cpu_enc.reconstruction.float().cpu())
    return result


def image_difference(a, b) -> dict[str, float | int]:
    """Absolute differences of two [0, 1] images in 8-bit levels, and how many 8-bit samples differ."""
    diff = (a - b).abs() * 255
    a8, b8 = (a.clamp(0, 1) * 255).round(), (b.clamp(0, 1) * 255).round()
    return {"max": float(diff.max()), "mean": float(diff.mean()), "samples_differing_8bit": int((a8 != b8).sum()),
            "samples": a.numel()}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--start", default="recipe")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; 1 with --dry-run)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--size", type=int, default=None, help="crop side of the codec check (default 256; "
                        "64 with --dry-run)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    import torch

    results = Results(args.json)
    args.scratch.mkdir(parents=True, exist_ok=True)
    results.set("torch", torch.__version__)
    if args.dry_run:
        device = "cpu"
        results.set("note", "dry run: both checks on the CPU (CPU encode vs CPU decode; fp32 vs bf16-mixed on the "
                    "CPU): they test this script, not a GPU")
    elif torch.cuda.is_available():
        device = "cuda"
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (the CPU's arithmetic)
        torch.backends.cudnn.allow_tf32 = False
        results.set("device", torch.cuda.get_device_name(0))
    else:
        results.set("skipped", "no CUDA device: the throughput and GPU-to-CPU checks need one (nothing measured)")
        print("[checks] no CUDA device: skipped", flush=True)
        return 0
    warmup = args.warmup if args.warmup is not None else (1 if args.dry_run else 2)
    t = time.perf_counter()
    try:
        module, batch = build_phase(args.config, args.start, args.scratch, "cpu" if device == "cpu" else "gpu",
                                    args.batch_size, extra)
    except Exception as exc:  # noqa: BLE001
        results.set("error", f"building the recipe's phase: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    results.set("phase", type(module).__name__)
    results.set("build_s", time.perf_counter() - t)
    status = 0
    # the codec check first: the phase's weights as they start, before the throughput steps move them
    try:
        t = time.perf_counter()
        results.set("gpu_to_cpu", gpu_to_cpu(module.codec, device, args.scratch,
                                             args.size or (64 if args.dry_run else 256)))
        print(f"[checks] gpu_to_cpu: {json.dumps(results.data['gpu_to_cpu'])} ({time.perf_counter() - t:.1f} s)",
              flush=True)
    except Exception as exc:  # noqa: BLE001
        results.set("gpu_to_cpu", {"error": f"{type(exc).__name__}: {exc}"})
        traceback.print_exc()
        status = 1
    try:
        t = time.perf_counter()
        rows = throughput(module, batch, device, args.steps, warmup)
        results.set("throughput", rows)
        summary = {p: (rows[p].get("step_s"), rows[p].get("error")) for p in PRECISIONS}
        print(f"[checks] throughput (step_s, error): {summary}, bf16 speed-up {rows.get('bf16_speedup')} "
              f"({time.perf_counter() - t:.1f} s)", flush=True)
        if any("error" in rows[p] for p in PRECISIONS):
            status = 1
    except Exception as exc:  # noqa: BLE001
        results.set("throughput", {"error": f"{type(exc).__name__}: {exc}"})
        traceback.print_exc()
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
