"""The AVIF base codec: AV1 intra coding through Pillow (libavif) as CorrDiff's privileged decoder
(docs/avif_base.md).

CorrDiff needs of its base only bytes that encoder and decoder turn into the same x0_e (Ma, Yang, Liu, ICML
2024, section 3: any end-to-end decoder D will do). Here::

    x --(8-bit, AVIF at quality q)--> AV1 bytes --(AV1 decode: normative integer arithmetic)--> x0_e
    condition_input = [x0_e, (q - 50) / 50]     what the conditioning network reads (4 channels)

The file carries the AV1 data as its one stream (:mod:`corrdiff.avif_container`: the AVIF boxes around it
are rebuilt from the header) and q as its quality record. Qualities are AVIF's own integer scale (0 worst,
100 lossless); a fractional quality is rounded (:meth:`AvifBase.check_quality`), so the rate search and the
file agree on the integer that was coded. Encoding settings (speed, chroma subsampling) are part of the
model's config and so of its fingerprint; decoding needs none of them.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from corrdiff import avif_container
from corrdiff.errors import BitstreamError
from corrdiff.registry import BASES

SUBSAMPLINGS = ("4:4:4", "4:2:0")
#: The quality the plane of :meth:`AvifBase.condition_input` is centred on, and its scale.
QUALITY_CENTRE = 50.0


def avif_available() -> bool:
    """Whether this Pillow reads and writes AVIF (Pillow 11.3 and later, built with libavif)."""
    from PIL import features

    return bool(features.check("avif"))


def to_uint8(x: Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) uint8 (rounded: an image read from 8 bits comes back exactly)."""
    return ((x[0].float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def from_uint8(array: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1]."""
    x = torch.from_numpy(np.array(array, copy=True)).to(device).permute(2, 0, 1)[None].float()
    return x / 127.5 - 1


def decode_avif(avif: bytes, width: int, height: int) -> np.ndarray:
    """The (H, W, 3) uint8 RGB image of an AVIF file whose size must be ``width`` x ``height``: its boxes are read
    and its size checked before any pixel is decoded; BitstreamError for anything libavif refuses."""
    if not avif_available():
        raise RuntimeError("this Pillow cannot read AVIF: install Pillow 11.3 or later (pip install -U pillow)")
    try:
        with Image.open(io.BytesIO(avif), formats=["AVIF"]) as image:
            if image.size != (width, height):
                raise BitstreamError(f"the AVIF image is {image.size[0]}x{image.size[1]}, "
                                     f"the header says {width}x{height}")
            image.load()
            rgb = image.convert("RGB")
    except BitstreamError:
        raise
    except Exception as exc:  # noqa: BLE001 - libavif reports a damaged file as OSError, SyntaxError, ValueError...
        raise BitstreamError(f"the AVIF data is invalid ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return np.asarray(rgb)


@BASES.register("avif")
class AvifBase:
    """AV1 intra coding as the base layer (see the module doc).

    Args:
        quality_range: [low, high] of the AVIF qualities (0-100) this model was trained for and codes at.
        default_quality: the quality of an encode that names none (default: the middle of the range).
        speed: libavif's encoder speed (0 slowest and best .. 10 fastest).
        subsampling: ``"4:4:4"`` (the default: about 6% more bytes than 4:2:0 for +0.3-0.4 dB, and no chroma
            upsampling filter in the decode) or ``"4:2:0"``.
    """

    streams = ("avif",)
    condition_channels = 4  # x0_e and the quality plane

    def __init__(self, quality_range: Sequence[float] = (0, 90), default_quality: float | None = None,
                 speed: int = 6, subsampling: str = "4:4:4"):
        low, high = (float(q) for q in quality_range)
        if not 0 <= low < high <= 100 or low != int(low) or high != int(high):
            raise ValueError(f"avif: quality_range must be two integers 0 <= low < high <= 100, got {quality_range}")
        if subsampling not in SUBSAMPLINGS:
            raise ValueError(f"avif: subsampling must be one of {SUBSAMPLINGS}, got {subsampling!r}")
        if not 0 <= int(speed) <= 10:
            raise ValueError(f"avif: speed must be in 0..10, got {speed}")
        self.quality_range = (low, high)
        self.default_quality = self.check_quality(round((low + high) / 2) if default_quality is None
                                                  else default_quality)
        self.speed, self.subsampling = int(speed), subsampling

    def check_quality(self, quality: float) -> float:
        """The integer AVIF quality an encode at ``quality`` uses; ValueError outside :attr:`quality_range`."""
        low, high = self.quality_range
        return self._integer_quality(quality, low, high)

    @staticmethod
    def _integer_quality(quality: float, low: float, high: float) -> float:
        if not (math.isfinite(quality) and low <= quality <= high):
            raise ValueError(f"quality must be in [{low:g}, {high:g}] (AVIF's scale), got {quality}")
        return float(round(quality))

    def encode_array(self, array: np.ndarray, quality: float) -> bytes:
        """The AVIF file of an (H, W, 3) uint8 image at ``quality`` (one encoder thread: the bytes do not
        depend on the machine's cores)."""
        if not avif_available():
            raise RuntimeError("this Pillow cannot write AVIF: install Pillow 11.3 or later (pip install -U pillow)")
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(array), "RGB").save(
            out, "AVIF", quality=int(self._integer_quality(quality, 0, 100)), speed=self.speed, subsampling=self.subsampling,
            max_threads=1, icc_profile=None, exif=None, xmp=None)
        return out.getvalue()

    def code(self, x: Tensor, quality: float) -> tuple[list[bytes], Tensor]:
        """(the base stream, x0_e) of one (1, 3, H, W) image in [-1, 1] at ``quality``; x0_e is the decode of the
        stream's bytes, exactly as :meth:`read` gives it."""
        array = to_uint8(x)
        height, width = array.shape[:2]
        stream = avif_container.pack(self.encode_array(array, quality), width, height)
        return [stream], self.read([stream], height, width, x.device)

    def read(self, streams: Sequence[bytes], height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
        """x0_e, (1, 3, H, W) in [-1, 1], of a file's base stream; BitstreamError for a damaged or foreign one."""
        if len(streams) != 1:
            raise BitstreamError(f"file has {len(streams)} streams, the AVIF base codes 1")
        avif = avif_container.unpack(streams[0], width, height)
        return from_uint8(decode_avif(avif, width, height), device)

    def condition_input(self, x0_e: Tensor, quality: Tensor) -> Tensor:
        """[x0_e, (q - 50) / 50]: the conditioning network's input, (B, 4, H, W)."""
        plane = ((quality.to(x0_e) - QUALITY_CENTRE) / QUALITY_CENTRE)[:, None, None, None]
        return torch.cat([x0_e, plane.expand(-1, 1, *x0_e.shape[-2:])], dim=1)


__all__ = ["AvifBase", "avif_available", "decode_avif", "from_uint8", "to_uint8"]
