"""What the figures depend on: the machine, its load, the libraries and their versions."""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

import numpy as np
import torch


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _parallel_summary() -> str:
    """torch's parallel backend and math libraries, e.g. ``OpenMP; MKL 2024.2; oneDNN v3.12.0``."""
    parts = []
    for line in torch.__config__.parallel_info().splitlines():
        if line.startswith("ATen parallel backend:"):
            parts.insert(0, line.split(":", 1)[1].strip())
        elif "Math Kernel Library Version" in line:
            parts.append("MKL " + line.split("Version", 1)[1].split()[0].split("-")[0])
        elif line.startswith("Intel(R) MKL-DNN"):
            parts.append("oneDNN " + line.split()[2])
    return "; ".join(parts) or "unknown"


def machine_info(threads: int) -> dict[str, Any]:
    """What the figures depend on: CPU, cores, memory, load, library versions, thread count."""
    import compressai
    import PIL

    import corrdiff

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": usable, "memory_GiB": memory,
        "load_average": load_average(),
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": threads,
        "torch_parallel": _parallel_summary(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "compressai": compressai.__version__, "pillow": PIL.__version__, "numpy": np.__version__,
        "corrdiff": corrdiff.__version__,
    }
