"""``corrdiff eval``: real-bitstream evaluation of CorrDiff models and classical baselines.

For every image of a folder (docs/evaluation.md has the protocol)::

    image --encode(mode)--> bytes --decompress--> 8-bit reconstruction --metrics--> one CSV row
                                    bpp = 8 * len(bytes) / (H * W), header included

* One file per mode (default): ``corrected``, ``diffusion`` and ``e2e`` are each encoded
  with their own ``mode``, so each mode's bpp is the size of the file that mode needs
  (``diffusion`` and ``e2e`` carry no gammas: 16 bits a step less than ``corrected``).
  With ``same_file=True`` the image is encoded once (``corrected``) and decoded in every
  mode from that file (``decompress(data, mode=...)``): the ablation at identical rate.
* Baselines (Pillow): JPEG, WebP, and AVIF where Pillow writes it, at fixed qualities,
  and "bpp-matched": per image, the highest quality whose file is no larger than the
  CorrDiff file of the same image (one matched point per model, i.e. per rate point, matching
  its ``corrected`` file when that mode is evaluated, else the first mode's).
* Outputs in ``out``: ``per_image.csv`` (one row per method, RD point and image), one JSON
  per method in CompressAI's ``eval_model`` schema ``{"name", "description", "results":
  {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...], ...}}`` (one list entry per RD
  point: mean over images; one point per model or quality), so that
  ``python -m compressai.utils.plot -f OURS.json -m psnr-rgb`` reads them; plus
  ``index.json`` listing the method files.
* A failed image is reported, skipped for every method (so all methods are scored on the
  same images) and counted in each JSON (``num_failed``, ``failed``).
* Metrics whose pretrained weights are missing are skipped, named in one line on stderr, and
  listed in ``unavailable`` with the reason (see :class:`corrdiff.metrics.MetricSuite`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from corrdiff import baselines as classical
from corrdiff.errors import CorrDiffError
from corrdiff.image_io import OutputGuard, atomic_write, encode_png, load_image
from corrdiff.metric_names import ALL_METRICS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
DEFAULT_QUALITIES = (5, 10, 20, 30, 50, 75, 90)
CORRDIFF_MODES = ("corrected", "diffusion", "e2e")
BASELINE_NAMES = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}
#: CSV columns before the metrics, and after them
CSV_HEAD = ("method", "point", "image", "width", "height", "bytes", "bpp")
CSV_TAIL = ("encoding_time", "decoding_time", "quality", "target_bpp", "decode_mismatch", "status")


class EvaluationError(CorrDiffError):
    """No image could be evaluated."""


def list_images(data_dir: str | Path) -> list[Path]:
    """Image files under ``data_dir`` (recursively), sorted by path."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


@dataclass
class _Model:
    label: str
    codec: Any
    source: str


@dataclass
class _Point:
    """One RD point of one method: its rows (one per image) and bookkeeping."""

    label: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    dataset: dict[str, float] = field(default_factory=dict)


@dataclass
class _Method:
    key: str
    name: str
    description: str
    points: dict[str, _Point] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def point(self, label: str) -> _Point:
        return self.points.setdefault(label, _Point(label))


