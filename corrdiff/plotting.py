"""RD curves and Bjøntegaard-delta rates from result files in CompressAI's JSON schema.

* :func:`plot_rd`: one panel per metric (bpp on x), one line per method, each line labelled
  at its end in its own colour (no legend to hunt through); classical codecs dashed.
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

#: results keys that are bookkeeping, not RD metrics
NON_METRICS = frozenset({"bpp", "kid-std", "fid-patches", "quality", "target_bpp", "encoding_time", "decoding_time"})
#: not a quality scale (1 is ideal, both directions are worse): left out of default BD-rate tables
NOT_MONOTONE = frozenset({"hf-ratio"})
PREFERRED_ORDER = ("psnr-rgb", "ms-ssim-rgb", "lpips-alex", "lpips-vgg", "dists", "fid", "kid", "haarpsi", "gmsd",
                   "hf-ratio")
CLASSICAL = ("jpeg", "webp", "avif", "bpg", "vtm", "hm", "av1", "jpeg2000")


# ----------------------------------------------------------------------------- PCHIP in numpy
def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots of the monotone piecewise cubic Hermite interpolant
    (Fritsch & Carlson 1980; the same as scipy's ``PchipInterpolator``). ``x`` strictly increasing."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    h = np.diff(x)
    m = np.diff(y) / h
    if len(x) == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(y)
    # interior: weighted harmonic mean of the neighbouring secant slopes, 0 at a local extremum
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same_sign = m[:-1] * m[1:] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 / m[:-1] + w2 / m[1:]) / (w1 + w2)
        d[1:-1] = np.where(same_sign, 1.0 / harmonic, 0.0)

    def edge(h0: float, h1: float, m0: float, m1: float) -> float:  # one-sided three-point estimate
        value = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(value) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(value) > abs(3 * m0):
            return 3 * m0
        return value

    d[0] = edge(h[0], h[1], m[0], m[1])
    d[-1] = edge(h[-1], h[-2], m[-1], m[-2])
    return d


def pchip_eval(x: np.ndarray, y: np.ndarray, xq: np.ndarray | float) -> np.ndarray:
    """Evaluate the PCHIP interpolant of (x, y) at ``xq`` (inside [x[0], x[-1]])."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    d = pchip_slopes(x, y)
    xq = np.asarray(xq, float)
    k = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (xq - x[k]) / h
    return ((2 * s**3 - 3 * s**2 + 1) * y[k] + (s**3 - 2 * s**2 + s) * h * d[k]
            + (-2 * s**3 + 3 * s**2) * y[k + 1] + (s**3 - s**2) * h * d[k + 1])


def pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral of the PCHIP interpolant of (x, y) over [lo, hi] within [x[0], x[-1]]."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    d = pchip_slopes(x, y)

    def antiderivative(k: int, s: float) -> float:  # integral over [x_k, x_k + s h] of the Hermite cubic
        h = x[k + 1] - x[k]
        return h * ((s**4 / 2 - s**3 + s) * y[k] + (s**4 / 4 - 2 * s**3 / 3 + s**2 / 2) * h * d[k]
                    + (-s**4 / 2 + s**3) * y[k + 1] + (s**4 / 4 - s**3 / 3) * h * d[k + 1])

    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b > a:
            h = x[k + 1] - x[k]
            total += antiderivative(k, (b - x[k]) / h) - antiderivative(k, (a - x[k]) / h)
    return float(total)


