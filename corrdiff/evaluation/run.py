""":func:`run_eval`: plan, code every image with every method, aggregate, write (the package's steps in order)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from corrdiff.errors import CorrDiffError
from corrdiff.evaluation.aggregate import Method, dataset_metrics, method_table, summarise
from corrdiff.evaluation.inference import Model, Scores, baseline_pool, curves, evaluate_image, load_models
from corrdiff.evaluation.plan import CORRDIFF_MODES, DEFAULT_QUALITIES, Plan, list_images, make_plan
from corrdiff.evaluation.timing import StageTimes
from corrdiff.evaluation.write import format_stage_table, format_table, save_reconstruction, write_csv, write_json
from corrdiff.image_io import OutputGuard, load_image


class EvaluationError(CorrDiffError):
    """No image could be evaluated."""


def run_eval(
    data_dir: str | Path,
    models: Sequence[Any] = ("default",),
    out: str | Path = "corrdiff-eval",
    modes: Sequence[str] | str = CORRDIFF_MODES,
    steps: int | None = None,
    seed: int = 0,
    sampler: Mapping[str, Any] | None = None,
    same_file: bool = False,
    baselines: Sequence[str] | str | None = None,
    qualities: Sequence[int] | str = DEFAULT_QUALITIES,
    matched: bool = True,
    metrics: Sequence[str] | str | None = None,
    weights_dir: str | Path | None = None,
    offline: bool = False,
    name: str = "CorrDiff",
    limit: int | None = None,
    save_images: bool = False,
    device: str = "cpu",
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
    rate_qualities: Sequence[float] | str | None = None,
    log=print,
    warn=None,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``models`` and the baselines on the images of ``data_dir``; write CSV + JSON to ``out``.

    Args:
        models: model files / packaged names, or :class:`~corrdiff.codec.CorrDiffCodec` objects. The
            fixed-rate ones are one RD point each of every CorrDiff method (``corrdiff-<mode>``); a
            variable-rate one is a curve of its own (``corrdiff-<label>-<mode>``), one point per quality.
        rate_qualities: the qualities of every variable-rate model (default: each one's default quality);
            ValueError when no model is variable-rate or a quality is outside a model's range.
        modes: CorrDiff decoding modes, each its own method (``corrdiff-<mode>.json``).
        sampler: ``{"name": ..., **recorded parameters}`` for every encode (default: each model's own;
            :meth:`corrdiff.codec.CorrDiffCodec.encode`).
        same_file: decode every mode from the ``corrected`` file (bpp of that file for all modes).
        baselines: classical codecs (default: every one Pillow can write); ``[]`` for none.
        qualities: fixed qualities of the baselines (one RD point each).
        matched: also run each baseline at the bpp of every CorrDiff point (per image).
        metrics: names from :data:`corrdiff.metric_names.ALL_METRICS` (default: all); ``bpp``
            and the timings are always recorded.
        weights_dir: folder with the pretrained weights of LPIPS, DISTS and FID/KID
            (:data:`corrdiff.metrics.WEIGHT_FILES`); files found neither there nor in torch hub's cache
            are downloaded (:func:`corrdiff.weights.find_weights`); metrics whose weights are
            unavailable are skipped.
        offline: never download weights (as the environment variable ``CORRDIFF_OFFLINE=1``).
        workers: threads that code the baselines (one per codec at most) while the CorrDiff files are
            decoded and scored (default: :func:`corrdiff.threads.default_threads`); 1 codes them in
            turn. The results do not depend on it.
        log, warn: where the tables (results, seconds per stage) and the summary line go (stdout), and
            where warnings go: unavailable metrics, failed images (stderr).

    Returns ``{method_key: summary JSON dict}``; ``index.json`` also holds the seconds per stage
    (``stage_seconds``, :class:`~corrdiff.evaluation.timing.StageTimes`).
    """
    from tqdm.auto import tqdm

    from corrdiff.codec import CorrDiffCodec
    from corrdiff.metrics import MetricSuite
    from corrdiff.model_io import model_path

    stages = StageTimes()
    plan = make_plan(modes, baselines, qualities, metrics, steps, seed, same_file, matched, limit, models, sampler,
                     workers, rate_qualities)
    data_dir = Path(data_dir)
    files = list_images(data_dir)[:limit]
    out = Path(out)
    if (out / "per_image.csv").exists() and not force:
        raise FileExistsError(f"{out} holds results already; pass --force to overwrite")
    # results are replaced (the --force check above is per folder), inputs never: images, model files
    guard = OutputGuard([*files, *(model_path(m) for m in models if not isinstance(m, CorrDiffCodec))], force=True)
    with stages.timed("setup"):
        loaded = load_models(models, device, plan)  # options checked against the models before out exists
        suite = MetricSuite(plan.metric_names, weights_dir=weights_dir, device=device, offline=offline)
    out.mkdir(parents=True, exist_ok=True)
    warn = warn or (lambda message: tqdm.write(message, file=sys.stderr))
    if suite.skipped_line():
        warn(f"corrdiff eval: {suite.skipped_line()}")
    methods = method_table(plan, name, curves(loaded))

    bar = tqdm(files, desc="corrdiff eval", unit="img", disable=not progress, dynamic_ncols=True)
    with baseline_pool(plan) as pool:
        ok_images, failed = _score_images(bar, data_dir, loaded, plan, suite, methods,
                                          out if save_images else None, guard, warn, stages, pool)
    bar.close()
    with stages.timed("metrics"):
        dataset_metrics(methods, suite, ok_images)

    metric_cols = suite.image_metrics
    settings = {
        "data_dir": str(data_dir), "images": ok_images, "steps": steps, "seed": seed, "sampler": plan.sampler,
        "same_file": same_file,
        "models": [{"label": m.label, "source": m.source, "fingerprint": m.codec.fingerprint().hex(),
                    "config_steps": m.codec.config.get("steps"), "quality": m.quality} for m in loaded],
        "metrics": suite.computed, "weights_dir": str(weights_dir) if weights_dir else None,
    }
    summaries: dict[str, dict[str, Any]] = {}
    with stages.timed("writing"):
        write_csv(guard.check(out / "per_image.csv"), methods, metric_cols, failed, suite.unavailable)
        for method in methods.values():
            summaries[method.key] = summarise(method, metric_cols, ok_images, failed, settings)
            write_json(guard, out / f"{method.key}.json", summaries[method.key])
    timing = stages.summary()
    write_json(guard, out / "index.json", {
        "methods": {k: f"{k}.json" for k in summaries}, "per_image": "per_image.csv",
        "num_images": len(ok_images), "num_failed": len(failed), "failed": failed,
        "unavailable": suite.unavailable, "settings": settings,
        "stage_seconds": timing, "baseline_workers": min(plan.workers, len(plan.baselines))})
    log(format_table(summaries))
    log(format_stage_table(timing))
    for key, summary in summaries.items():
        if any(summary.get("over_target", [])):
            warn(f"corrdiff eval: {key}: on {max(summary['over_target'])} of {len(ok_images)} image(s) even the "
                 "lowest quality exceeds the CorrDiff file's bpp (see over_target and the CSV's target_bpp)")
    log(f"corrdiff eval: {len(ok_images)} image(s) evaluated, {len(failed)} failed; wrote {out}/per_image.csv and "
        f"{len(summaries)} JSON file(s) ({', '.join(s + '.json' for s in summaries)})")
    if not ok_images:
        raise EvaluationError(f"all {len(failed)} image(s) failed (first: {next(iter(failed.items()))})")
    return summaries


