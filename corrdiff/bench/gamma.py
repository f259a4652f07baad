"""Section ``gamma``: the two gamma solvers (closed form, gradient descent) on image-sized tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from corrdiff.bench.inputs import bench_image
from corrdiff.bench.measure import time_call
from corrdiff.bench.settings import size_name
from corrdiff.image_io import to_model_range, to_tensor


def gamma_inputs(rgb: np.ndarray, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, x0_d, x0_e) in [-1, 1] like a sampling step's: x0_e a blurred x, x0_d a noisy x."""
    x = to_model_range(to_tensor(rgb))
    x0_e = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x, (x + 0.3 * noise).clamp(-1, 1), x0_e


def gamma_section(size: tuple[int, int], repeats: int, warmup: int) -> dict[str, Any]:
    """Section ``gamma``: closed form vs gradient descent; times, ratio, and the transmitted gammas."""
    from corrdiff.correction import closed_form_gamma, gradient_gamma, quantize_gamma

    x, x0_d, x0_e = gamma_inputs(bench_image(*size))
    solvers = {"closed form": closed_form_gamma, "gradient (L-BFGS)": gradient_gamma}
    out: dict[str, Any] = {"size": size_name(size), "solvers": {}}
    for name, solver in solvers.items():
        timing, gammas = time_call(lambda: solver(x, x0_d, x0_e), repeats, warmup)
        value = float(gammas[-1].flatten()[0])
        out["solvers"][name] = {"median_s": timing.median, "timing": timing.to_json(), "gamma": value,
                                "gamma_fp16": float(quantize_gamma(torch.tensor(value)))}
    closed, gradient = out["solvers"].values()
    ulp = float(np.spacing(np.float16(max(abs(closed["gamma_fp16"]), abs(gradient["gamma_fp16"])))))
    out["ratio_gradient_over_closed"] = gradient["median_s"] / closed["median_s"]
    out["fp16_ulps_apart"] = abs(closed["gamma_fp16"] - gradient["gamma_fp16"]) / ulp
    out["agree_fp16"] = out["fp16_ulps_apart"] <= 1
    return out
