"""Classical codecs through Pillow (JPEG, WebP, AVIF where supported), for comparisons.

``encode_at_bpp`` searches the quality setting (bisection over 1..100) for the file
whose bpp is closest to a target without exceeding it, so comparisons are at matched
rate; bpp always counts the whole file. :class:`Encodes` holds one image's files in one
codec, so that several targets and fixed qualities never encode the same quality twice.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image, features

FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}


def available_formats() -> list[str]:
    """Baseline codecs this Pillow can write."""
    out = ["jpeg"]
    if features.check("webp"):
        out.append("webp")
    Image.init()  # Image.SAVE lists only the plugins loaded so far; AVIF's loads on init
    if "AVIF" in Image.SAVE:
        out.append("avif")
    return out


@dataclass
class ClassicalResult:
    codec: str
    quality: int
    data: bytes
    decoded: np.ndarray

    @property
    def bpp(self) -> float:
        h, w = self.decoded.shape[:2]
        return 8.0 * len(self.data) / (h * w)


def to_bytes(rgb: np.ndarray, codec: str, quality: int) -> bytes:
    """Encode (H, W, 3) uint8 with Pillow at ``quality``: the file's bytes."""
    if codec not in FORMATS:
        raise ValueError(f"baseline codec must be one of {sorted(FORMATS)}, got {codec!r}")
    buf = io.BytesIO()
    options = {"quality": int(quality)}
    if codec == "jpeg":
        options.update(subsampling="4:2:0", optimize=True)
    elif codec == "webp":
        options.update(method=6)
    Image.fromarray(rgb).save(buf, format=FORMATS[codec], **options)
    return buf.getvalue()


def from_bytes(data: bytes) -> np.ndarray:
    """Decode a file written by :func:`to_bytes` to (H, W, 3) uint8."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def encode(rgb: np.ndarray, codec: str, quality: int) -> ClassicalResult:
    """Encode (H, W, 3) uint8 with Pillow at ``quality`` and decode it back."""
    return Encodes(rgb, codec).result(quality)


def matched_quality(bpp_of: Callable[[int], float], target_bpp: float) -> int:
    """The highest quality in 1..100 whose ``bpp_of(quality)`` does not exceed ``target_bpp`` (1 if none does),
    by bisection: ``bpp_of`` is assumed non-decreasing in quality."""
    lo, hi = 1, 100
    if bpp_of(lo) > target_bpp:
        return lo
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if bpp_of(mid) <= target_bpp:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(eq=False)
class Encodes:
    """One image's files in one codec: each quality encoded at most once, and decoded only when its
    result is asked for (the probes of a bisection need the file's size only).

    ``encode_seconds`` and ``decode_seconds`` hold how long each quality took, whoever asked for it first.
    Not shared between threads: one object per (image, codec).
    """

    rgb: np.ndarray
    codec: str
    files: dict[int, bytes] = field(default_factory=dict)
    results: dict[int, ClassicalResult] = field(default_factory=dict)
    encode_seconds: dict[int, float] = field(default_factory=dict)
    decode_seconds: dict[int, float] = field(default_factory=dict)

    def data(self, quality: int) -> bytes:
        """The file at ``quality`` (encoded on first use)."""
        quality = int(quality)
        if quality not in self.files:
            start = time.perf_counter()
            self.files[quality] = to_bytes(self.rgb, self.codec, quality)
            self.encode_seconds[quality] = time.perf_counter() - start
        return self.files[quality]

    def bpp(self, quality: int) -> float:
        """Bits per pixel of the file at ``quality``, the whole file counted."""
        h, w = self.rgb.shape[:2]
        return 8.0 * len(self.data(quality)) / (h * w)

    def result(self, quality: int) -> ClassicalResult:
        """The file at ``quality`` and its decoded image (decoded on first use)."""
        quality = int(quality)
        if quality not in self.results:
            data = self.data(quality)
            start = time.perf_counter()
            self.results[quality] = ClassicalResult(self.codec, quality, data, from_bytes(data))
            self.decode_seconds[quality] = time.perf_counter() - start
        return self.results[quality]

    def at_bpp(self, target_bpp: float) -> ClassicalResult:
        """The highest quality whose bpp does not exceed ``target_bpp`` (the lowest quality if none fits)."""
        return self.result(matched_quality(self.bpp, target_bpp))


def encode_at_bpp(rgb: np.ndarray, codec: str, target_bpp: float) -> ClassicalResult:
    """The highest quality whose bpp does not exceed ``target_bpp`` (the lowest quality if none fits)."""
    return Encodes(rgb, codec).at_bpp(target_bpp)
