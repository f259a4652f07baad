"""The evaluation metrics, registered by name in one table (plain data: no torch, cheap to import).

Names follow CompressAI's ``eval_model`` keys (``psnr-rgb``, ``ms-ssim-rgb``), so that its plotting
tools read our JSON files. Each :class:`Metric` says how :class:`corrdiff.metrics.MetricSuite`
computes it (a function of :mod:`corrdiff.metrics`, named here so that this module stays free of
torch), whether lower is better, which pretrained weight files or packages it needs and whether
it is a data-set-level metric. ``corrdiff eval``'s table and ``--metrics`` help, ``corrdiff plot``'s
panel order and "lower is better" labels, and the BD-rate tables all read :data:`METRICS`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One evaluation metric.

    Attributes:
        name: the results key (CompressAI's spelling where it has one).
        compute: the name of a function in :mod:`corrdiff.metrics` (:data:`corrdiff.metrics.suite.FUNCTIONS`
            resolves it). A weight-free per-image metric names its ``(reference, test) -> float``
            function; a metric with ``weights`` names a builder ``(weights_dir, device, offline=...) -> (reference, test) -> float``; a ``dataset``
            metric names the builder ``(weights_dir, offline=...) -> nn.Module`` of its feature network.
        lower_is_better: smaller values are better (plots and BD-rate tables say so).
        weights: keys of :data:`corrdiff.weights.WEIGHTS` that it needs (pretrained networks).
        dataset: one value per method over 256x256 patches of the whole data set, not per image.
        needs: a Python package it imports (reported unavailable when missing).
        monotone: ``False`` when it is not a quality scale (1 is ideal, both directions are worse):
            left out of default BD-rate tables.
    """

    name: str
    compute: str
    lower_is_better: bool = False
    weights: tuple[str, ...] = ()
    dataset: bool = False
    needs: str | None = None
    monotone: bool = True

    @property
    def pretrained(self) -> bool:
        """Needs pretrained weight files."""
        return bool(self.weights)


#: every metric, in the canonical order (CSV columns, JSON keys, the ``corrdiff eval`` table)
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("psnr-rgb", "psnr"),
    Metric("ms-ssim-rgb", "ms_ssim"),
    Metric("hf-ratio", "high_frequency_ratio", monotone=False),
    Metric("colour-error", "colour_error", lower_is_better=True),
    Metric("bandpass-w1", "bandpass_distance", lower_is_better=True),
    Metric("haarpsi", "haarpsi", needs="piq"),
    Metric("gmsd", "gmsd", lower_is_better=True, needs="piq"),
    Metric("lpips-alex", "lpips_alex", lower_is_better=True, weights=("alexnet",)),
    Metric("lpips-vgg", "lpips_vgg", lower_is_better=True, weights=("vgg16",)),
    Metric("dists", "dists", lower_is_better=True, weights=("vgg16",)),
    Metric("fid", "build_inception", lower_is_better=True, weights=("inception",), dataset=True),
    Metric("kid", "build_inception", lower_is_better=True, weights=("inception",), dataset=True),
)}

ALL_METRICS = tuple(METRICS)
#: distribution metrics over 256x256 patches of the whole data set (one value per method)
DATASET_METRICS = tuple(m.name for m in METRICS.values() if m.dataset)
#: results keys of the data-set metrics, in order: the metrics and their companions
#: (``kid-std`` comes with ``kid``; ``fid-patches``, the number of patches, with either)
DATASET_KEYS = (*DATASET_METRICS, "kid-std", "fid-patches")
#: smaller is better for these, and for the timings
LOWER_IS_BETTER = frozenset({m.name for m in METRICS.values() if m.lower_is_better} | {"encoding_time",
                                                                                       "decoding_time"})
#: not a quality scale: left out of default BD-rate tables
NOT_MONOTONE = frozenset(m.name for m in METRICS.values() if not m.monotone)
#: the order of plot panels: fidelity, then perception, then the rest
PLOT_ORDER = ("psnr-rgb", "ms-ssim-rgb", "lpips-alex", "lpips-vgg", "dists", "fid", "kid", "haarpsi", "gmsd", "hf-ratio",
              "bandpass-w1", "colour-error")
assert set(PLOT_ORDER) == set(ALL_METRICS)


def lower_is_better(name: str) -> bool:
    """Whether smaller values of the results key ``name`` are better."""
    return name in LOWER_IS_BETTER
