"""The commands that measure the codec and report: ``corrdiff eval`` (models and classical baselines over
a folder of images), ``corrdiff plot`` (RD curves and BD-rates of result files) and ``corrdiff bench``
(time and memory); each turns its options into its library call, a rejected value into :class:`UsageError`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from corrdiff.cli.errors import UsageError
from corrdiff.threads import default_threads


def eval_command(args: argparse.Namespace) -> None:
    from corrdiff.cli.batch import torch_threads
    from corrdiff.evaluation import run_eval

    try:
        with torch_threads(args.threads or default_threads()):
            run_eval(
                args.data_dir, models=args.model or ["default"], out=args.out, modes=args.modes,
                steps=args.steps, seed=args.seed, sampler=args.sampler, same_file=args.same_file,
                baselines=args.baselines, qualities=args.qualities, matched=not args.no_matched,
                metrics=args.metrics, weights_dir=args.weights_dir, offline=args.offline, name=args.name,
                limit=args.limit, save_images=args.save_images, device=args.device, force=args.force,
                progress=not args.no_progress, rate_qualities=args.quality, workers=args.threads,
            )
    except ValueError as exc:  # option values rejected before any work
        raise UsageError(str(exc)) from None


def plot_command(args: argparse.Namespace) -> None:
    from corrdiff.plotting import (bd_rate_table, expand_paths, load_results, metrics_in, plot_rd,
                                   single_point_methods, single_point_note)

    metrics = [m.strip() for item in (args.metric or []) for m in item.split(",") if m.strip()] or None
    try:
        files = [load_results(path) for path in expand_paths(args.results)]
        if args.bd_rate:
            print(bd_rate_table(files, metrics))
        if args.output or not args.bd_rate:
            output = plot_rd(files, args.output or Path("rd.png"), metrics, title=args.title,
                             full_range=args.full_range)
            print(f"wrote {output}")
            single = single_point_methods(files, metrics or metrics_in(files))
            if single:
                print(f"note: {single_point_note(single)}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def bench_command(args: argparse.Namespace) -> None:
    from corrdiff.bench import (BenchSettings, parse_size, parse_sizes, parse_skip, quick_settings,
                                run_benchmark)
    from corrdiff.files import atomic_write
    from corrdiff.image_io import check_output

    if args.json is not None:  # refuse before minutes of work, not after
        check_output(args.json, [], args.force)
    try:
        options = {"skip": parse_skip(args.skip)}
        if args.model is not None:
            options["model"] = args.model
        if args.sizes is not None:
            options["sizes"] = parse_sizes(args.sizes)
        if args.profile_size is not None:
            options["profile_size"] = parse_size(args.profile_size)
        if args.sampler is not None:
            options["sampler"] = args.sampler
        for name in ("repeats", "threads"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
            if value is not None:
                options[name] = value
        settings = quick_settings(**options) if args.quick else BenchSettings(**options)
    except ValueError as exc:  # option values rejected before any work (sizes, sections, counts)
        raise UsageError(str(exc)) from None
    results = run_benchmark(settings, emit=lambda text: print(text, flush=True))  # BenchmarkError: exit 2
    if args.json is not None:
        atomic_write(args.json, json.dumps(results, indent=2).encode(), overwrite=args.force)
        print(f"wrote {args.json}")
