"""What ``corrdiff bench`` measures: its settings, their parsers and its error type."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from corrdiff.errors import CorrDiffError

SECTIONS = ("codecs", "peers", "breakdown", "flops", "training", "gamma")
DEFAULT_SIZES = ((256, 256), (768, 512), (1920, 1080), (3840, 2160))  # (width, height)
SMALL_PIXELS = 768 * 512  # up to this size: 3 repeats after 1 warm-up run; larger: 1 run, no warm-up
PRESET_PREFIX = "preset:"  # --model preset:NAME: an untrained network of a preset (timing only)


class BenchmarkError(CorrDiffError):
    """A measurement could not be made (e.g. its process died); the message says what to change."""


@dataclass(frozen=True)
class BenchSettings:
    """What to measure. Sizes are (width, height).

    ``repeats`` (None: 3 up to 768x512 pixels, 1 above) applies to the codecs and the decode
    profile; warm-up runs (not counted) are 1 up to 768x512 and 0 above (seconds against minutes).
    """

    model: str = "default"
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    repeats: int | None = None
    threads: int | None = None
    sampler: dict[str, Any] | None = None  # {"name": ..., **recorded parameters} for every encode; None: the model's
    skip: frozenset[str] = frozenset()
    profile_size: tuple[int, int] = (768, 512)
    train_batches: tuple[int, ...] = (2, 4, 8)
    train_crop: int = 128
    train_steps: int = 5
    gamma_repeats: int = 5
    matmul_size: int = 2048
    quick: bool = False

    def runs(self, size: tuple[int, int]) -> tuple[int, int]:
        """(repeats, warm-up runs) at ``size``."""
        small = size[0] * size[1] <= SMALL_PIXELS
        repeats = self.repeats or (1 if self.quick else 3 if small else 1)
        warmup = 0 if self.quick else 1 if small else 0
        return repeats, warmup

    @property
    def warmup(self) -> int:
        """Warm-up runs of the short measurements (training steps, gamma solvers)."""
        return 0 if self.quick else 1

    def wants(self, section: str) -> bool:
        """Whether ``section`` (one of :data:`SECTIONS`) runs."""
        return section not in self.skip


def quick_settings(**overrides: Any) -> BenchSettings:
    """Seconds instead of minutes (for tests): tiny untrained model, tiny sizes, one run of everything."""
    settings = BenchSettings(
        model="preset:tiny", sizes=((48, 32), (96, 64)), profile_size=(96, 64), train_batches=(1, 2),
        train_crop=32, train_steps=1, gamma_repeats=1, matmul_size=256, quick=True,
    )
    return replace(settings, **overrides)


def parse_size(text: str) -> tuple[int, int]:
    """``"768x512"`` -> (768, 512) (width x height)."""
    try:
        width, height = (int(v) for v in text.lower().strip().split("x"))
    except ValueError:
        raise ValueError(f"a size is WIDTHxHEIGHT, e.g. 768x512; got {text!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return width, height


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """Comma-separated sizes: ``"256x256,768x512"``."""
    sizes = tuple(parse_size(item) for item in text.split(",") if item.strip())
    if not sizes:
        raise ValueError("--sizes needs at least one WIDTHxHEIGHT")
    return sizes


def parse_skip(text: str | None) -> frozenset[str]:
    """Comma-separated section names to skip; unknown names are an error listing the known ones."""
    names = frozenset(s.strip() for s in (text or "").split(",") if s.strip())
    unknown = sorted(names - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) to skip: {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return names


def size_name(size: tuple[int, int]) -> str:
    """(768, 512) -> ``"768x512"``."""
    return f"{size[0]}x{size[1]}"