def _score_images(bar, data_dir: Path, loaded: list[Model], plan: Plan, suite, methods: dict[str, Method],
                  save_to: Path | None, guard: OutputGuard, warn, stages: StageTimes,
                  pool) -> tuple[list[str], dict[str, str]]:
    """Every image of ``bar`` with every method: rows into ``methods``, features into the suite's FID.

    A failed image is reported and skipped for every method (all methods are scored on the same
    images). Returns the evaluated images' names and ``{image: reason}`` of the failed ones.
    """
    failed: dict[str, str] = {}
    ok_images: list[str] = []
    for path in bar:
        image_name = str(path.relative_to(data_dir)) if path.is_relative_to(data_dir) else path.name
        bar.set_postfix_str(image_name[-30:], refresh=False)
        try:
            rgb, _ = stages.run("reading", load_image, path)
            scores = Scores(suite, rgb, stages)
            staged = evaluate_image(rgb, image_name, loaded, plan, scores, stages, pool)
            features = []
            if suite.patch_fid is not None:
                features.append((None, scores.features(rgb)))
                for method, point, _, decoded in staged:
                    features.append((f"{method}|{point}", scores.features(decoded)))
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - reported, counted, and the image is skipped
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            failed[image_name] = reason
            warn(f"corrdiff eval: {image_name}: failed, skipped ({reason})")
            continue
        finally:
            suite.release()  # this image's reference features
        ok_images.append(image_name)
        for method, point, r, decoded in staged:
            methods[method].point(point).rows.append(r)
            if save_to is not None:
                with stages.timed("writing"):
                    save_reconstruction(guard, save_to, method, point, image_name, decoded)
        for key, feats in features:
            suite.patch_fid.add(key, feats)
    return ok_images, failed