def _curve(rate: Sequence[float], metric: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(metric, ln rate) sorted by metric; points with equal metric merged (mean log-rate); NaN dropped."""
    pairs = [(float(q), math.log(float(r))) for r, q in zip(rate, metric)
             if r is not None and q is not None and float(r) > 0 and math.isfinite(float(q))]
    by_metric: dict[float, list[float]] = {}
    for q, lr in pairs:
        by_metric.setdefault(q, []).append(lr)
    qs = np.array(sorted(by_metric))
    return qs, np.array([np.mean(by_metric[q]) for q in qs])


def bd_rate(ref_rate: Sequence[float], ref_metric: Sequence[float],
            test_rate: Sequence[float], test_metric: Sequence[float]) -> float:
    """Bjøntegaard delta rate of test against reference, in percent (NaN if undefined:
    fewer than 2 distinct points on a curve, or metric ranges that do not overlap)."""
    q1, r1 = _curve(ref_rate, ref_metric)
    q2, r2 = _curve(test_rate, test_metric)
    if len(q1) < 2 or len(q2) < 2:
        return float("nan")
    lo, hi = max(q1[0], q2[0]), min(q1[-1], q2[-1])
    if not hi > lo:
        return float("nan")
    avg = (pchip_integral(q2, r2, lo, hi) - pchip_integral(q1, r1, lo, hi)) / (hi - lo)
    return float((math.exp(avg) - 1) * 100)


def bd_metric(ref_rate: Sequence[float], ref_metric: Sequence[float],
              test_rate: Sequence[float], test_metric: Sequence[float]) -> float:
    """Bjøntegaard delta metric (e.g. BD-PSNR in dB): mean metric difference over the
    overlapping log-rate range (PCHIP of metric over ln bpp). NaN if undefined."""
    pairs1 = [(math.log(r), q) for r, q in zip(ref_rate, ref_metric) if r and r > 0 and q is not None]
    pairs2 = [(math.log(r), q) for r, q in zip(test_rate, test_metric) if r and r > 0 and q is not None]
    x1, y1 = _dedupe(pairs1)
    x2, y2 = _dedupe(pairs2)
    if len(x1) < 2 or len(x2) < 2:
        return float("nan")
    lo, hi = max(x1[0], x2[0]), min(x1[-1], x2[-1])
    if not hi > lo:
        return float("nan")
    return float((pchip_integral(x2, y2, lo, hi) - pchip_integral(x1, y1, lo, hi)) / (hi - lo))


def _dedupe(pairs: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
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
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
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
    rank = {m: i for i, m in enumerate(PREFERRED_ORDER)}
    return sorted(seen, key=lambda m: (rank.get(m, len(rank)), seen.index(m)))


def lower_is_better(metric: str) -> bool:
    from corrdiff.metrics import LOWER_IS_BETTER

    return metric in LOWER_IS_BETTER


def bd_rate_table(files: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None) -> str:
    """BD-rate (%) of every file against the first, one row per test file, one column per metric."""
    if len(files) < 2:
        raise ValueError("a BD-rate table needs a reference and at least one test file")
    ref, tests = files[0], files[1:]
    metrics = list(metrics or [m for m in metrics_in(files) if m not in NOT_MONOTONE])
    width = max(12, *(len(m) + 2 for m in metrics))
    lines = [f"BD-rate vs {ref['name']} (%, negative = fewer bits at equal quality; PCHIP, Bjøntegaard)",
             f"{'method':32}" + "".join(f"{m:>{width}}" for m in metrics)]
    for test in tests:
        cells = []
        for m in metrics:
            if m not in ref["results"] or m not in test["results"]:
                cells.append(f"{'n/a':>{width}}")
                continue
            value = bd_rate(ref["results"]["bpp"], ref["results"][m], test["results"]["bpp"], test["results"][m])
            cells.append(f"{'n/a':>{width}}" if math.isnan(value) else f"{value:>+{width}.2f}")
        lines.append(f"{test['name'][:32]:32}" + "".join(cells))
    lines.append("n/a: fewer than 2 RD points on a curve, no overlap of the metric ranges, or metric missing")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plot
def _spread(values: list[float], gap: float) -> list[float]:
    """Nudge sorted label positions apart so neighbours are at least ``gap`` apart (keeps the mean)."""
    order = np.argsort(values)
    pos = np.array(values, float)[order]
    for _ in range(50):
        moved = False
        for i in range(1, len(pos)):
            overlap = gap - (pos[i] - pos[i - 1])
            if overlap > 1e-9:
                pos[i - 1] -= overlap / 2
                pos[i] += overlap / 2
                moved = True
        if not moved:
            break
    out = np.empty_like(pos)
    out[order] = pos
    return out.tolist()


def plot_rd(files: Sequence[dict[str, Any]], output: str | Path, metrics: Sequence[str] | None = None,
            title: str | None = None, dpi: int = 150) -> Path:
    """Write RD curves (bpp vs each metric) of the loaded result files to ``output`` (PNG/PDF/SVG)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, works headless (Agg)

    metrics = list(metrics or metrics_in(files))
    if not metrics:
        raise ValueError("no metric to plot (the files' results hold only bpp)")
    missing = [m for m in metrics if not any(m in f["results"] for f in files)]
    if missing:
        raise ValueError(f"metric(s) {missing} in none of the files; available: {', '.join(metrics_in(files))}")
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(5.2 * cols, 3.9 * rows), layout="constrained")
    colours = [f"C{i % 10}" for i in range(len(files))]
    for index, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, index + 1)
        ends: list[tuple[float, float, str, str]] = []
        for f, colour in zip(files, colours):
            res = f["results"]
            if metric not in res:
                continue
            pts = sorted((float(b), float(v)) for b, v in zip(res["bpp"], res[metric])
                         if b is not None and v is not None and math.isfinite(float(v)))
            if not pts:
                continue
            xs, ys = zip(*pts)
            dashed = any(c in f["name"].lower() for c in CLASSICAL)
            ax.plot(xs, ys, linestyle="--" if dashed else "-", marker="o", markersize=3.5, linewidth=1.4,
                    color=colour)
            ends.append((xs[-1], ys[-1], f["name"], colour))
        better = ("1 = as sharp as the original" if metric == "hf-ratio"
                  else "lower is better" if lower_is_better(metric) else "higher is better")
        ax.set_xlabel("bits per pixel (bpp)")
        ax.set_ylabel(f"{metric} ({better})")
        ax.grid(True, alpha=0.3)
        if not ends:
            ax.text(0.5, 0.5, f"no data for {metric}", transform=ax.transAxes, ha="center")
            continue
        # direct labels at the line ends: widen the x range to make room, then de-overlap in y
        x0, x1 = ax.get_xlim()
        ax.set_xlim(x0, x1 + 0.45 * (x1 - x0 if x1 > x0 else 1.0))
        y0, y1 = ax.get_ylim()
        span = (y1 - y0) or 1.0
        ys = _spread([e[1] for e in ends], gap=0.06 * span)
        for (x, y, name, colour), y_label in zip(ends, ys):
            ax.annotate(name, xy=(x, y), xytext=(x + 0.03 * (x1 - x0 if x1 > x0 else 1.0), y_label),
                        color=colour, fontsize=8, va="center", ha="left",
                        arrowprops={"arrowstyle": "-", "color": colour, "alpha": 0.5, "linewidth": 0.6})
        ax.set_ylim(min(y0, min(ys) - 0.03 * span), max(y1, max(ys) + 0.03 * span))
    if title:
        fig.suptitle(title)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=dpi)
    return output


__all__ = ["bd_rate", "bd_metric", "bd_rate_table", "expand_paths", "load_results", "metrics_in", "pchip_eval",
           "pchip_integral",
           "pchip_slopes", "plot_rd"]
