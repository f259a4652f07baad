"""RD curves and Bjøntegaard-delta rates from result files in CompressAI's JSON schema.

* :func:`plot_rd`: one panel per metric (bpp on x), one curve per method (files of one name, e.g. a
  ladder evaluated model by model, form one curve), one legend beside the panels; classical codecs
  dashed (bpp-matched dotted). Axes fit CorrDiff's bpp range and the visible values without outliers
  (drawn on the panel's edge with their value); ``full_range`` shows every point.
* :func:`bd_rate`: Bjøntegaard delta rate (G. Bjøntegaard, VCEG-M33, 2001; VCEG-AI11, 2008),
  with the piecewise cubic (PCHIP, Fritsch-Carlson) interpolation that JVET/AOM common
  test conditions use instead of the original cubic polynomial fit::

      log R_i(q) = PCHIP through the points (q_i, ln bpp_i) of curve i, q the quality metric
      [lo, hi]   = overlap of the two curves' metric ranges
      BD-rate    = exp( (1 / (hi - lo)) * integral_lo^hi (log R_test - log R_ref) dq ) - 1

  in percent: negative = the test method needs fewer bits for the same quality. The
  formula is the same for metrics where lower is better (LPIPS, DISTS, FID): it compares
  rates at equal metric values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from corrdiff.metric_names import NOT_MONOTONE, PLOT_ORDER, lower_is_better

#: results keys that are bookkeeping, not RD metrics
NON_METRICS = frozenset({"bpp", "kid-std", "fid-patches", "quality", "target_bpp", "encoding_time", "decoding_time"})
CLASSICAL = ("jpeg", "webp", "avif", "bpg", "vtm", "hm", "av1", "jpeg2000")


# ----------------------------------------------------------------------------- Bjøntegaard deltas
def _mean_gap(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray,
              window: tuple[float, float] | None = None) -> float:
    """Mean of PCHIP(x2, y2) - PCHIP(x1, y1) over the overlap of the two x ranges (scipy's
    ``PchipInterpolator``, Fritsch-Carlson, integrated exactly), narrowed to ``window`` (lo, hi) when
    given; NaN with fewer than 2 points on a curve or no overlap. ``x`` strictly increasing."""
    if len(x1) < 2 or len(x2) < 2:
        return float("nan")
    lo, hi = max(x1[0], x2[0]), min(x1[-1], x2[-1])
    if window is not None:
        lo, hi = max(lo, window[0]), min(hi, window[1])
    if not hi > lo:
        return float("nan")
    from scipy.interpolate import PchipInterpolator

    integral = (PchipInterpolator(x2, y2).integrate(lo, hi) - PchipInterpolator(x1, y1).integrate(lo, hi))
    return float(integral / (hi - lo))


def _curve(rate: Sequence[float], metric: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(metric, ln rate) sorted by metric; points with equal metric merged (mean log-rate); NaN dropped."""
    pairs = [(float(q), math.log(float(r))) for r, q in zip(rate, metric)
             if r is not None and q is not None and float(r) > 0 and math.isfinite(float(q))]
    return _dedupe(pairs)


def bd_rate(ref_rate: Sequence[float], ref_metric: Sequence[float],
            test_rate: Sequence[float], test_metric: Sequence[float]) -> float:
    """Bjøntegaard delta rate of test against reference, in percent (NaN if undefined:
    fewer than 2 distinct points on a curve, or metric ranges that do not overlap)."""
    q1, r1 = _curve(ref_rate, ref_metric)
    q2, r2 = _curve(test_rate, test_metric)
    return float((math.exp(_mean_gap(q1, r1, q2, r2)) - 1) * 100)


