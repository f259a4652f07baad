"""The ``corrdiff bench`` driver: runs the sections the settings ask for, prints each table as soon as
it is ready and returns every figure as plain data."""

from __future__ import annotations

import sys
from typing import Any, Callable

import torch

from corrdiff.bench import report
from corrdiff.bench.codecs import codec_section
from corrdiff.bench.gamma import gamma_section
from corrdiff.bench.inputs import bench_image, load_bench_model, model_summary
from corrdiff.bench.machine import load_average, machine_info
from corrdiff.bench.measure import reference_flops, speed_drift
from corrdiff.bench.profile import decode_breakdown, decode_flops
from corrdiff.bench.settings import BenchmarkError, BenchSettings, size_name
from corrdiff.image_io import to_tensor
from corrdiff.sampling import sampler_for_encoding
from corrdiff.threads import default_threads

SPEED_CHECK_REPEATS = 3  # runs of each dense reference at the start and at the end of a run


def check_settings(settings: BenchSettings, codec) -> None:
    """Refuse, before any work, sizes the decoder would refuse and a sampler the codec cannot encode with
    (BenchmarkError; an unknown sampler name: the registry's error listing the registered ones)."""
    if settings.sampler is not None:
        try:
            sampler_for_encoding(settings.sampler, codec.schedule, None)
        except (ValueError, TypeError) as exc:
            raise BenchmarkError(f"--sampler: {exc}") from None
    limit = codec.max_decode_pixels
    for width, height in settings.sizes + (settings.profile_size,):
        if width * height > limit:
            raise BenchmarkError(f"{width}x{height} exceeds the decoder's limit of {limit} pixels "
                                 "(raise $CORRDIFF_MAX_DECODE_PIXELS to allow it)")


def _settings_summary(settings: BenchSettings) -> dict[str, Any]:
    return {"sizes": [size_name(size) for size in settings.sizes], "repeats": settings.repeats,
            "skip": sorted(settings.skip), "quick": settings.quick, "sampler": settings.sampler,
            "profile_size": size_name(settings.profile_size)}


def _decode_sections(settings: BenchSettings, codec, emit: Callable[[str], None],
                     progress: Callable[[str], None]) -> dict[str, Any]:
    """Sections ``breakdown`` and ``flops`` (which needs the breakdown's times) on one encoded image."""
    size = size_name(settings.profile_size)
    progress(f"decode profile at {size}")
    data = codec.encode(to_tensor(bench_image(*settings.profile_size)), sampler=settings.sampler).data
    breakdown = decode_breakdown(codec, data, *settings.runs(settings.profile_size))
    results: dict[str, Any] = {"breakdown": {"size": size, **breakdown}}
    if settings.wants("breakdown"):
        emit(report.format_breakdown(breakdown, size) + "\n")
    if settings.wants("flops"):
        progress("FLOP count and dense matmul / 1x1 convolution references")
        reference = reference_flops(settings.matmul_size)
        results["flops"] = {"size": size, **decode_flops(codec, data, breakdown, reference)}
        emit(report.format_flops(results["flops"], size) + "\n")
    return results


def run_benchmark(settings: BenchSettings, emit: Callable[[str], None] = print,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the sections ``settings`` asks for, each table to ``emit`` as soon as it is ready; all figures."""
    progress = progress or (lambda text: print(f"bench: {text}", file=sys.stderr, flush=True))
    threads_before = torch.get_num_threads()
    threads = settings.threads or default_threads()
    torch.set_num_threads(threads)
    try:
        codec = load_bench_model(settings.model)
        check_settings(settings, codec)
        results: dict[str, Any] = {"machine": machine_info(threads), "model": model_summary(settings.model, codec),
                                   "settings": _settings_summary(settings)}
        emit("# corrdiff bench\n\n" + report.format_machine(results["machine"], results["model"]) + "\n")
        speed_start = reference_flops(settings.matmul_size, repeats=SPEED_CHECK_REPEATS)
        if settings.wants("codecs"):
            section = codec_section(settings, codec, threads, progress)
            results["codecs"] = section
            emit(report.format_codecs(section) + "\n\n" + report.format_exponents(section) + "\n")
            if section["ratios"]:
                emit(report.format_ratios(section) + "\n")
        if settings.wants("breakdown") or settings.wants("flops"):
            results.update(_decode_sections(settings, codec, emit, progress))
        if settings.wants("training"):
            from corrdiff.bench.training import training_section  # Lightning: only when this section runs

            results["training"] = training_section(codec.config, settings.train_batches, settings.train_crop,
                                                   settings.train_steps, settings.warmup, progress)
            emit(report.format_training(results["training"]) + "\n")
        if settings.wants("gamma"):
            progress(f"gamma solvers at {size_name(settings.profile_size)}")
            results["gamma"] = gamma_section(settings.profile_size, settings.gamma_repeats, settings.warmup)
            emit(report.format_gamma(results["gamma"]) + "\n")
        results["machine"]["load_average_end"] = load_average()
        speed_end = reference_flops(settings.matmul_size, repeats=SPEED_CHECK_REPEATS)
        results["machine"]["speed"] = {"start": speed_start, "end": speed_end,
                                       "drift": speed_drift(speed_start, speed_end)}
        emit(report.format_speed(speed_start, speed_end, judge=not settings.quick) + "\n")
        return results
    finally:
        torch.set_num_threads(threads_before)
