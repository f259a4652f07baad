"""The metrics of one evaluation (``corrdiff eval``): which are computed, which are unavailable and why.

Metric names follow CompressAI's ``eval_model`` keys (``psnr-rgb``, ``ms-ssim-rgb``), so our summary
JSON files overlay with its results (:data:`corrdiff.metric_names.METRICS`). Metrics needing pretrained
weights (LPIPS, DISTS, FID/KID) get them from :func:`corrdiff.weights.find_weights`; when unavailable,
the metric is reported unavailable with the reason and never computed with random weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from corrdiff.metric_names import ALL_METRICS, DATASET_METRICS, METRICS, Metric
from corrdiff.metrics.bandpass import bandpass_distance
from corrdiff.metrics.networks import build_inception, dists, lpips_alex, lpips_vgg
from corrdiff.metrics.patch_fid import PatchFID
from corrdiff.metrics.weight_free import colour_error, gmsd, haarpsi, high_frequency_ratio, ms_ssim, psnr, quiet_import
from corrdiff.weights import PerceptualUnavailable, WeightsNotFound

#: the functions that :attr:`Metric.compute <corrdiff.metric_names.Metric.compute>` names, by name
FUNCTIONS: dict[str, Callable] = {f.__name__: f for f in (
    psnr, ms_ssim, high_frequency_ratio, colour_error, bandpass_distance, haarpsi, gmsd,
    lpips_alex, lpips_vgg, dists, build_inception,
)}


def _require(package: str) -> None:
    """Import ``package`` (quietly), else PerceptualUnavailable."""
    try:
        quiet_import(package)
    except ImportError as exc:
        raise PerceptualUnavailable(f"needs the {package} package ({exc})") from None


@dataclass
class MetricSuite:
    """The metrics of one evaluation: which are computed, which are unavailable and why.

    Each metric is looked up in :data:`corrdiff.metric_names.METRICS`, which names the function
    (:data:`FUNCTIONS`) that computes it.

    Args:
        metrics: names from :data:`~corrdiff.metric_names.ALL_METRICS` (default: all of them).
        weights_dir: folder with the pretrained weight files (:data:`corrdiff.weights.WEIGHT_FILES`),
            also searched in its ``checkpoints/`` subfolder and in torch hub's cache, where files found
            nowhere are downloaded (:func:`corrdiff.weights.find_weights`).
        device: where the pretrained networks run.
        offline: never download (nor does the environment variable ``CORRDIFF_OFFLINE=1``).
    """

    metrics: Iterable[str] | None = None
    weights_dir: str | Path | None = None
    device: str | torch.device = "cpu"
    offline: bool = False
    unavailable: dict[str, str] = field(default_factory=dict, init=False)
    patch_fid: PatchFID | None = field(default=None, init=False)
    #: metric -> the weight file it lacks (the metrics of :attr:`unavailable` that a file would enable)
    missing_weights: dict[str, WeightsNotFound] = field(default_factory=dict, init=False)

    def __post_init__(self):
        names = list(ALL_METRICS if self.metrics is None else self.metrics)
        unknown = [m for m in names if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(ALL_METRICS)}")
        self.names = [m for m in ALL_METRICS if m in names]  # canonical order
        self._image_fns: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {}
        failures: dict[str, PerceptualUnavailable] = {}  # by compute function: fid and kid share one network
        for name in self.names:
            spec = METRICS[name]
            try:
                if spec.compute in failures:
                    raise failures[spec.compute]
                self._add(spec)
            except PerceptualUnavailable as exc:
                failures[spec.compute] = exc
                self.unavailable[name] = str(exc)
                if isinstance(exc, WeightsNotFound):
                    self.missing_weights[name] = exc

    def _add(self, spec: Metric) -> None:
        """Make ``spec`` computable (its function, network or FID features), or raise PerceptualUnavailable."""
        if spec.needs:
            _require(spec.needs)
        compute = FUNCTIONS[spec.compute]
        if spec.dataset:
            if self.patch_fid is None:
                self.patch_fid = PatchFID(compute(self.weights_dir, offline=self.offline), device=self.device)
        elif spec.pretrained:
            self._image_fns[spec.name] = compute(self.weights_dir, self.device, offline=self.offline)
        else:
            self._image_fns[spec.name] = compute

    def skipped_line(self) -> str | None:
        """One line naming the metrics that will not be computed and how to enable them (None: none skipped)."""
        if not self.unavailable:
            return None
        text = f"skipped {', '.join(self.unavailable)}"
        if self.missing_weights:
            files = list(dict.fromkeys(e.filename for e in self.missing_weights.values()))
            folders = list(dict.fromkeys(f for e in self.missing_weights.values() for f in e.folders))
            reasons = list(dict.fromkeys(e.reason for e in self.missing_weights.values()))
            text += (f": no pretrained weights ({', '.join(files)} not in {', '.join(folders)}; "
                     f"{'; '.join(reasons)}); to enable, put them in a folder passed as --weights-dir "
                     "(docs/evaluation.md)")
        others = {m: r for m, r in self.unavailable.items() if m not in self.missing_weights}
        if others:
            text += "; " + "; ".join(f"{m}: {r}" for m, r in others.items())
        return text

    @property
    def image_metrics(self) -> list[str]:
        """Per-image metrics that will be computed."""
        return list(self._image_fns)

    @property
    def computed(self) -> list[str]:
        """Every metric that will have values (per image, then data-set level)."""
        extra = [m for m in DATASET_METRICS if m in self.names and m not in self.unavailable]
        return self.image_metrics + extra

    def release(self) -> None:
        """Free what the networks keep between scorings of one reference (its features), e.g. when the
        evaluation moves on to another image."""
        for fn in self._image_fns.values():
            getattr(fn, "release", lambda: None)()

    def score(self, reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
        """Every per-image metric of ``test`` against ``reference`` (both (H, W, 3) uint8)."""
        return {name: fn(reference, test) for name, fn in self._image_fns.items()}