def bd_metric(ref_rate: Sequence[float], ref_metric: Sequence[float],
              test_rate: Sequence[float], test_metric: Sequence[float],
              rate_range: tuple[float, float] | None = None) -> float:
    """Bjøntegaard delta metric (e.g. BD-PSNR in dB): mean metric difference over the
    overlapping log-rate range (PCHIP of metric over ln bpp), narrowed to ``rate_range`` (bpp low,
    high) when given. NaN if undefined."""
    pairs1 = [(math.log(r), q) for r, q in zip(ref_rate, ref_metric) if r and r > 0 and _finite(q)]
    pairs2 = [(math.log(r), q) for r, q in zip(test_rate, test_metric) if r and r > 0 and _finite(q)]
    window = (math.log(rate_range[0]), math.log(rate_range[1])) if rate_range else None
    return _mean_gap(*_dedupe(pairs1), *_dedupe(pairs2), window=window)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _dedupe(pairs: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, y) sorted by x, those of equal x merged (mean y)."""
    groups: dict[float, list[float]] = {}
    for x, y in pairs:
        groups.setdefault(x, []).append(y)
    xs = np.array(sorted(groups))
    return xs, np.array([np.mean(groups[x]) for x in xs])


# ----------------------------------------------------------------------------- result files
def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Result files, with an ``index.json`` of ``corrdiff eval`` replaced by the method files it lists;
    duplicates dropped (so ``results/*.json`` works)."""
    out: list[Path] = []
    for path in map(Path, paths):
        listed = [path]
        if path.is_file() and path.suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                data = None
            if isinstance(data, dict) and "results" not in data and isinstance(data.get("methods"), dict):
                listed = [path.parent / name for name in data["methods"].values()]
        for p in listed:
            if all(p.resolve() != q.resolve() for q in out):
                out.append(p)
    return out


def load_results(path: str | Path) -> dict[str, Any]:
    """A result JSON (ours or CompressAI's): ``{"name", "results": {...}}``; the name defaults to the file stem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    what = "corrdiff plot reads the result .json files of corrdiff eval or CompressAI"
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a results JSON file (not text: an image?); {what}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a results JSON file ({exc}); {what}") from None
    results = data.get("results", data) if isinstance(data, dict) else None
    if not isinstance(results, dict) or "bpp" not in results:
        raise ValueError(f"{path}: no results with a 'bpp' list (CompressAI's schema)")
    return {"name": data.get("name", path.stem.split(".")[0]), "results": results, "path": str(path),
            "unavailable": data.get("unavailable", {})}


def metrics_in(files: Iterable[dict[str, Any]]) -> list[str]:
    """RD metrics present in any of the loaded files, most common ones first."""
    seen: list[str] = []
    for f in files:
        for key, values in f["results"].items():
            if key not in NON_METRICS and key not in seen and isinstance(values, list):
                seen.append(key)
    rank = {m: i for i, m in enumerate(PLOT_ORDER)}
    return sorted(seen, key=lambda m: (rank.get(m, len(rank)), seen.index(m)))


def bd_rate_table(files: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None) -> str:
    """BD-rate (%) of every file against the first, one row per test file, one column per metric; a cell
    that has no value says why (:func:`bd_rate_gap`)."""
    if len(files) < 2:
        raise ValueError("a BD-rate table needs a reference and at least one test file")
    ref, tests = files[0], files[1:]
    metrics = list(metrics or [m for m in metrics_in(files) if m not in NOT_MONOTONE])
    width = max(len("n/a (no overlap)") + 2, *(len(m) + 2 for m in metrics))
    lines = [f"BD-rate vs {ref['name']} (%, negative = fewer bits at equal quality; PCHIP, Bjøntegaard)",
             f"{'method':32}" + "".join(f"{m:>{width}}" for m in metrics)]
    for test in tests:
        cells = []
        for m in metrics:
            gap = bd_rate_gap(ref, test, m)
            if gap is None:
                value = bd_rate(ref["results"]["bpp"], ref["results"][m], test["results"]["bpp"], test["results"][m])
                gap = "no overlap" if math.isnan(value) else None
            cells.append(f"{'n/a (' + gap + ')':>{width}}" if gap else f"{value:>+{width}.2f}")
        lines.append(f"{test['name'][:32]:32}" + "".join(cells))
    lines += ["n/a (one point): this method or the reference has fewer than 2 RD points; one model gives one point,",
              "                 evaluate several (corrdiff eval --model A --model B ...) for a curve",
              "n/a (no overlap): the two curves' metric ranges do not overlap",
              "n/a (missing): a file lacks the metric"]
    return "\n".join(lines)


def bd_rate_gap(ref: dict[str, Any], test: dict[str, Any], metric: str) -> str | None:
    """Why the BD-rate of ``test`` against ``ref`` for ``metric`` cannot be computed before trying:
    ``missing`` (a file lacks the metric), ``one point`` (a curve with fewer than 2 distinct points), or None."""
    if metric not in ref["results"] or metric not in test["results"]:
        return "missing"
    for f in (ref, test):
        if len(_curve(f["results"]["bpp"], f["results"][metric])[0]) < 2:
            return "one point"
    return None


# ----------------------------------------------------------------------------- plot
#: a value counts as an outlier beyond this many bulk widths from the bulk (see :func:`y_view`)
OUTLIER_FACTOR = 8.0


#: legend handle length in font sizes: a 2-em handle's marker hid the one gap of a dashed line (drawn solid)
LEGEND_HANDLE_LENGTH = 4.5


def single_point_methods(files: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[str]:
    """CorrDiff (non-classical) methods with one rate point in every panel: drawn as dots, not curves."""
    names = []
    for name in dict.fromkeys(f["name"] for f in files):
        if is_classical(name):
            continue
        rates = [{x for x, _ in rd_curves(files, m).get(name, [])} for m in metrics]
        if all(len(r) <= 1 for r in rates):
            names.append(name)
    return names


def single_point_note(names: Sequence[str]) -> str:
    """The figure's note when :func:`single_point_methods` finds any."""
    return (f"{', '.join(names)}: one rate point each (one model), so dots, not curves; "
            "evaluate several models (corrdiff eval --model A --model B ...) for a curve")


