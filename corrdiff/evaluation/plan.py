"""What one evaluation does: the images it reads and its checked options (:class:`Plan`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from corrdiff import baselines as classical
from corrdiff.bitstream import DECODE_MODES
from corrdiff.image_io import IMAGE_SUFFIXES, find_images
from corrdiff.threads import default_threads

DEFAULT_QUALITIES = (5, 10, 20, 30, 50, 75, 90)
CORRDIFF_MODES = tuple(DECODE_MODES)
BASELINE_NAMES = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}


def method_key(curve: str | None, mode: str) -> str:
    """The key (and JSON file stem) of a CorrDiff method: ``corrdiff-<mode>`` for the fixed-rate models' curve,
    ``corrdiff-<curve>-<mode>`` for a variable-rate model's."""
    return f"corrdiff-{mode}" if curve is None else f"corrdiff-{curve}-{mode}"


def rate_label(quality: float) -> str:
    """A quality as a point label's suffix, ``q2.5``."""
    return f"q{quality:g}"


def list_images(data_dir: str | Path) -> list[Path]:
    """Image files under ``data_dir`` (recursively), sorted by path."""
    files = find_images(data_dir)
    if not files:
        raise FileNotFoundError(f"{data_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def parse_list(value: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """A comma-separated string or a sequence as a list of stripped, non-empty items (``default`` for None)."""
    if value is None:
        return list(default)
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip() for s in items if s and s.strip()]


@dataclass
class Plan:
    """The checked options of one evaluation: what is encoded, decoded, matched and scored."""

    modes: list[str]
    baselines: list[str]
    qualities: list[int]
    metric_names: list[str] | None
    steps: int | None
    seed: int
    same_file: bool
    matched: bool
    sampler: dict[str, Any] | None = None  # {"name": ..., **recorded parameters}; None: each model's own
    workers: int = 1  # threads coding the baselines beside the CorrDiff decodes and the metrics
    rate_qualities: list[float] | None = None  # each variable-rate model's qualities; None: its default one

    @property
    def matched_mode(self) -> str:
        """The mode whose file the bpp-matched baselines match (one file per model, i.e. per rate point)."""
        return "corrected" if "corrected" in self.modes else self.modes[0]


def make_plan(modes, baselines, qualities, metrics, steps, seed, same_file, matched, limit, models,
              sampler: Mapping[str, Any] | None = None, workers: int | None = None,
              rate_qualities: Sequence[float] | str | None = None) -> Plan:
    """Parse and check run_eval's options (ValueError naming the bad one), before any work;
    ``workers=None``: :func:`corrdiff.threads.default_threads`."""
    modes = parse_list(modes, CORRDIFF_MODES)
    bad = [m for m in modes if m not in CORRDIFF_MODES]
    if bad or not modes:
        raise ValueError(f"modes must be a non-empty subset of {', '.join(CORRDIFF_MODES)}, got {modes}")
    available = classical.available_formats()
    baselines = parse_list(baselines, available)
    if baselines == ["none"]:
        baselines = []
    bad = [b for b in baselines if b not in available]
    if bad:
        raise ValueError(f"baseline(s) {bad} not available here; this Pillow writes: {', '.join(available)}")
    qualities = [int(q) for q in parse_list([str(q) for q in qualities] if not isinstance(qualities, str)
                                            else qualities, [])]
    if any(not 1 <= q <= 100 for q in qualities):
        raise ValueError(f"qualities must lie in 1..100, got {qualities}")
    metric_names = parse_list(metrics, []) if metrics not in (None, "all") else None
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if not models:
        raise ValueError("give at least one model")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must lie in [0, 2^32), got {seed}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    rates = None
    if rate_qualities is not None:
        try:
            rates = [float(q) for q in parse_list(rate_qualities if isinstance(rate_qualities, str)
                                                  else [str(q) for q in rate_qualities], [])]
        except ValueError:
            raise ValueError(f"--quality takes comma-separated numbers, got {rate_qualities!r}") from None
        if not rates or len({rate_label(q) for q in rates}) != len(rates):
            raise ValueError(f"--quality takes distinct comma-separated numbers, got {rate_qualities!r}")
    return Plan(modes, baselines, qualities, metric_names, steps, seed, same_file, matched,
                dict(sampler) if sampler is not None else None, default_threads() if workers is None else workers,
                rates)
