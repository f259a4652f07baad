"""``corrdiff bench``: speed, memory and efficiency figures of a model, side by side with its peers.

Sections (each can be skipped with ``--skip``; docs/benchmarks.md explains every figure):

``codecs``
    Encode and decode time (median over repeats) and peak memory of the model at several image
    sizes; bpp from the real file bytes; the log-log exponent of time against pixel count.
    Every (codec, size) runs in a fresh process (forked from a server that has only imported
    the libraries, multiprocessing ``forkserver``; ``spawn`` where that does not exist), which
    reports its RSS after loading the model and the input image, and its peak RSS during encoding
    and during decoding (``VmHWM``, reset before each operation through ``/proc/self/clear_refs``;
    where that is impossible, ``ru_maxrss`` since the process started).
``peers``
    The same for compressai's mean-scale hyperprior of the same widths (an *untrained* network:
    no pretrained weights are available offline), and for JPEG and WebP (Pillow) at about the
    bpp our model reaches on that size; ratios ours / peer of the times.
``breakdown``
    Where decoding time goes (score network, end-to-end decoder, conditioning network,
    hyper-synthesis, entropy decoding, the rest) at one size: forward hooks and method wrappers
    reading ``time.perf_counter``.
``flops``
    FLOPs of the networks during one decode (``torch.utils.flop_counter.FlopCounterMode``)
    divided by the time spent in them, against this machine's dense fp32 ``torch.mm`` FLOP/s
    at the same thread count.
``training``
    One optimisation step of phase 1 (ScoreTraining) and phase 2 (JointTraining) of the model's
    architecture at several batch sizes: compute_loss + aux loss, backward, gradient clipping,
    Adam step, EMA update (what Lightning's loop runs, without the loop).
``gamma``
    The two gamma solvers (closed form, gradient descent) on image-sized tensors: time and
    agreement of the transmitted (float16) gamma.

Every time comes from :func:`time_call` (CPU wall time, ``time.perf_counter``).
"""

from __future__ import annotations

import datetime
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from corrdiff import baselines
from corrdiff.errors import CorrDiffError
from corrdiff.image_io import load_image
from corrdiff.metrics import to_tensor

SECTIONS = ("codecs", "peers", "breakdown", "flops", "training", "gamma")
DEFAULT_SIZES = ((256, 256), (768, 512), (1920, 1080), (3840, 2160))  # (width, height)
DRIFT_WARNING = 0.15  # a reference FLOP/s changing by more than this during the run is reported
SMALL_PIXELS = 768 * 512  # up to this size: 3 repeats after 1 warm-up run; larger: 1 run, no warm-up
PRESET_PREFIX = "preset:"  # --model preset:NAME: an untrained network of a preset (timing only)
MIB = 2**20


class BenchmarkError(CorrDiffError):
    """A measurement could not be made (e.g. its process died); the message says what to change."""


# ---------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class BenchSettings:
    """What to measure. Sizes are (width, height).

    ``repeats`` (None: 3 up to 768x512 pixels, 1 above) applies to the codecs and the decode
    profile; warm-up runs (not counted) are 1 up to 768x512 and 0 above (seconds against minutes).
    """

    model: str = "default"
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    repeats: int | None = None
    threads: int | None = None
    skip: frozenset[str] = frozenset()
    profile_size: tuple[int, int] = (768, 512)
    train_batches: tuple[int, ...] = (2, 4, 8)
    train_crop: int = 128
    train_steps: int = 5
    gamma_repeats: int = 5
    matmul_size: int = 2048
    quick: bool = False

    def runs(self, size: tuple[int, int]) -> tuple[int, int]:
        """(repeats, warm-up runs) at ``size``."""
        small = size[0] * size[1] <= SMALL_PIXELS
        repeats = self.repeats or (1 if self.quick else 3 if small else 1)
        warmup = 0 if self.quick else 1 if small else 0
        return repeats, warmup

    @property
    def warmup(self) -> int:
        """Warm-up runs of the short measurements (training steps, gamma solvers)."""
        return 0 if self.quick else 1

    def wants(self, section: str) -> bool:
        return section not in self.skip