def is_classical(name: str) -> bool:
    """Whether a method name is a classical codec (JPEG, WebP, ...): drawn dashed, not ours."""
    return any(c in name.lower() for c in CLASSICAL)


def rd_curves(files: Sequence[dict[str, Any]], metric: str) -> dict[str, list[tuple[float, float]]]:
    """Method name -> its (bpp, value) points sorted by bpp. Files of one name (e.g. the models of one
    ladder evaluated in separate runs) form one curve; missing and non-finite values are left out."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for f in files:
        res = f["results"]
        if metric not in res:
            continue
        points = curves.setdefault(f["name"], [])
        points += [(float(b), float(v)) for b, v in zip(res["bpp"], res[metric])
                   if b is not None and v is not None and math.isfinite(float(b)) and math.isfinite(float(v))]
    return {name: sorted(set(points)) for name, points in curves.items() if points}  # repeated points once


def x_view(curves: dict[str, list[tuple[float, float]]], full_range: bool = False) -> tuple[float, float]:
    """The bpp range to show: every point with ``full_range`` or when all methods are classical;
    else CorrDiff's (the non-classical methods') range with a margin, baselines clipped to it."""
    ours = [x for name, pts in curves.items() if not is_classical(name) for x, _ in pts]
    xs = ours if ours and not full_range else [x for pts in curves.values() for x, _ in pts]
    lo, hi = min(xs), max(xs)
    pad = 0.25 * (hi - lo) + 0.15 * hi or 0.05
    return max(0.0, lo - pad), hi + pad


def y_view(values: Sequence[float]) -> tuple[float, float]:
    """The value range to show, robust to outliers, with a margin of 8 %.

    The bulk is the narrowest interval holding half of the values; its width counts as at least the
    median's magnitude (so that values near a tight cluster stay). Values more than
    :data:`OUTLIER_FACTOR` widths beyond the bulk are outliers: left out of the range (the plot draws
    them on the panel's edge with their value), so one diverged model does not flatten a panel.
    """
    v = np.sort(np.asarray(values, float))
    kept = v
    if len(v) >= 5:
        k = math.ceil(len(v) / 2)
        widths = v[k - 1:] - v[: len(v) - k + 1]
        i = int(np.argmin(widths))
        width = max(widths[i], abs(float(np.median(v)))) or v[-1] - v[0]
        kept = v[(v >= v[i] - OUTLIER_FACTOR * width) & (v <= v[i + k - 1] + OUTLIER_FACTOR * width)]
    lo, hi = float(kept.min()), float(kept.max())
    pad = 0.08 * (hi - lo) or 0.05 * abs(hi) or 0.05
    return lo - pad, hi + pad


def _visible_values(curves: dict[str, list[tuple[float, float]]], x0: float, x1: float) -> list[float]:
    """Values of the points inside the bpp view, and of each curve where it crosses the view's edges."""
    values = []
    for pts in curves.values():
        xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        values += ys[(xs >= x0) & (xs <= x1)].tolist()
        if len(xs) > 1 and len(np.unique(xs)) == len(xs):
            values += [float(np.interp(edge, xs, ys)) for edge in (x0, x1) if xs[0] < edge < xs[-1]]
    return values


def _family(name: str) -> str:
    return name.replace(" (bpp-matched)", "")


def _draw_curve(ax, pts: list[tuple[float, float]], name: str, colour: str, xlim: tuple[float, float],
                ylim: tuple[float, float]):
    """One method: a line through its points in bpp order (markers only when points share a bpp, as
    in an ablation at one rate); points of the bpp view beyond ``ylim`` sit on the panel's edge as
    triangles with their value. Returns the line for the legend."""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    one_curve = len(set(xs)) == len(xs) > 1  # else dots (one point, or points that share a bpp), also in the legend
    style = (":" if "matched" in name.lower() else "--") if is_classical(name) else "-"
    (line,) = ax.plot(xs, ys, linestyle=style if one_curve else "none", marker="o",
                      markersize=4 if not is_classical(name) else 3, linewidth=1.6, color=colour, label=name)
    lo, hi = ylim
    outliers: dict[tuple[float, bool], list[float]] = {}  # (bpp, above) -> values: one label per place
    for x, y in pts:
        if xlim[0] <= x <= xlim[1] and not lo <= y <= hi:
            outliers.setdefault((x, y > hi), []).append(y)
    for (x, above), values in outliers.items():
        edge = hi if above else lo
        ax.plot([x], [edge], marker="^" if above else "v", color=colour, markersize=6, clip_on=False)
        ax.annotate(", ".join(f"{y:.3g}" for y in sorted(values)), (x, edge), xytext=(5, -10 if above else 4),
                    textcoords="offset points", color=colour, fontsize=7, annotation_clip=False)
    return line


def plot_rd(files: Sequence[dict[str, Any]], output: str | Path, metrics: Sequence[str] | None = None,
            title: str | None = None, dpi: int = 150, full_range: bool = False) -> Path:
    """Write RD curves (bpp vs each metric) of the loaded result files to ``output`` (PNG/PDF/SVG).

    One panel per metric, one curve per method name (points sorted by bpp), one legend for all
    panels. By default the bpp axis spans CorrDiff's points (:func:`x_view`; ``full_range``: all
    points) and each value axis the visible points without outliers (:func:`y_view`).
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend, works headless (Agg)

    metrics = list(metrics or metrics_in(files))
    if not metrics:
        raise ValueError("no metric to plot (the files' results hold only bpp)")
    missing = [m for m in metrics if not any(m in f["results"] for f in files)]
    if missing:
        raise ValueError(f"metric(s) {missing} in none of the files; available: {', '.join(metrics_in(files))}")
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.6 * cols + 2.2, 3.6 * rows), layout="constrained")
    # a bpp-matched baseline takes its codec's colour (and a dotted line)
    families = list(dict.fromkeys(_family(f["name"]) for f in files))
    colours = {f["name"]: f"C{families.index(_family(f['name'])) % 10}" for f in files}
    legend: dict[str, Any] = {}
    for index, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, index + 1)
        curves = rd_curves(files, metric)
        better = ("1 = as sharp as the original" if metric == "hf-ratio"
                  else "lower is better" if lower_is_better(metric) else "higher is better")
        ax.set_xlabel("bits per pixel (bpp)")
        ax.set_ylabel(f"{metric} ({better})")
        ax.grid(True, alpha=0.3)
        if not curves:
            ax.text(0.5, 0.5, f"no data for {metric}", transform=ax.transAxes, ha="center")
            continue
        x0, x1 = x_view(curves, full_range)
        ylim = y_view(_visible_values(curves, x0, x1) or [v for pts in curves.values() for _, v in pts])
        for name, pts in curves.items():
            legend.setdefault(name, _draw_curve(ax, pts, name, colours[name], (x0, x1), ylim))
        ax.set_xlim(x0, x1)
        ax.set_ylim(*ylim)
    # handles long enough that a dashed or dotted line shows its gaps on both sides of the marker
    fig.legend(list(legend.values()), list(legend), loc="outside right upper", fontsize=8, frameon=False,
               handlelength=LEGEND_HANDLE_LENGTH)
    single = single_point_methods(files, metrics)
    if single:
        fig.supxlabel(single_point_note(single), fontsize=8)  # a footnote that constrained layout makes room for
    if title:
        fig.suptitle(title)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=dpi)
    return output


__all__ = ["bd_rate", "bd_metric", "bd_rate_gap", "bd_rate_table", "expand_paths", "load_results", "metrics_in",
           "plot_rd", "rd_curves", "single_point_methods", "x_view", "y_view"]
