"""Sections ``codecs`` and ``peers``: encode and decode time, bpp and memory of the model and of its
peers (compressai's hyperprior of the same widths, JPEG, WebP), one fresh process per (codec, size)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from corrdiff import baselines
from corrdiff.bench.inputs import bench_image, load_bench_model
from corrdiff.bench.measure import current_rss, in_fresh_process, mib, peak_rss, reset_peak_rss, time_call
from corrdiff.bench.settings import BenchSettings, size_name
from corrdiff.image_io import to_tensor

# imported once by the process server, so that every measuring process starts with them loaded
PRELOAD = ("corrdiff.model_io", "compressai.models")


def decoder_width(codec) -> int:
    """Channel width N of the end-to-end decoder (its config, else its first convolution)."""
    width = codec.config["decoder"].get("channels")
    if width is None:
        convolutions = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
        width = next(m.out_channels for m in codec.decoder.modules() if isinstance(m, convolutions))
    return int(width)


class BenchCodec:
    """One codec as the benchmark drives it: ``prepare`` the input once, then ``encode`` / ``decode``.

    ``encode`` returns (payload for ``decode``, file bytes); ``label`` names it in tables.
    """

    name = ""
    label = ""

    def prepare(self, rgb: np.ndarray) -> Any:
        return to_tensor(rgb)

    def encode(self, image: Any) -> tuple[Any, int]:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, payload: Any) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class CorrDiffBench(BenchCodec):
    """Ours: ``codec.encode`` (the whole .cdf file) and ``codec.decompress``."""

    name = "corrdiff"

    def __init__(self, model: str, sampler: dict[str, Any] | None = None):
        self.codec = load_bench_model(model)
        self.sampler = sampler
        self.label = f"CorrDiff ({model})"

    def encode(self, image: torch.Tensor) -> tuple[bytes, int]:
        data = self.codec.encode(image, sampler=self.sampler).data
        return data, len(data)

    def decode(self, payload: bytes) -> None:
        self.codec.decompress(payload)


class HyperpriorBench(BenchCodec):
    """compressai's MeanScaleHyperprior(N, M), untrained (seed 0); input padded to a multiple of 64.

    Bytes are its entropy-coded strings (no header).
    """

    name = "msh"

    def __init__(self, n: int, m: int):
        from compressai.models import MeanScaleHyperprior

        torch.manual_seed(0)
        self.net = MeanScaleHyperprior(N=n, M=m).eval()
        self.net.update(force=True)
        self.label = f"MSH N={n} M={m} (untrained)"

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> tuple[Any, int]:
        h, w = image.shape[-2:]
        out = self.net.compress(F.pad(image, (0, -w % 64, 0, -h % 64), mode="replicate"))
        size = sum(len(s) for strings in out["strings"] for s in strings)
        return (out["strings"], out["shape"], (h, w)), size

    @torch.no_grad()
    def decode(self, payload: Any) -> None:
        strings, shape, (h, w) = payload
        self.net.decompress(strings, shape)["x_hat"][..., :h, :w].contiguous()


class PillowBench(BenchCodec):
    """JPEG or WebP through Pillow at the highest quality whose bpp stays within ``target_bpp``.

    The quality search (:func:`corrdiff.baselines.encode_at_bpp`) is part of ``prepare``, not timed.
    """

    def __init__(self, fmt: str, target_bpp: float):
        self.name, self.target_bpp, self.quality = fmt, target_bpp, None
        self.label = {"jpeg": "JPEG", "webp": "WebP"}.get(fmt, fmt.upper())

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        self.quality = baselines.encode_at_bpp(rgb, self.name, self.target_bpp).quality
        self.label = f"{self.label} q={self.quality}"
        return rgb

    def encode(self, image: np.ndarray) -> tuple[bytes, int]:
        data = baselines.to_bytes(image, self.name, self.quality)
        return data, len(data)

    def decode(self, payload: bytes) -> None:
        baselines.from_bytes(payload)


def build_bench_codec(spec: dict[str, Any]) -> BenchCodec:
    """A :class:`BenchCodec` from a plain (picklable) spec: ``{"kind": "corrdiff"|"msh"|"pillow", ...}``."""
    kind = spec["kind"]
    if kind == "corrdiff":
        return CorrDiffBench(spec["model"], spec.get("sampler"))
    if kind == "msh":
        return HyperpriorBench(spec["n"], spec["m"])
    if kind == "pillow":
        return PillowBench(spec["format"], spec["target_bpp"])
    raise ValueError(f"unknown benchmark codec kind {kind!r}")


def peer_specs(codec, target_bpp: float) -> list[dict[str, Any]]:
    """Peers of ``codec``: the hyperprior of its widths; JPEG, WebP (if Pillow has it) at ``target_bpp``."""
    msh = {"kind": "msh", "n": decoder_width(codec), "m": int(codec.config["latent_channels"])}
    specs: list[dict[str, Any]] = [msh]
    for fmt in ("jpeg", "webp"):
        if fmt in baselines.available_formats():
            specs.append({"kind": "pillow", "format": fmt, "target_bpp": target_bpp})
    return specs


def measure_codec(spec: dict[str, Any], size: tuple[int, int], repeats: int, warmup: int,
                  threads: int) -> dict[str, Any]:
    """Encode and decode one image with one codec; times and RSS figures. Meant for a fresh process."""
    torch.set_num_threads(threads)
    rss_start = current_rss()
    width, height = size
    bench = build_bench_codec(spec)
    image = bench.prepare(bench_image(width, height))
    rss_loaded = current_rss()
    resettable = reset_peak_rss()
    encode_timing, payloads = time_call(lambda: bench.encode(image), repeats, warmup)
    encode_peak = peak_rss()
    payload, size_bytes = payloads[-1]
    reset_peak_rss()
    decode_timing, _ = time_call(lambda: bench.decode(payload), repeats, warmup)
    decode_peak = peak_rss()
    return {
        "codec": bench.name, "label": bench.label, "size": size_name(size), "width": width,
        "height": height, "pixels": width * height, "repeats": repeats, "warmup": warmup, "bytes": size_bytes,
        "bpp": 8.0 * size_bytes / (width * height),
        "encode_s": encode_timing.median, "encode_times_s": encode_timing.times,
        "decode_s": decode_timing.median, "decode_times_s": decode_timing.times,
        "rss_start_MiB": mib(rss_start), "rss_loaded_MiB": mib(rss_loaded),
        "encode_peak_MiB": mib(encode_peak), "decode_peak_MiB": mib(decode_peak),
        "memory_method": ("VmHWM reset before each operation" if resettable
                          else "ru_maxrss since process start"),
    }


def fit_exponent(pixels: Sequence[float], seconds: Sequence[float]) -> float | None:
    """Least-squares slope of log(seconds) against log(pixels): 1 means time proportional to pixels.

    None with fewer than two distinct sizes or a non-positive time.
    """
    if len(set(pixels)) < 2 or min(seconds) <= 0:
        return None
    slope, _ = np.polyfit(np.log(np.asarray(pixels, float)), np.log(np.asarray(seconds, float)), 1)
    return float(slope)


def codec_section(settings: BenchSettings, codec, threads: int,
                  progress: Callable[[str], None]) -> dict[str, Any]:
    """Section ``codecs`` (+ ``peers``): one fresh process per (codec, size); exponents and ratios."""
    rows = []
    for size in settings.sizes:
        repeats, warmup = settings.runs(size)

        def measure(spec: dict[str, Any]) -> dict[str, Any]:
            name = spec.get("format", spec["kind"])
            progress(f"{name} {size_name(size)}: {warmup} warm-up + {repeats} run(s) of encode and decode")
            row = in_fresh_process(measure_codec, spec, size, repeats, warmup, threads, preload=PRELOAD)
            rows.append(row)
            return row

        ours = measure({"kind": "corrdiff", "model": settings.model, "sampler": settings.sampler})
        if settings.wants("peers"):
            for spec in peer_specs(codec, ours["bpp"]):
                measure(spec)
    exponents = {}
    for name in dict.fromkeys(row["codec"] for row in rows):
        mine = [row for row in rows if row["codec"] == name]
        exponents[name] = {op: fit_exponent([r["pixels"] for r in mine], [r[f"{op}_s"] for r in mine])
                           for op in ("encode", "decode")}
    return {"rows": rows, "exponents": exponents, "ratios": time_ratios(rows)}


def time_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours / peer for encode and decode time, per size and peer (>1: ours is slower)."""
    ours = {row["size"]: row for row in rows if row["codec"] == "corrdiff"}
    return [
        {"size": row["size"], "peer": row["codec"], "label": row["label"],
         "encode": ours[row["size"]]["encode_s"] / row["encode_s"],
         "decode": ours[row["size"]]["decode_s"] / row["decode_s"]}
        for row in rows if row["codec"] != "corrdiff" and row["size"] in ours
    ]