def quick_settings(**overrides: Any) -> BenchSettings:
    """Seconds instead of minutes (for tests): tiny untrained model, tiny sizes, one run of everything."""
    settings = BenchSettings(
        model="preset:tiny", sizes=((48, 32), (96, 64)), profile_size=(96, 64), train_batches=(1, 2),
        train_crop=32, train_steps=1, gamma_repeats=1, matmul_size=256, quick=True,
    )
    return replace(settings, **overrides)


def parse_size(text: str) -> tuple[int, int]:
    """``"768x512"`` -> (768, 512) (width x height)."""
    try:
        width, height = (int(v) for v in text.lower().strip().split("x"))
    except ValueError:
        raise ValueError(f"a size is WIDTHxHEIGHT, e.g. 768x512; got {text!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return width, height


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """Comma-separated sizes: ``"256x256,768x512"``."""
    sizes = tuple(parse_size(item) for item in text.split(",") if item.strip())
    if not sizes:
        raise ValueError("--sizes needs at least one WIDTHxHEIGHT")
    return sizes


def parse_skip(text: str | None) -> frozenset[str]:
    """Comma-separated section names to skip; unknown names are an error listing the known ones."""
    names = frozenset(s.strip() for s in (text or "").split(",") if s.strip())
    unknown = sorted(names - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) to skip: {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return names


# ---------------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Wall times of the counted runs of one measurement (warm-up runs excluded)."""

    times: list[float]
    warmup: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def to_json(self) -> dict[str, Any]:
        return {"median_s": self.median, "times_s": self.times, "warmup": self.warmup}


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 0) -> tuple[Timing, list[Any]]:
    """Run ``fn`` ``warmup`` times uncounted, then ``repeats`` times timed: (timing, timed runs' results).

    The one timing helper of this module: CPU wall time with ``time.perf_counter``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times, results = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        results.append(fn())
        times.append(time.perf_counter() - start)
    return Timing(times, warmup), results


class Meter:
    """Sums a reading (a clock, a FLOP counter) over the calls of named modules and methods.

    Modules are measured by forward pre/post hooks, methods by an instance attribute that wraps
    them; everything is removed on exit. A part called inside another is counted in both.
    """

    def __init__(self, reading: Callable[[], float] = time.perf_counter):
        self.reading = reading
        self.totals: dict[str, float] = {}
        self._undo: list[Callable[[], None]] = []

    def _add(self, name: str, amount: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + amount

    def module(self, name: str, module: torch.nn.Module) -> None:
        starts: list[float] = []
        pre = module.register_forward_pre_hook(lambda mod, args: starts.append(self.reading()))
        post = module.register_forward_hook(
            lambda mod, args, out: self._add(name, self.reading() - starts.pop()))
        self._undo += [pre.remove, post.remove]

    def method(self, name: str, owner: Any, attr: str) -> None:
        original = getattr(owner, attr)
        shadowed = attr in vars(owner)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            start = self.reading()
            try:
                return original(*args, **kwargs)
            finally:
                self._add(name, self.reading() - start)

        setattr(owner, attr, wrapped)
        self._undo.append(lambda: setattr(owner, attr, original) if shadowed else delattr(owner, attr))

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *exc: Any) -> None:
        while self._undo:
            self._undo.pop()()


# ---------------------------------------------------------------------------------------- memory
def _proc_status_bytes(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status in bytes (None off Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss() -> int | None:
    """Resident set size now, in bytes (VmRSS, else psutil, else None)."""
    rss = _proc_status_bytes("VmRSS")
    if rss is None:
        try:
            import psutil

            rss = psutil.Process().memory_info().rss
        except ImportError:
            pass
    return rss


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0: ``5`` into /proc/self/clear_refs).

    False where that is impossible (not Linux, no permission).
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """Peak RSS in bytes: VmHWM (resettable), else ``ru_maxrss`` since the process started."""
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


# ---------------------------------------------------------------------------------------- inputs
def demo_photo() -> np.ndarray:
    """The bundled photo (768x512), (H, W, 3) uint8."""
    from corrdiff.demo import demo_image_path

    return load_image(demo_image_path())


def bench_image(width: int, height: int, photo: np.ndarray | None = None) -> np.ndarray:
    """A ``width`` x ``height`` photo from the bundled one, (H, W, 3) uint8.

    Smaller than the photo in both directions: scaled down (Lanczos) to cover, centre-cropped.
    Otherwise: tiled with mirrored copies (``np.pad(mode="symmetric")``, no seams), cropped.
    """
    photo = demo_photo() if photo is None else photo
    ph, pw = photo.shape[:2]
    if width <= pw and height <= ph:
        scale = max(width / pw, height / ph)
        size = (max(width, round(pw * scale)), max(height, round(ph * scale)))
        scaled = np.asarray(Image.fromarray(photo).resize(size, Image.LANCZOS))
        top, left = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
        return np.ascontiguousarray(scaled[top : top + height, left : left + width])
    padded = np.pad(photo, ((0, max(0, height - ph)), (0, max(0, width - pw)), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(padded[:height, :width])


def training_batch(batch_size: int, crop: int, seed: int = 0,
                   photo: np.ndarray | None = None) -> torch.Tensor:
    """``batch_size`` random ``crop`` x ``crop`` crops of the bundled photo, in [-1, 1] (training's range)."""
    photo = demo_photo() if photo is None else photo
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    crops = []
    for _ in range(batch_size):
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        crops.append(to_tensor(photo[top : top + crop, left : left + crop]))
    return torch.cat(crops) * 2 - 1


# ---------------------------------------------------------------------------------------- codecs
def load_bench_model(spec: str):
    """A CorrDiff codec by ``--model``: model file, packaged name, or ``preset:NAME`` (untrained, seed 0)."""
    if spec.startswith(PRESET_PREFIX):
        from corrdiff.codec import CorrDiffCodec
        from corrdiff.presets import preset

        try:
            config = preset(spec[len(PRESET_PREFIX):])
        except KeyError as exc:
            raise BenchmarkError(f"--model {spec}: {exc.args[0]}") from None
        torch.manual_seed(0)
        codec = CorrDiffCodec(**config)
        codec.update(force=True)
        return codec.eval()
    from corrdiff.model_io import load_model

    return load_model(spec)


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

    def __init__(self, model: str):
        self.codec = load_bench_model(model)
        self.label = f"CorrDiff ({model})"

    def encode(self, image: torch.Tensor) -> tuple[bytes, int]:
        data = self.codec.encode(image).data
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
        return CorrDiffBench(spec["model"])
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
        "codec": bench.name, "label": bench.label, "size": f"{width}x{height}", "width": width,
        "height": height, "pixels": width * height, "repeats": repeats, "warmup": warmup, "bytes": size_bytes,
        "bpp": 8.0 * size_bytes / (width * height),
        "encode_s": encode_timing.median, "encode_times_s": encode_timing.times,
        "decode_s": decode_timing.median, "decode_times_s": decode_timing.times,
        "rss_start_MiB": _mib(rss_start), "rss_loaded_MiB": _mib(rss_loaded),
        "encode_peak_MiB": encode_peak / MIB, "decode_peak_MiB": decode_peak / MIB,
        "memory_method": ("VmHWM reset before each operation" if resettable
                          else "ru_maxrss since process start"),
    }


def _mib(value: int | None) -> float | None:
    return None if value is None else value / MIB


def _process_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` preloading the libraries (children start in ~0.1 s, fresh), else ``spawn``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, "corrdiff.model_io", "compressai.models"])
        return context
    return multiprocessing.get_context("spawn")


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a new process (picklable ``fn``, arguments, result); its exceptions re-raised here."""
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=_process_context()) as pool:
            return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        raise BenchmarkError(
            f"the measuring process died ({getattr(fn, '__name__', fn)}{args[:2]}); out of memory? "
            "Try smaller --sizes or skip that section"
        ) from None


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
            progress(f"{name} {size[0]}x{size[1]}: {warmup} warm-up + {repeats} run(s) of encode and decode")
            row = in_fresh_process(measure_codec, spec, size, repeats, warmup, threads)
            rows.append(row)
            return row

        ours = measure({"kind": "corrdiff", "model": settings.model})
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


# ---------------------------------------------------------------------------------------- decode profile
NETWORKS = ("score network", "end-to-end decoder D", "conditioning network C", "hyper-synthesis h_s")


def _networks(codec) -> dict[str, torch.nn.Module]:
    parts = (codec.score_net, codec.decoder, codec.conditioner, getattr(codec.prior, "h_s", None))
    modules = dict(zip(NETWORKS, parts))
    return {name: module for name, module in modules.items() if module is not None}


def profile_decode(codec, data: bytes, reading: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """One ``codec.decompress(data)``, with ``reading`` summed per network and per coding step.

    Keys: the networks (:data:`NETWORKS`), ``prior.decompress`` (entropy decoding, which runs the
    hyper-synthesis h_s) and ``fingerprint`` (the model check in ``read``).
    """
    with Meter(reading) as meter:
        for name, module in _networks(codec).items():
            meter.module(name, module)
        meter.method("prior.decompress", codec.prior, "decompress")
        meter.method("fingerprint", codec, "fingerprint")
        codec.decompress(data)
    return meter.totals


def decode_breakdown(codec, data: bytes, repeats: int, warmup: int) -> dict[str, Any]:
    """Section ``breakdown``: shares of decode time in the run whose total is the median (they sum to 1)."""
    timing, parts = time_call(lambda: profile_decode(codec, data), repeats, warmup)
    index = sorted(range(repeats), key=lambda i: timing.times[i])[(repeats - 1) // 2]
    total, part = timing.times[index], parts[index]
    hs = part.get("hyper-synthesis h_s", 0.0)
    seconds = {name: part.get(name, 0.0) for name in NETWORKS[:3]}
    seconds["hyper-synthesis h_s"] = hs
    seconds["entropy decoding (rANS, tables)"] = part.get("prior.decompress", 0.0) - hs
    seconds["model fingerprint check"] = part.get("fingerprint", 0.0)
    seconds["rest (sampler, correction, parsing)"] = total - sum(seconds.values())
    return {"total_s": total, "timing": timing.to_json(), "seconds": seconds,
            "share": {name: s / total for name, s in seconds.items()}}


def reference_flops(n: int, repeats: int = 5, warmup: int = 1) -> dict[str, Any]:
    """This machine's dense fp32 FLOP/s at the current thread count, as two references of 2 n^3 FLOPs.

    ``matmul``: ``torch.mm`` of two n x n matrices (BLAS). ``conv1x1``: the same product as a 1x1
    convolution of an n-channel (n/32) x 32 image (the convolution library the networks use; on
    some CPUs it outruns the BLAS). FLOP/s of the median run; n must be a multiple of 32.
    """
    if n < 32 or n % 32:
        raise ValueError(f"the reference size must be a multiple of 32, got {n}")
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=generator), torch.randn(n, n, generator=generator)
    image, weight = a.reshape(1, n, n // 32, 32), b.reshape(n, n, 1, 1)
    out: dict[str, Any] = {"n": n}
    for name, fn in (("matmul", lambda: torch.mm(a, b)), ("conv1x1", lambda: F.conv2d(image, weight))):
        timing, _ = time_call(fn, repeats, warmup)
        out[name] = {"flops": 2.0 * n**3 / timing.median, "timing": timing.to_json()}
    return out


def decode_flops(codec, data: bytes, breakdown: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Section ``flops``: FLOPs per network in one decode over its time (from ``breakdown``), and as a
    fraction of the ``reference`` FLOP/s (:func:`reference_flops`)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        counted = profile_decode(codec, data, reading=lambda: float(counter.get_total_flops()))
    rows = []
    for name in list(_networks(codec)) + ["networks"]:
        parts = list(_networks(codec)) if name == "networks" else [name]
        flop = sum(counted.get(n, 0.0) for n in parts)
        seconds = sum(breakdown["seconds"][n] for n in parts)
        achieved = flop / seconds if seconds > 0 else float("nan")
        rows.append({"part": name, "flop": flop, "seconds": seconds, "flops": achieved,
                     "of_matmul": achieved / reference["matmul"]["flops"],
                     "of_conv1x1": achieved / reference["conv1x1"]["flops"]})
    return {"rows": rows, "total_flop": float(counter.get_total_flops()), "reference": reference}


# ---------------------------------------------------------------------------------------- training
def training_step(module, optimiser: torch.optim.Optimizer, batch: torch.Tensor) -> Callable[[], float]:
    """One optimisation step as Lightning's loop runs it: loss + aux loss, backward, clipping, Adam, EMA."""

    def step() -> float:
        optimiser.zero_grad(set_to_none=True)
        loss, _ = module.compute_loss(batch)
        (loss + module.codec.aux_loss()).backward()
        module.configure_gradient_clipping(optimiser)
        optimiser.step()
        module.ema.update_parameters(module.codec.score_net)
        return float(loss.detach())

    return step


def training_section(codec_config: dict[str, Any], batch_sizes: Iterable[int], crop: int, steps: int,
                     warmup: int, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Section ``training``: step time and samples/s of both phases for the model's architecture."""
    from corrdiff.training import JointTraining, ScoreTraining

    photo, rows = demo_photo(), []
    phases = (("phase 1 (ScoreTraining)", ScoreTraining), ("phase 2 (JointTraining)", JointTraining))
    for phase, cls in phases:
        torch.manual_seed(0)
        module = cls(preset=None, codec=codec_config).train()
        optimiser = module.configure_optimizers()
        for batch_size in batch_sizes:
            progress(f"training {phase}, batch {batch_size}")
            batch = training_batch(batch_size, crop, photo=photo)
            timing, losses = time_call(training_step(module, optimiser, batch), steps, warmup)
            rows.append({"phase": phase, "batch": batch_size, "crop": crop, "step_s": timing.median,
                         "samples_per_s": batch_size / timing.median, "timing": timing.to_json(),
                         "loss_finite": all(math.isfinite(v) for v in losses)})
    return rows


# ---------------------------------------------------------------------------------------- gamma
def gamma_inputs(rgb: np.ndarray, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, x0_d, x0_e) in [-1, 1] like a sampling step's: x0_e a blurred x, x0_d a noisy x."""
    x = to_tensor(rgb) * 2 - 1
    x0_e = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x, (x + 0.3 * noise).clamp(-1, 1), x0_e


def gamma_section(size: tuple[int, int], repeats: int, warmup: int) -> dict[str, Any]:
    """Section ``gamma``: closed form vs gradient descent; times, ratio, and the transmitted gammas."""
    from corrdiff.correction import closed_form_gamma, gradient_gamma, quantize_gamma

    x, x0_d, x0_e = gamma_inputs(bench_image(*size))
    solvers = {"closed form": closed_form_gamma, "gradient (L-BFGS)": gradient_gamma}
    out: dict[str, Any] = {"size": f"{size[0]}x{size[1]}", "solvers": {}}
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


# ---------------------------------------------------------------------------------------- machine
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
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": threads,
        "torch_parallel": _parallel_summary(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "compressai": compressai.__version__, "pillow": PIL.__version__, "numpy": np.__version__,
        "corrdiff": corrdiff.__version__,
    }


# ---------------------------------------------------------------------------------------- tables
def _num(value: float | None, digits: int = 3) -> str:
    """Compact number: 3 significant digits, no exponent for ordinary magnitudes; n/a for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** digits:
        return f"{value:.0f}"
    if magnitude >= 1e-3:
        decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
        return f"{value:.{decimals}f}"
    return f"{value:.{digits - 1}e}"


def _is_numeric(cell: str) -> bool:
    head = cell.split(" ")[0].rstrip("%x")
    try:
        float(head)
        return True
    except ValueError:
        return head in ("n/a", "")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table with padded columns; numeric columns right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    right = [bool(cells) and all(_is_numeric(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda items: "| " + " | ".join(  # noqa: E731
        (s.rjust(w) if r else s.ljust(w)) for s, w, r in zip(items, widths, right)) + " |"
    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right)) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])


def format_machine(info: dict[str, Any], model: dict[str, Any]) -> str:
    load = info["load_average"]
    rows = [
        ["CPU", f"{info['cpu']} ({info['usable_cpus']} usable of {info['logical_cpus']} logical CPUs)"],
        ["memory", f"{_num(info['memory_GiB'])} GiB"],
        ["load average at start", "n/a" if load is None else " / ".join(f"{v:.2f}" for v in load)],
        ["torch threads", f"{info['torch_threads']} ({info['torch_parallel']})"],
        ["versions", f"python {info['python']}, torch {info['torch']}, compressai {info['compressai']}, "
                     f"Pillow {info['pillow']}, numpy {info['numpy']}, corrdiff {info['corrdiff']}"],
        ["platform", info["platform"]],
        ["model", f"{model['spec']}: fingerprint {model['fingerprint']}, "
                  f"{model['parameters'] / 1e6:.2f} M parameters"
                  + (" (untrained: times only)" if model["untrained"] else "")],
        ["date", info["date"]],
    ]
    return "## Machine\n\n" + markdown_table(["", "value"], rows)


def format_codecs(section: dict[str, Any]) -> str:
    rows = section["rows"]
    table = markdown_table(
        ["codec", "size", "MPix", "runs", "bpp", "encode s", "decode s", "RSS loaded MiB",
         "encode peak MiB (+)", "decode peak MiB (+)"],
        [[r["label"], r["size"], _num(r["pixels"] / 1e6),
          f"{r['repeats']}" + (f" (+{r['warmup']} warm-up)" if r["warmup"] else ""), _num(r["bpp"]),
          _num(r["encode_s"]), _num(r["decode_s"]), _num(r["rss_loaded_MiB"]),
          _peak(r, "encode"), _peak(r, "decode")] for r in rows],
    )
    methods = sorted({r["memory_method"] for r in rows})
    notes = [
        "Times: median of the runs (wall clock). Memory: resident set size (RSS) of a fresh process per row: "
        "'RSS loaded' after importing the libraries and loading the model and the input image; the peaks are "
        f"the process's peak RSS during encoding and during decoding ({'; '.join(methods)}), "
        "(+) the increment over 'RSS loaded'.",
        "bpp from the bytes: CorrDiff counts the whole .cdf file, MSH its entropy-coded strings (no header), "
        "JPEG/WebP the whole file. JPEG and WebP use the highest quality whose bpp does not exceed "
        "CorrDiff's at that size.",
    ]
    if any(r["codec"] == "msh" for r in rows):
        notes.append(
            "MSH = compressai's MeanScaleHyperprior with our model's widths (N = decoder channels, "
            "M = latent channels), UNTRAINED: no pretrained weights are available offline. Network time "
            "does not depend on the weights; entropy-coding time depends (slightly) on the rate, which "
            "for an untrained network is not a trained codec's (its bpp column)."
        )
    return "## Encode and decode\n\n" + table + "\n\n" + "\n".join(f"- {n}" for n in notes)


def _peak(row: dict[str, Any], op: str) -> str:
    peak, loaded = row[f"{op}_peak_MiB"], row["rss_loaded_MiB"]
    return _num(peak) + ("" if loaded is None else f" (+{_num(max(0.0, peak - loaded))})")


def format_exponents(section: dict[str, Any]) -> str:
    labels = {row["codec"]: row["label"].split(" q=")[0] for row in section["rows"]}
    table = markdown_table(
        ["codec", "encode exponent", "decode exponent"],
        [[labels[name], _num(e["encode"]), _num(e["decode"])] for name, e in section["exponents"].items()],
    )
    return ("## Time vs pixels\n\n" + table + "\n\nExponent: least-squares slope of log(time) against "
            "log(pixels) over the sizes; 1 = time proportional to the pixel count.")


def format_ratios(section: dict[str, Any]) -> str:
    table = markdown_table(
        ["size", "peer", "encode ours/peer", "decode ours/peer"],
        [[r["size"], r["label"], _num(r["encode"]) + "x", _num(r["decode"]) + "x"]
         for r in section["ratios"]],
    )
    return "## Ours / peer\n\n" + table + "\n\nRatio of median times; above 1: CorrDiff is slower."


def format_breakdown(breakdown: dict[str, Any], size: str) -> str:
    table = markdown_table(
        ["part", "seconds", "share"],
        [[name, _num(s), f"{100 * breakdown['share'][name]:.1f}%"]
         for name, s in breakdown["seconds"].items()]
        + [["total", _num(breakdown["total_s"]), "100.0%"]],
    )
    runs = len(breakdown["timing"]["times_s"])
    return (f"## Decode time breakdown ({size})\n\n" + table + "\n\nThe decode whose total is the median of "
            f"{runs} run(s); forward hooks and method wrappers read time.perf_counter. "
            "Entropy decoding is compressai's rANS with its index/means set-up, excluding h_s.")


def format_flops(flops: dict[str, Any], size: str) -> str:
    ref = flops["reference"]
    n, runs = ref["n"], len(ref["matmul"]["timing"]["times_s"])
    table = markdown_table(
        ["part", "GFLOP", "seconds", "GFLOP/s", "of matmul", "of 1x1 conv"],
        [[r["part"], _num(r["flop"] / 1e9), _num(r["seconds"]), _num(r["flops"] / 1e9),
          f"{100 * r['of_matmul']:.1f}%", f"{100 * r['of_conv1x1']:.1f}%"] for r in flops["rows"]],
    )
    return (f"## Achieved FLOP/s of decoding ({size})\n\n" + table + "\n\n"
            f"References, fp32, same thread count, median of {runs}: torch.mm {n}x{n} @ {n}x{n} "
            f"{_num(ref['matmul']['flops'] / 1e9)} GFLOP/s; the same product as a 1x1 convolution "
            f"{_num(ref['conv1x1']['flops'] / 1e9)} GFLOP/s. FLOPs from torch.utils.flop_counter over one "
            "decode (convolutions and matrix products; h_s runs in float64); times from the breakdown above.")


def format_speed(start: dict[str, Any], end: dict[str, Any], judge: bool = True) -> str:
    """The reference FLOP/s at the start and the end of the run, and (``judge``) a warning if they drifted."""
    rows = [[when, _num(ref["matmul"]["flops"] / 1e9), _num(ref["conv1x1"]["flops"] / 1e9)]
            for when, ref in (("start", start), ("end", end))]
    table = markdown_table(["when", "torch.mm GFLOP/s", "1x1 conv GFLOP/s"], rows)
    drift = speed_drift(start, end)
    verdict = (f"WARNING: the machine's speed changed by up to {100 * drift:.0f}% during the run "
               "(other load?); the times above are not comparable with each other to better than that."
               if drift > DRIFT_WARNING else f"Stable within {100 * drift:.0f}%.")
    if not judge:
        verdict = "Quick mode: products this small say nothing about the machine's speed."
    return f"## Machine speed during the run\n\n{table}\n\n{verdict}"


def speed_drift(start: dict[str, Any], end: dict[str, Any]) -> float:
    """Largest relative change of the reference FLOP/s between two :func:`reference_flops` results."""
    return max(abs(end[k]["flops"] / start[k]["flops"] - 1) for k in ("matmul", "conv1x1"))


def format_training(rows: list[dict[str, Any]]) -> str:
    table = markdown_table(
        ["phase", "batch", "crop", "step s", "samples/s"],
        [[r["phase"], r["batch"], f"{r['crop']}x{r['crop']}", _num(r["step_s"]), _num(r["samples_per_s"])]
         for r in rows],
    )
    steps = rows[0]["timing"] if rows else {"times_s": [], "warmup": 0}
    return ("## Training step\n\n" + table + "\n\nOne step = compute_loss + aux loss, backward, gradient "
            f"clipping, Adam step, EMA update; median of {len(steps['times_s'])} step(s) after "
            f"{steps['warmup']} warm-up step(s); the model's architecture, fp32.")


def format_gamma(gamma: dict[str, Any]) -> str:
    table = markdown_table(
        ["solver", "median s", "gamma", "gamma sent (fp16)"],
        [[name, _num(s["median_s"]), f"{s['gamma']:.6f}", f"{s['gamma_fp16']:.6f}"]
         for name, s in gamma["solvers"].items()],
    )
    agree = "agree" if gamma["agree_fp16"] else "DIFFER"
    return (f"## Gamma solver ({gamma['size']})\n\n" + table + "\n\n"
            f"Gradient / closed form time: {_num(gamma['ratio_gradient_over_closed'])}x. Transmitted gammas "
            f"{agree} ({_num(gamma['fp16_ulps_apart'])} float16 ulps apart). Inputs: x0_e a blurred photo, "
            "x0_d a noisy one.")


# ---------------------------------------------------------------------------------------- driver
def model_summary(spec: str, codec) -> dict[str, Any]:
    return {"spec": spec, "fingerprint": codec.fingerprint().hex(), "config": codec.config,
            "parameters": sum(p.numel() for p in codec.parameters()),
            "untrained": spec.startswith(PRESET_PREFIX)}


def speed_check(settings: BenchSettings) -> dict[str, Any]:
    """The dense FLOP/s references, measured at the start and the end of a run (a changing machine shows)."""
    return reference_flops(settings.matmul_size, repeats=3)


def check_settings(settings: BenchSettings, codec) -> None:
    """Refuse, before any work, sizes the decoder would refuse (BenchmarkError)."""
    limit = codec.max_decode_pixels
    for width, height in settings.sizes + (settings.profile_size,):
        if width * height > limit:
            raise BenchmarkError(f"{width}x{height} exceeds the decoder's limit of {limit} pixels "
                             "(raise $CORRDIFF_MAX_DECODE_PIXELS to allow it)")


def run_benchmark(settings: BenchSettings, emit: Callable[[str], None] = print,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the sections ``settings`` asks for, each table to ``emit`` as soon as it is ready; all figures."""
    progress = progress or (lambda text: print(f"bench: {text}", file=sys.stderr, flush=True))
    threads_before = torch.get_num_threads()
    threads = settings.threads or threads_before
    torch.set_num_threads(threads)
    try:
        codec = load_bench_model(settings.model)
        check_settings(settings, codec)
        results: dict[str, Any] = {
            "machine": machine_info(threads), "model": model_summary(settings.model, codec),
            "settings": {"sizes": [f"{w}x{h}" for w, h in settings.sizes], "repeats": settings.repeats,
                         "skip": sorted(settings.skip), "quick": settings.quick,
                         "profile_size": "{}x{}".format(*settings.profile_size)},
        }
        emit("# corrdiff bench\n\n" + format_machine(results["machine"], results["model"]) + "\n")
        speed_start = speed_check(settings)
        if settings.wants("codecs"):
            section = codec_section(settings, codec, threads, progress)
            results["codecs"] = section
            emit(format_codecs(section) + "\n\n" + format_exponents(section) + "\n")
            if section["ratios"]:
                emit(format_ratios(section) + "\n")
        profile_size = "{}x{}".format(*settings.profile_size)
        if settings.wants("breakdown") or settings.wants("flops"):
            progress(f"decode profile at {profile_size}")
            data = codec.encode(to_tensor(bench_image(*settings.profile_size))).data
            repeats, warmup = settings.runs(settings.profile_size)
            breakdown = decode_breakdown(codec, data, repeats, warmup)
            results["breakdown"] = {"size": profile_size, **breakdown}
            if settings.wants("breakdown"):
                emit(format_breakdown(breakdown, profile_size) + "\n")
            if settings.wants("flops"):
                progress("FLOP count and dense matmul / 1x1 convolution references")
                reference = reference_flops(settings.matmul_size)
                results["flops"] = {"size": profile_size, **decode_flops(codec, data, breakdown, reference)}
                emit(format_flops(results["flops"], profile_size) + "\n")
        if settings.wants("training"):
            results["training"] = training_section(codec.config, settings.train_batches, settings.train_crop,
                                                   settings.train_steps, settings.warmup, progress)
            emit(format_training(results["training"]) + "\n")
        if settings.wants("gamma"):
            progress(f"gamma solvers at {profile_size}")
            results["gamma"] = gamma_section(settings.profile_size, settings.gamma_repeats, settings.warmup)
            emit(format_gamma(results["gamma"]) + "\n")
        results["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        speed_end = speed_check(settings)
        drift = speed_drift(speed_start, speed_end)
        results["machine"]["speed"] = {"start": speed_start, "end": speed_end, "drift": drift}
        emit(format_speed(speed_start, speed_end, judge=not settings.quick) + "\n")
        return results
    finally:
        torch.set_num_threads(threads_before)


__all__ = [
    "BenchSettings", "BenchmarkError", "Meter", "Timing", "bench_image", "fit_exponent", "markdown_table",
    "parse_sizes", "parse_skip", "quick_settings", "run_benchmark", "time_call",
]
