"""GPU figures of a model file: encode/decode time and peak memory per image size, achieved FLOP/s of
decoding against the card's measured dense matmul FLOP/s.

    python benchmarks/gpu_codec.py MODEL.pt [--repeats 3]

Prints one line per figure (JSON at the end). Needs a CUDA device; the CPU benchmark is `corrdiff bench`.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import corrdiff
from corrdiff.bench.measure import time_call
from corrdiff.image_io import load_image, to_tensor
from corrdiff.model_io import packaged_model_path

SIZES = [(256, 256), (512, 768), (1080, 1920), (2160, 3840)]


def matmul_flops(dtype: torch.dtype, n: int = 8192, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn`` with the GPU drained before and after each run (bench.measure.time_call)."""

    def synced():
        out = fn()
        torch.cuda.synchronize()
        return out

    torch.cuda.synchronize()
    timing, outputs = time_call(synced, repeats)
    return timing.median, outputs[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default="default")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    results: dict[str, object] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    results["matmul_fp32_flops"] = matmul_flops(torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = True
    results["matmul_tf32_flops"] = matmul_flops(torch.float32)
    results["matmul_bf16_flops"] = matmul_flops(torch.bfloat16)
    print({k: (f"{v / 1e12:.1f} TFLOP/s" if isinstance(v, float) else v) for k, v in results.items()}, flush=True)
    codec = corrdiff.load_model(args.model, map_location="cuda")
    rgb8 = load_image(packaged_model_path("default").parent / "demo.png")  # (H, W, 3) uint8
    photo = to_tensor(rgb8)
    rows = []
    for h, w in SIZES:
        x = F.interpolate(photo, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1).cuda()
        codec.encode(x)  # warm-up (cuDNN autotuning, allocator)
        torch.cuda.reset_peak_memory_stats()
        t_enc, enc = timed(lambda: codec.encode(x), args.repeats)
        peak_enc = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t_dec, _ = timed(lambda: codec.decompress(enc.data), args.repeats)
        peak_dec = torch.cuda.max_memory_allocated()
        with FlopCounterMode(display=False) as counter:
            codec.decompress(enc.data)
        flops = counter.get_total_flops()
        row = {"size": f"{w}x{h}", "bpp": len(enc.data) * 8 / (h * w), "encode_s": t_enc, "decode_s": t_dec,
               "encode_peak_GiB": peak_enc / 2**30, "decode_peak_GiB": peak_dec / 2**30,
               "decode_GFLOP": flops / 1e9, "decode_TFLOP/s": flops / t_dec / 1e12,
               "decode_MPix/s": h * w / t_dec / 1e6}
        rows.append(row)
        print(json.dumps(row), flush=True)
    results["rows"] = rows
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
