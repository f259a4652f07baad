"""The ``.cdf`` file format (version 1): bytes in, bytes out; no model code here.

Layout (all integers little-endian; see docs/bitstream.md)::

    offset size  field
    0      4     magic b"CDIF"
    4      1     format version (1)
    5      1     mode: 0 corrected, 1 diffusion, 2 e2e
    6      8     model fingerprint (first 8 bytes of SHA-256 over config + weights)
    14     2     original height  (1 .. 65535)
    16     2     original width   (1 .. 65535)
    18     1     sampler name length n (1 .. 32), then n ASCII bytes
    .      2     steps (0 .. 1000; 0 only in e2e mode)
    .      4     eta (float32, 0 .. 1)
    .      4     seed (uint32)
    .      1     gamma groups G per step (1 scalar, 3 per channel)
    .      2*K   gammas, float16, K = steps * G in corrected mode, else 0
    .      1     number of entropy-coded streams S (1 .. 4), e.g. z and y
    .      4*S   stream lengths (uint32)
    .      ...   the streams' bytes, in order
    -4     4     CRC-32 of every byte before it

The reader checks the magic, the CRC, then every field against its bound before
allocating anything, and refuses trailing or missing bytes. Every failure raises
:class:`~corrdiff.errors.BitstreamError` with a message saying what is wrong.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

from corrdiff.errors import BitstreamError

MAGIC = b"CDIF"
VERSION = 1
MODES = ("corrected", "diffusion", "e2e")
FINGERPRINT_BYTES = 8
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28  # 268 Mpx: refuses absurd headers before any allocation
MAX_STEPS = 1000
MAX_GROUPS = 3
MAX_STREAMS = 4
MAX_SAMPLER_NAME = 32
_MIN_SIZE = 4 + 1 + 1 + FINGERPRINT_BYTES + 4 + 1 + 1 + 2 + 4 + 4 + 1 + 1 + 4


@dataclass(frozen=True)
class Bitstream:
    """Everything a ``.cdf`` file holds, decoded."""

    fingerprint: bytes
    height: int
    width: int
    mode: str
    sampler: str
    steps: int
    eta: float
    seed: int
    groups: int
    gammas: tuple[float, ...]
    streams: tuple[bytes, ...]

    def validate(self) -> None:
        """Raise BitstreamError unless every field is within the format's bounds."""
        _check(len(self.fingerprint) == FINGERPRINT_BYTES, "fingerprint must be 8 bytes")
        _check(1 <= self.height <= MAX_SIDE and 1 <= self.width <= MAX_SIDE,
               f"image size {self.height}x{self.width} outside 1..{MAX_SIDE}")
        _check(self.height * self.width <= MAX_PIXELS, f"image of {self.height * self.width} pixels exceeds {MAX_PIXELS}")
        _check(self.mode in MODES, f"unknown mode {self.mode!r}")
        _check(1 <= len(self.sampler) <= MAX_SAMPLER_NAME and self.sampler.isascii() and self.sampler.isprintable(),
               "sampler name must be 1..32 printable ASCII characters")
        _check(0 <= self.steps <= MAX_STEPS, f"steps {self.steps} outside 0..{MAX_STEPS}")
        _check(self.mode == "e2e" or self.steps >= 1, f"mode {self.mode} needs at least one step")
        _check(0.0 <= self.eta <= 1.0, f"eta {self.eta} outside [0, 1]")
        _check(0 <= self.seed < 2**32, "seed must fit in 32 bits")
        _check(1 <= self.groups <= MAX_GROUPS, f"gamma groups {self.groups} outside 1..{MAX_GROUPS}")
        _check(len(self.gammas) == self.gamma_count, f"{len(self.gammas)} gammas, expected {self.gamma_count}")
        _check(all(math.isfinite(g) for g in self.gammas), "gammas must be finite")
        _check(1 <= len(self.streams) <= MAX_STREAMS, f"{len(self.streams)} streams, expected 1..{MAX_STREAMS}")

    @property
    def gamma_count(self) -> int:
        return self.steps * self.groups if self.mode == "corrected" else 0


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise BitstreamError(message)


def pack(bs: Bitstream) -> bytes:
    """Serialise a :class:`Bitstream` (validated first)."""
    bs.validate()
    name = bs.sampler.encode("ascii")
    parts = [
        MAGIC,
        struct.pack("<BB", VERSION, MODES.index(bs.mode)),
        bs.fingerprint,
        struct.pack("<HHB", bs.height, bs.width, len(name)),
        name,
        struct.pack("<HfIB", bs.steps, bs.eta, bs.seed, bs.groups),
        struct.pack(f"<{len(bs.gammas)}e", *bs.gammas),
        struct.pack(f"<B{len(bs.streams)}I", len(bs.streams), *(len(s) for s in bs.streams)),
        *bs.streams,
    ]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes, end: int):
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise BitstreamError(f"file is truncated (while reading {what})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def unpack(data: bytes) -> Bitstream:
    """Parse and check a ``.cdf`` file; raises :class:`BitstreamError` on any defect."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise BitstreamError("not a corrdiff file (bad magic bytes)")
    if len(data) < _MIN_SIZE:
        raise BitstreamError(f"file is truncated ({len(data)} bytes; a valid file has at least {_MIN_SIZE})")
    version = data[4]
    if version != VERSION:
        raise BitstreamError(f"format version {version} is not supported (this corrdiff reads version {VERSION})")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise BitstreamError("checksum mismatch: the file is corrupted or truncated")

    r = _Reader(data, len(data) - 4)
    r.take(5, "magic and version")
    (mode_id,) = r.unpack("<B", "mode")
    _check(mode_id < len(MODES), f"unknown mode id {mode_id}")
    fingerprint = r.take(FINGERPRINT_BYTES, "fingerprint")
    height, width, name_len = r.unpack("<HHB", "image size")
    _check(1 <= name_len <= MAX_SAMPLER_NAME, f"sampler name length {name_len} outside 1..{MAX_SAMPLER_NAME}")
    try:
        sampler = r.take(name_len, "sampler name").decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("sampler name is not ASCII") from None
    steps, eta, seed, groups = r.unpack("<HfIB", "sampling parameters")
    _check(steps <= MAX_STEPS and 1 <= groups <= MAX_GROUPS, "sampling parameters out of range")
    n_gammas = steps * groups if MODES[mode_id] == "corrected" else 0
    gammas = r.unpack(f"<{n_gammas}e", "gammas")
    (n_streams,) = r.unpack("<B", "stream count")
    _check(1 <= n_streams <= MAX_STREAMS, f"{n_streams} streams, expected 1..{MAX_STREAMS}")
    lengths = r.unpack(f"<{n_streams}I", "stream lengths")
    _check(sum(lengths) == r.end - r.pos, "stream lengths do not match the file size")
    streams = tuple(r.take(n, "stream") for n in lengths)
    bs = Bitstream(fingerprint, height, width, MODES[mode_id], sampler, steps, eta, seed, groups, gammas, streams)
    bs.validate()
    return bs
