"""Classical codecs through Pillow (JPEG, WebP, AVIF where supported), for comparisons.

``encode_at_bpp`` searches the quality setting (bisection over 1..100) for the file
whose bpp is closest to a target without exceeding it, so comparisons are at matched
rate; bpp always counts the whole file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

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
    data = to_bytes(rgb, codec, quality)
    return ClassicalResult(codec, int(quality), data, from_bytes(data))


def encode_at_bpp(rgb: np.ndarray, codec: str, target_bpp: float) -> ClassicalResult:
    """The highest quality whose bpp does not exceed ``target_bpp`` (the lowest quality if none fits)."""
    lo, hi = 1, 100
    best = encode(rgb, codec, lo)
    if best.bpp > target_bpp:
        return best
    while lo < hi:
        mid = (lo + hi + 1) // 2
        result = encode(rgb, codec, mid)
        if result.bpp <= target_bpp:
            lo, best = mid, result
        else:
            hi = mid - 1
    return best