def _nanmean(values: Iterable[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    finite = [v for v in nums if math.isfinite(v)]
    if finite:
        return float(np.mean(finite))
    return None  # strict JSON has no NaN/Infinity; an all-NaN or infinite mean is written as null


def _model_label(source: Any, index: int, count: int) -> str:
    if isinstance(source, (str, Path)):
        return Path(str(source)).stem if Path(str(source)).suffix else str(source)
    return f"model{index}" if count > 1 else "model"


def _parse_list(value: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    if value is None:
        return list(default)
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip() for s in items if s and s.strip()]


@dataclass
class _Plan:
    """The checked options of one evaluation: what is encoded, decoded, matched and scored."""

    modes: list[str]
    baselines: list[str]
    qualities: list[int]
    metric_names: list[str] | None
    steps: int | None
    seed: int
    same_file: bool
    matched: bool

    @property
    def matched_mode(self) -> str:
        """The mode whose file the bpp-matched baselines match (one file per model, i.e. per rate point)."""
        return "corrected" if "corrected" in self.modes else self.modes[0]


def _plan(modes, baselines, qualities, metrics, steps, seed, same_file, matched, limit, models) -> _Plan:
    """Parse and check run_eval's options (ValueError naming the bad one), before any work."""
    modes = _parse_list(modes, CORRDIFF_MODES)
    bad = [m for m in modes if m not in CORRDIFF_MODES]
    if bad or not modes:
        raise ValueError(f"modes must be a non-empty subset of {', '.join(CORRDIFF_MODES)}, got {modes}")
    available = classical.available_formats()
    baselines = _parse_list(baselines, available)
    if baselines == ["none"]:
        baselines = []
    bad = [b for b in baselines if b not in available]
    if bad:
        raise ValueError(f"baseline(s) {bad} not available here; this Pillow writes: {', '.join(available)}")
    qualities = [int(q) for q in _parse_list([str(q) for q in qualities] if not isinstance(qualities, str)
                                             else qualities, [])]
    if any(not 1 <= q <= 100 for q in qualities):
        raise ValueError(f"qualities must lie in 1..100, got {qualities}")
    metric_names = _parse_list(metrics, []) if metrics not in (None, "all") else None
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if not models:
        raise ValueError("give at least one model")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must lie in [0, 2^32), got {seed}")
    return _Plan(modes, baselines, qualities, metric_names, steps, seed, same_file, matched)


def _load_models(models: Sequence[Any], device: str, plan: _Plan) -> list[_Model]:
    """Each model once, labelled by its file's stem (made unique); option values checked against it."""
    from corrdiff.codec import CorrDiffCodec
    from corrdiff.model_io import load_model

    loaded: list[_Model] = []
    for i, source in enumerate(models):
        codec = source if isinstance(source, CorrDiffCodec) else load_model(source, map_location=device)
        origin = "in-memory codec" if isinstance(source, CorrDiffCodec) else str(source)
        loaded.append(_Model(_model_label(source, i, len(models)), codec, origin))
    for m in loaded:
        # reject bad option values before any work, not once per image
        if plan.steps is not None and (plan.same_file or plan.modes != ["e2e"]):
            try:
                m.codec.make_sampler().set_timesteps(plan.steps)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"--steps {plan.steps}: {exc}") from None
    labels = [m.label for m in loaded]
    if len(set(labels)) != len(labels):  # two files with the same stem
        for i, m in enumerate(loaded):
            m.label = f"{m.label}#{i}"
    return loaded


def _method_table(plan: _Plan, name: str, warning: str) -> dict[str, _Method]:
    """One :class:`_Method` per CorrDiff mode, per baseline at fixed qualities and per bpp-matched baseline."""
    matched_file = "corrected" if plan.same_file else plan.matched_mode
    steps_text = "" if plan.steps is None else f", {plan.steps} steps"
    methods: dict[str, _Method] = {}
    for mode in plan.modes:
        source = "decoded from the 'corrected' file" if plan.same_file else f"own '{mode}' file"
        methods[f"corrdiff-{mode}"] = _Method(
            f"corrdiff-{mode}", f"{name} ({mode})",
            f"{warning}corrdiff eval: mode {mode} ({source}){steps_text}, seed {plan.seed}; real bitstreams, "
            "bpp = 8 * file bytes / pixels; metrics on 8-bit images; one point per model")
    for fmt in plan.baselines:
        label = BASELINE_NAMES[fmt]
        if plan.qualities:
            methods[fmt] = _Method(fmt, label, f"{warning}Pillow {label} at fixed qualities {plan.qualities} "
                                   "(one point per quality); bpp from the whole file")
        if plan.matched:
            methods[f"{fmt}-matched"] = _Method(
                f"{fmt}-matched", f"{label} (bpp-matched)",
                f"{warning}Pillow {label}, per image the highest quality whose bpp does not exceed the "
                f"{name} '{matched_file}' file's; one point per {name} model (rate point)")
    return methods


Staged = list[tuple[str, str, dict[str, Any], np.ndarray]]  # (method, point, CSV row, decoded image)


def _evaluate_image(rgb: np.ndarray, image_name: str, loaded: list[_Model], plan: _Plan, suite) -> Staged:
    """Every method's rows for one image: each model in each mode (real files), then the baselines."""
    from corrdiff.metrics import to_tensor, to_uint8

    h, w = rgb.shape[:2]
    pixels = h * w
    x = to_tensor(rgb)
    staged: Staged = []

    def row(method: str, point: str, data_len: int, decoded: np.ndarray, **extra: Any) -> None:
        r = {"method": method, "point": point, "image": image_name, "width": w, "height": h,
             "bytes": data_len, "bpp": 8.0 * data_len / pixels, **suite.score(rgb, decoded), **extra,
             "status": "ok"}
        staged.append((method, point, r, decoded))

    targets: list[tuple[str, float]] = []  # (model label, bpp of its file that the baselines match)
    for model in loaded:
        codec = model.codec
        shared = None
        if plan.same_file:
            start = time.perf_counter()
            shared = codec.encode(x, steps=plan.steps, seed=plan.seed, mode="corrected")
            shared_time = time.perf_counter() - start
        for mode in plan.modes:
            if plan.same_file:
                result, enc_time = shared, (shared_time if mode == "corrected" else None)
            else:
                start = time.perf_counter()
                result = codec.encode(x, steps=plan.steps, seed=plan.seed, mode=mode)
                enc_time = time.perf_counter() - start
            start = time.perf_counter()
            decoded = to_uint8(codec.decompress(result.data, mode=mode))
            dec_time = time.perf_counter() - start
            mismatch = None
            if not plan.same_file or mode == "corrected":
                # the decoder must reproduce the encoder's own reconstruction
                mismatch = int(np.abs(to_uint8(result.reconstruction).astype(int) - decoded).max())
            row(f"corrdiff-{mode}", model.label, len(result.data), decoded, encoding_time=enc_time,
                decoding_time=dec_time, decode_mismatch=mismatch)
            if mode == plan.matched_mode:  # with same_file, every mode's file is the 'corrected' one
                targets.append((model.label, 8.0 * len(result.data) / pixels))
    for fmt in plan.baselines:
        for q in plan.qualities:
            start = time.perf_counter()
            res = classical.encode(rgb, fmt, q)
            row(fmt, f"q{q}", len(res.data), res.decoded, quality=q, encoding_time=time.perf_counter() - start)
        if plan.matched:
            for label, target in targets:
                res = classical.encode_at_bpp(rgb, fmt, target)
                row(f"{fmt}-matched", label, len(res.data), res.decoded, quality=res.quality, target_bpp=target)
    return staged


def _dataset_metrics(methods: dict[str, _Method], suite, ok_images: list[str]) -> None:
    """Patch FID/KID of every RD point, from the features gathered image by image."""
    for method in methods.values():
        method.unavailable.update(suite.unavailable)
        if suite.patch_fid is None or not ok_images:
            continue
        for point in method.points.values():
            try:
                values = suite.patch_fid.compute(f"{method.key}|{point.label}")
            except CorrDiffError as exc:
                for m in ("fid", "kid"):
                    if m in suite.names:
                        method.unavailable[m] = str(exc)
                break
            point.dataset = {k: v for k, v in values.items()
                             if k in suite.names or (k == "kid-std" and "kid" in suite.names)
                             or (k == "fid-patches")}


def run_eval(
    data_dir: str | Path,
    models: Sequence[Any] = ("default",),
    out: str | Path = "corrdiff-eval",
    modes: Sequence[str] | str = CORRDIFF_MODES,
    steps: int | None = None,
    seed: int = 0,
    same_file: bool = False,
    baselines: Sequence[str] | str | None = None,
    qualities: Sequence[int] | str = DEFAULT_QUALITIES,
    matched: bool = True,
    metrics: Sequence[str] | str | None = None,
    weights_dir: str | Path | None = None,
    name: str = "CorrDiff",
    limit: int | None = None,
    save_images: bool = False,
    device: str = "cpu",
    force: bool = False,
    progress: bool = True,
    random_weights_for_tests: bool = False,
    log=print,
    warn=None,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``models`` and the baselines on the images of ``data_dir``; write CSV + JSON to ``out``.

    Args:
        models: model files / packaged names, or :class:`~corrdiff.codec.CorrDiffCodec` objects;
            each is one RD point of every CorrDiff method.
        modes: CorrDiff decoding modes, each its own method (``corrdiff-<mode>.json``).
        same_file: decode every mode from the ``corrected`` file (bpp of that file for all modes).
        baselines: classical codecs (default: every one Pillow can write); ``[]`` for none.
        qualities: fixed qualities of the baselines (one RD point each).
        matched: also run each baseline at the bpp of every CorrDiff point (per image).
        metrics: names from :data:`corrdiff.metrics.ALL_METRICS` (default: all); ``bpp``
            and the timings are always recorded.
        random_weights_for_tests: TEST ONLY, see :class:`~corrdiff.metrics.MetricSuite`.
        log, warn: where the table and the summary line go (stdout), and where warnings go:
            unavailable metrics, failed images (stderr).

    Returns ``{method_key: summary JSON dict}``.
    """
    from tqdm.auto import tqdm

    from corrdiff.codec import CorrDiffCodec
    from corrdiff.metrics import MetricSuite
    from corrdiff.model_io import model_path

    plan = _plan(modes, baselines, qualities, metrics, steps, seed, same_file, matched, limit, models)
    data_dir = Path(data_dir)
    files = list_images(data_dir)[:limit]
    out = Path(out)
    if (out / "per_image.csv").exists() and not force:
        raise FileExistsError(f"{out} holds results already; pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    # results are replaced (the --force check above is per folder), inputs never: images, model files
    guard = OutputGuard([*files, *(model_path(m) for m in models if not isinstance(m, CorrDiffCodec))], force=True)
    loaded = _load_models(models, device, plan)

    suite = MetricSuite(plan.metric_names, weights_dir=weights_dir, device=device,
                        random_weights_for_tests=random_weights_for_tests)
    warn = warn or (lambda message: tqdm.write(message, file=sys.stderr))
    if suite.skipped_line():
        warn(f"corrdiff eval: {suite.skipped_line()}")
    test_only = suite.test_only
    warning = f"TEST ONLY: {', '.join(test_only)} computed with RANDOM weights (meaningless). " if test_only else ""
    methods = _method_table(plan, name, warning)

    failed: dict[str, str] = {}
    ok_images: list[str] = []
    rel = lambda p: str(p.relative_to(data_dir)) if p.is_relative_to(data_dir) else p.name  # noqa: E731
    bar = tqdm(files, desc="corrdiff eval", unit="img", disable=not progress, dynamic_ncols=True)
    for path in bar:
        image_name = rel(path)
        bar.set_postfix_str(image_name[-30:], refresh=False)
        try:
            rgb = load_image(path)
            staged = _evaluate_image(rgb, image_name, loaded, plan, suite)
            features = []
            if suite.patch_fid is not None:
                features.append((None, suite.patch_fid.features(rgb)))
                for method, point, _, decoded in staged:
                    features.append((f"{method}|{point}", suite.patch_fid.features(decoded)))
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - reported, counted, and the image is skipped
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            failed[image_name] = reason
            warn(f"corrdiff eval: {image_name}: failed, skipped ({reason})")
            continue
        ok_images.append(image_name)
        for method, point, r, decoded in staged:
            methods[method].point(point).rows.append(r)
            if save_images:
                folder = out / "reconstructions" / method / point.replace(":", "-")
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write(guard.check(folder / (Path(image_name).with_suffix("").as_posix().replace("/", "__") + ".png")),
                             encode_png(decoded))
        if suite.patch_fid is not None:
            for key, feats in features:
                suite.patch_fid.add(key, feats)
    bar.close()
    _dataset_metrics(methods, suite, ok_images)

    # ------------------------------------------------------------------ write
    metric_cols = suite.image_metrics
    _write_csv(guard.check(out / "per_image.csv"), methods, metric_cols, failed, suite.unavailable)
    settings = {
        "data_dir": str(data_dir), "images": ok_images, "steps": steps, "seed": seed, "same_file": same_file,
        "models": [{"label": m.label, "source": m.source, "fingerprint": m.codec.fingerprint().hex(),
                    "config_steps": m.codec.config.get("steps")} for m in loaded],
        "metrics": suite.computed, "weights_dir": str(weights_dir) if weights_dir else None,
    }
    summaries: dict[str, dict[str, Any]] = {}
    for method in methods.values():
        summary = _summarise(method, metric_cols, ok_images, failed, settings, test_only)
        summaries[method.key] = summary
        atomic_write(guard.check(out / f"{method.key}.json"), (json.dumps(summary, indent=2, allow_nan=False) + "\n").encode())
    index = {"methods": {k: f"{k}.json" for k in summaries}, "per_image": "per_image.csv",
             "num_images": len(ok_images), "num_failed": len(failed), "failed": failed,
             "unavailable": suite.unavailable, "settings": settings}
    atomic_write(guard.check(out / "index.json"), (json.dumps(index, indent=2, allow_nan=False) + "\n").encode())
    log(format_table(summaries))
    for key, summary in summaries.items():
        if any(summary.get("over_target", [])):
            warn(f"corrdiff eval: {key}: on {max(summary['over_target'])} of {len(ok_images)} image(s) even the "
                "lowest quality exceeds the CorrDiff file's bpp (see over_target and the CSV's target_bpp)")
    log(f"corrdiff eval: {len(ok_images)} image(s) evaluated, {len(failed)} failed; wrote {out}/per_image.csv and "
        f"{len(summaries)} JSON file(s) ({', '.join(s + '.json' for s in summaries)})")
    if not ok_images:
        raise EvaluationError(f"all {len(failed)} image(s) failed (first: {next(iter(failed.items()))})")
    return summaries


def _summarise(method: _Method, metric_cols: list[str], ok_images: list[str], failed: dict[str, str],
               settings: dict[str, Any], test_only: list[str]) -> dict[str, Any]:
    """One method's JSON: CompressAI's schema, points sorted by bpp."""
    points = sorted(method.points.values(), key=lambda p: _nanmean(r["bpp"] for r in p.rows) or 0.0)
    keys = ["bpp", *metric_cols]
    if any(p.dataset for p in points):
        keys += [k for k in ("fid", "kid", "kid-std", "fid-patches") if any(k in p.dataset for p in points)]
    keys += [k for k in ("encoding_time", "decoding_time", "quality", "target_bpp")
             if any(r.get(k) is not None for p in points for r in p.rows)]
    results: dict[str, list[Any]] = {}
    for key in keys:
        results[key] = [p.dataset.get(key) if key in p.dataset else _nanmean(r.get(key) for r in p.rows)
                        for p in points]
    summary = {
        "name": method.name,
        "description": method.description,
        "results": results,
        "points": [p.label for p in points],
        "num_images": len(ok_images),
        "num_failed": len(failed),
        "failed": failed,
        "unavailable": method.unavailable,
        "settings": settings,
    }
    if any(r.get("target_bpp") is not None for p in points for r in p.rows):
        # images where even quality 1 is larger than the CorrDiff file (so bpp > target there)
        summary["over_target"] = [sum(r["bpp"] > r["target_bpp"] for r in p.rows) for p in points]
    if test_only:
        summary["test_only_random_weights"] = test_only
    return summary


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _write_csv(path: Path, methods: dict[str, _Method], metric_cols: list[str], failed: dict[str, str],
               unavailable: dict[str, str]) -> None:
    columns = [*CSV_HEAD, *metric_cols, *CSV_TAIL, "unavailable"]
    unavailable_names = ";".join(unavailable)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for method in methods.values():
        for point in method.points.values():
            for r in point.rows:
                writer.writerow({c: _fmt(r.get(c)) for c in columns} | {"unavailable": unavailable_names})
    for image, reason in failed.items():
        writer.writerow({"image": image, "status": f"failed: {reason}", "unavailable": unavailable_names})
    atomic_write(path, buf.getvalue().encode())


TABLE_METRICS = ("bpp", *ALL_METRICS)


def format_table(summaries: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one line per method and RD point."""
    present = [k for k in TABLE_METRICS if any(k in s["results"] for s in summaries.values())]
    head = f"{'method':28} {'point':22} " + " ".join(f"{k:>11}" for k in present)
    lines = [head, "-" * len(head)]
    for summary in summaries.values():
        for i, point in enumerate(summary["points"]):
            cells = []
            for k in present:
                v = summary["results"].get(k, [None] * len(summary["points"]))[i]
                cells.append(f"{'n/a':>11}" if v is None else f"{v:11.4f}")
            lines.append(f"{summary['name'][:28]:28} {point[:22]:22} " + " ".join(cells))
    return "\n".join(lines)


__all__ = ["run_eval", "list_images", "format_table", "EvaluationError", "CORRDIFF_MODES", "DEFAULT_QUALITIES"]
