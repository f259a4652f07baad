"""From per-image rows to results: the methods and their RD points, means, data-set metrics (FID/KID),
and each method's summary in CompressAI's ``eval_model`` JSON schema."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from corrdiff.errors import CorrDiffError
from corrdiff.evaluation.plan import BASELINE_NAMES, Plan, method_key
from corrdiff.metric_names import DATASET_KEYS, DATASET_METRICS


@dataclass
class Point:
    """One RD point of one method: its rows (one per image) and its data-set metrics."""

    label: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    dataset: dict[str, float] = field(default_factory=dict)


@dataclass
class Method:
    """One method (a CorrDiff mode, a baseline at fixed qualities, a bpp-matched baseline): one JSON file."""

    key: str
    name: str
    description: str
    points: dict[str, Point] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def point(self, label: str) -> Point:
        return self.points.setdefault(label, Point(label))


def method_table(plan: Plan, name: str, curves: Sequence[str | None] = (None,)) -> dict[str, Method]:
    """One :class:`Method` per CorrDiff curve and mode, per baseline at fixed qualities and per bpp-matched
    baseline. ``curves``: None for the fixed-rate models (one point per model, ``corrdiff-<mode>``), a
    variable-rate model's label for its own curve (one point per quality, ``corrdiff-<curve>-<mode>``)."""
    matched_file = "corrected" if plan.same_file else plan.matched_mode
    steps_text = "" if plan.steps is None else f", {plan.steps} steps"
    methods: dict[str, Method] = {}
    for curve in curves:
        for mode in plan.modes:
            source = "decoded from the 'corrected' file" if plan.same_file else f"own '{mode}' file"
            key = method_key(curve, mode)
            points = "one point per model" if curve is None else f"variable-rate model {curve}, one point per quality"
            methods[key] = Method(
                key, f"{name} ({mode})" if curve is None else f"{name} {curve} ({mode})",
                f"corrdiff eval: mode {mode} ({source}){steps_text}, seed {plan.seed}; real bitstreams, "
                f"bpp = 8 * file bytes / pixels; metrics on 8-bit images; {points}")
    for fmt in plan.baselines:
        label = BASELINE_NAMES[fmt]
        if plan.qualities:
            methods[fmt] = Method(fmt, label, f"Pillow {label} at fixed qualities {plan.qualities} "
                                  "(one point per quality); bpp from the whole file")
        if plan.matched:
            methods[f"{fmt}-matched"] = Method(
                f"{fmt}-matched", f"{label} (bpp-matched)",
                f"Pillow {label}, per image the highest quality whose bpp does not exceed the "
                f"{name} '{matched_file}' file's; one point per {name} model (rate point)")
    return methods


def nanmean(values: Iterable[Any]) -> float | None:
    """Mean of the finite numbers among ``values``; None when there are none (strict JSON has no NaN)."""
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    finite = [v for v in nums if math.isfinite(v)]
    if finite:
        return float(np.mean(finite))
    return None  # strict JSON has no NaN/Infinity; an all-NaN or infinite mean is written as null


def dataset_metrics(methods: dict[str, Method], suite, ok_images: list[str]) -> None:
    """Patch FID/KID of every RD point, from the features gathered image by image."""
    for method in methods.values():
        method.unavailable.update(suite.unavailable)
        if suite.patch_fid is None or not ok_images:
            continue
        for point in method.points.values():
            try:
                values = suite.patch_fid.compute(f"{method.key}|{point.label}")
            except CorrDiffError as exc:
                for m in DATASET_METRICS:
                    if m in suite.names:
                        method.unavailable[m] = str(exc)
                break
            point.dataset = {k: v for k, v in values.items()
                             if k in suite.names or (k == "kid-std" and "kid" in suite.names)
                             or (k == "fid-patches")}


def summarise(method: Method, metric_cols: list[str], ok_images: list[str], failed: dict[str, str],
              settings: dict[str, Any]) -> dict[str, Any]:
    """One method's JSON: CompressAI's schema, points sorted by bpp."""
    points = sorted(method.points.values(), key=lambda p: nanmean(r["bpp"] for r in p.rows) or 0.0)
    keys = ["bpp", *metric_cols]
    if any(p.dataset for p in points):
        keys += [k for k in DATASET_KEYS if any(k in p.dataset for p in points)]
    keys += [k for k in ("encoding_time", "decoding_time", "quality", "target_bpp")
             if any(r.get(k) is not None for p in points for r in p.rows)]
    results: dict[str, list[Any]] = {}
    for key in keys:
        results[key] = [p.dataset.get(key) if key in p.dataset else nanmean(r.get(key) for r in p.rows)
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
    return summary
