"""The ``.cdf`` file format (version 4; versions 1 to 3 are still read): bytes in, bytes out; no model code.

Layout of version 4 (all integers little-endian; see docs/bitstream.md)::

    offset size  field
    0      4     magic b"CDIF"
    4      1     format version (4)
    5      1     mode: 0 corrected, 1 diffusion, 2 e2e
    6      8     model fingerprint (first 8 bytes of SHA-256 over config + weights)
    14     2     original height  (1 .. 65535)
    16     2     original width   (1 .. 65535)
    18     1     flags: bit 0 = the source image was grayscale (decode to gray); other bits 0
    19     1     sampler name length n (1 .. 32), then n ASCII bytes
    .      2     steps (0 .. 1000; 0 only in e2e mode)
    .      1     number P of sampler parameters (0 .. 8)
    .      4*P   the sampler's recorded parameters (float32, finite), in the order the sampler declares
                 them (its ``recorded_params``, e.g. ddim: eta); the sampler checks their values
    .      4     seed (uint32)
    .      1     number R of header extension records (0 .. 16), then R records, each:
                 1 byte record id, 2 bytes length n (0 .. 1024), n bytes; ids strictly increasing.
                 Known ids (:data:`RECORDS`): 1 quality (float32, the rate of a variable-rate
                 model). An unknown id with bit 7 clear is skipped (a later field a decoder may
                 ignore); with bit 7 set it is refused (a field that changes the decode).
    .      ...   corrected mode only, for each step: 1 gamma code byte, then V float16 values
                 (code bits 0-1: 0 scalar [V = 1], 1 channel [V = 3], 2 tile, 3 tile with linear
                 interpolation [V = 1, the map's base, its median]; tiles only: bits 2-4 cell = 16 * 2^e
                 pixels, bits 5-7 quantiser q: residual step 2^-(q+1))
    .      ...   corrected mode with tile steps only: the cells' residuals, rows * cols per tile
                 step (rows = ceil(height / cell), cols likewise) in step order, row-major, each
                 a signed Exp-Golomb code (order 0, zigzag-mapped), most significant bit first,
                 zero-padded to a whole byte
    .      1     number of entropy-coded streams S (1 .. 16; 1 .. 4 before the channel prior), e.g. z and y
    .      4*S   stream lengths (uint32)
    .      ...   the streams' bytes, in order
    -4     4     CRC-32 of every byte before it

Version 3 (still read) had no extension records. Version 2 (still read) recorded exactly one sampler parameter, eta (float32 in [0, 1]), with no
count byte. Version 1 (still read) also had no flags byte and, instead of the per-step codes, one
byte of gamma groups G (1 scalar, 3 per channel, written in every mode) and steps * G float16
gammas in corrected mode.

The reader checks the magic, the CRC, then every field against its bound before
allocating anything, and refuses trailing or missing bytes. Every failure raises
:class:`~corrdiff.errors.BitstreamError` with a message saying what is wrong.
:func:`field_offsets` gives the byte offset of every header field of a valid file (the
fuzzer and the tests use it rather than hard-coding the layout).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

from corrdiff.errors import BitstreamError

MAGIC = b"CDIF"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
MODES = ("corrected", "diffusion", "e2e")
FINGERPRINT_BYTES = 8
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28  # 268 Mpx: refuses absurd headers before any allocation
MAX_STEPS = 1000
MAX_STREAMS = 16  # the z stream and up to 15 parts of y (a channel-conditional prior codes one per slice)
MAX_SAMPLER_NAME = 32
MAX_SAMPLER_PARAMS = 8
GAMMA_KINDS = ("scalar", "channel", "tile")
TILE_CELLS = tuple(16 << e for e in range(8))  # 16 .. 2048 pixels
MAX_QUANT = 7
MAX_RESIDUAL = 1 << 15  # |tile residual| bound: codes of at most 33 bits
MAX_TILE_GAMMAS = 1 << 20  # tile residuals per file (e.g. 16-pixel cells of a 4K image for 32 steps)
FLAG_GRAY = 1
MAX_RECORDS = 16
MAX_RECORD_BYTES = 1024
RECORD_QUALITY = 1
RECORD_CRITICAL = 0x80  # an unknown record id with this bit set makes the file unreadable
RECORDS = {RECORD_QUALITY: "quality"}  # id -> name of every record this version knows
_V1_MAX_GROUPS = 3
_MIN_SIZE = 4 + 1 + 1 + FINGERPRINT_BYTES + 4 + 1 + 1 + 2 + 4 + 4 + 1 + 4


@dataclass(frozen=True)
class DecodeMode:
    """What a mode means, the one place it is spelled out (docs/architecture.md): whether decoding runs the diffusion
    sampler (and so needs steps >= 1) and whether each step is corrected by transmitted gammas."""

    name: str
    samples: bool
    corrects: bool


DECODE_MODES = {
    "corrected": DecodeMode("corrected", samples=True, corrects=True),  # CorrDiff: x0_c at every step
    "diffusion": DecodeMode("diffusion", samples=True, corrects=False),  # gamma = 0: plain conditional diffusion
    "e2e": DecodeMode("e2e", samples=False, corrects=False),  # the end-to-end decoder's x0_e only
}
assert tuple(DECODE_MODES) == MODES  # the file's mode ids are MODES' indexes


def decode_mode(name: str) -> DecodeMode:
    """The :class:`DecodeMode` called ``name`` (ValueError for an unknown one)."""
    if name not in DECODE_MODES:
        raise ValueError(f"mode must be one of {MODES}, got {name!r}")
    return DECODE_MODES[name]


@dataclass(frozen=True)
class GammaStep:
    """One sampling step's gammas as the file carries them.

    ``values``: float16-representable floats (scalar 1, channel 3, tile 1: the map's base, the cells' median);
    tiles also have ``cell``, ``linear``, ``quant`` and ``residuals`` (one int per cell,
    row-major): cell gamma = values[0] + residual * 2^-(quant + 1).
    """

    kind: str
    values: tuple[float, ...] = ()
    cell: int = 0
    linear: bool = False
    quant: int = 0
    residuals: tuple[int, ...] = ()

    def value_count(self) -> int:
        return 3 if self.kind == "channel" else 1

    def residual_count(self, height: int, width: int) -> int:
        return tile_cells(self.cell, height, width) if self.kind == "tile" else 0

    def code(self) -> int:
        """The step's code byte (see the module docstring)."""
        if self.kind != "tile":
            return GAMMA_KINDS.index(self.kind)
        return (3 if self.linear else 2) | (TILE_CELLS.index(self.cell) << 2) | (self.quant << 5)

    @classmethod
    def from_code(cls, code: int) -> GammaStep:
        """An empty step of the kind a code byte names (BitstreamError for an invalid code)."""
        kind_id, cell_id, quant = code & 3, (code >> 2) & 7, code >> 5
        if kind_id < 2:
            _check(code < 4, f"gamma code {code}: scalar and channel steps have no tile fields")
            return cls(GAMMA_KINDS[kind_id])
        return cls("tile", cell=TILE_CELLS[cell_id], linear=kind_id == 3, quant=quant)

    def validate(self, height: int, width: int) -> None:
        _check(self.kind in GAMMA_KINDS, f"unknown gamma kind {self.kind!r}")
        _check(len(self.values) == self.value_count(), f"{self.kind} gamma step needs {self.value_count()} values")
        _check(all(math.isfinite(g) for g in self.values), "gammas must be finite")
        if self.kind == "tile":
            _check(self.cell in TILE_CELLS, f"tile cell {self.cell} not one of {TILE_CELLS}")
            _check(0 <= self.quant <= MAX_QUANT, f"tile quantiser {self.quant} outside 0..{MAX_QUANT}")
        else:
            _check(not (self.cell or self.linear or self.quant), f"a {self.kind} gamma step has no tile fields")
        _check(len(self.residuals) == self.residual_count(height, width),
               f"{len(self.residuals)} tile residuals, expected {self.residual_count(height, width)}")
        _check(all(abs(r) <= MAX_RESIDUAL for r in self.residuals), f"tile residual beyond +-{MAX_RESIDUAL}")


def tile_cells(cell: int, height: int, width: int) -> int:
    """rows * cols of a grid of ``cell``-pixel cells over the image."""
    return -(-height // cell) * -(-width // cell)


def step_bits(step: GammaStep) -> int:
    """Bits a step costs in the file: the code byte, its float16 values and its residual codes."""
    return 8 + 16 * len(step.values) + sum(_exp_golomb_length(r) for r in step.residuals)


@dataclass(frozen=True)
class Bitstream:
    """Everything a ``.cdf`` file holds, decoded."""

    fingerprint: bytes
    height: int
    width: int
    mode: str
    sampler: str
    steps: int
    sampler_params: tuple[float, ...]  # the sampler's recorded parameters, in its declared order
    seed: int
    gamma_steps: tuple[GammaStep, ...]
    streams: tuple[bytes, ...]
    gray: bool = False
    quality: float | None = None  # the rate of a variable-rate model (record 1); None: a fixed-rate model
    unknown_records: tuple[tuple[int, bytes], ...] = ()  # skippable records of a later version, kept as read
    version: int = field(default=VERSION, compare=False)

    def validate(self) -> None:
        """Raise BitstreamError unless every field is within the format's bounds."""
        _check(len(self.fingerprint) == FINGERPRINT_BYTES, "fingerprint must be 8 bytes")
        _check_size(self.height, self.width)
        _check(self.mode in MODES, f"unknown mode {self.mode!r}")
        _check(1 <= len(self.sampler) <= MAX_SAMPLER_NAME and self.sampler.isascii() and self.sampler.isprintable(),
               "sampler name must be 1..32 printable ASCII characters")
        _check(0 <= self.steps <= MAX_STEPS, f"steps {self.steps} outside 0..{MAX_STEPS}")
        mode = DECODE_MODES[self.mode]
        _check(not mode.samples or self.steps >= 1, f"mode {self.mode} needs at least one step")
        _check(len(self.sampler_params) <= MAX_SAMPLER_PARAMS, f"more than {MAX_SAMPLER_PARAMS} sampler parameters")
        _check(all(math.isfinite(p) for p in self.sampler_params), "sampler parameters must be finite")
        _check(all(_is_float32(p) for p in self.sampler_params), "sampler parameters must be float32 values")
        _check(0 <= self.seed < 2**32, "seed must fit in 32 bits")
        if self.quality is not None:
            _check(math.isfinite(self.quality) and _is_float32(self.quality), "quality must be a finite float32")
        ids = [i for i, _ in _records_of(self)]
        _check(len(ids) <= MAX_RECORDS, f"more than {MAX_RECORDS} header records")
        _check(ids == sorted(set(ids)), "header record ids must be unique")
        for record_id, value in self.unknown_records:
            _check(0 <= record_id < RECORD_CRITICAL and record_id not in RECORDS,
                   f"record {record_id} is not an unknown optional record")
            _check(len(value) <= MAX_RECORD_BYTES, f"header record {record_id} longer than {MAX_RECORD_BYTES} bytes")
        expected = self.steps if mode.corrects else 0
        _check(len(self.gamma_steps) == expected, f"{len(self.gamma_steps)} gamma steps, expected {expected}")
        _check(self._tile_gammas() <= MAX_TILE_GAMMAS, f"more than {MAX_TILE_GAMMAS} tile gammas")
        for step in self.gamma_steps:
            step.validate(self.height, self.width)
        _check(1 <= len(self.streams) <= MAX_STREAMS, f"{len(self.streams)} streams, expected 1..{MAX_STREAMS}")

    def _tile_gammas(self) -> int:
        return sum(s.residual_count(self.height, self.width) for s in self.gamma_steps)

    @property
    def gammas(self) -> tuple[float, ...]:
        """Every step's float16 values in order (the gammas themselves for scalar and channel steps)."""
        return tuple(g for step in self.gamma_steps for g in step.values)

    @property
    def granularities(self) -> tuple[str, ...]:
        """Each step's gamma kind, e.g. ("scalar", "tile", ...)."""
        return tuple(step.kind for step in self.gamma_steps)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise BitstreamError(message)


def to_float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as the file stores sampler parameters (OverflowError beyond)."""
    return struct.unpack("<f", struct.pack("<f", float(value)))[0]


def _is_float32(value: float) -> bool:
    try:
        return to_float32(value) == value
    except OverflowError:
        return False


def _check_size(height: int, width: int) -> None:
    _check(1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE, f"image size {height}x{width} outside 1..{MAX_SIDE}")
    _check(height * width <= MAX_PIXELS, f"image of {height * width} pixels exceeds {MAX_PIXELS}")


# ----------------------------------------------------------------------------- Exp-Golomb residuals
def _zigzag(value: int) -> int:
    return 2 * value if value >= 0 else -2 * value - 1


def _exp_golomb_length(value: int) -> int:
    return 2 * (_zigzag(value) + 1).bit_length() - 1


def _pack_residuals(residuals: list[int]) -> bytes:
    """Signed Exp-Golomb codes (order 0) of ``residuals``, MSB first, zero-padded to a byte."""
    bits = "".join("0" * ((_zigzag(r) + 1).bit_length() - 1) + format(_zigzag(r) + 1, "b") for r in residuals)
    if not bits:
        return b""
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def _unpack_residuals(data: bytes, start: int, end: int, count: int) -> tuple[list[int], int]:
    """``count`` residuals from ``data[start:end]``; returns them and the offset after their padding."""
    if count == 0:
        return [], start
    # every code is at least one bit: refuse before parsing a count the bytes cannot hold
    _check(count <= 8 * (end - start), "file is truncated (while reading tile residuals)")
    longest = 2 * (2 * MAX_RESIDUAL + 1).bit_length() - 1  # bits of the longest code
    available = data[start : min(end, start + -(-count * longest // 8))]  # not the streams behind them
    bits = format(int.from_bytes(available, "big"), "b").zfill(8 * len(available))
    max_zeros = (2 * MAX_RESIDUAL + 1).bit_length() - 1
    values, pos = [], 0
    for _ in range(count):
        one = bits.find("1", pos, pos + max_zeros + 1)
        _check(one >= 0, "tile residual code too long or truncated")
        zeros = one - pos
        _check(one + zeros + 1 <= len(bits), "file is truncated (while reading tile residuals)")
        code = int(bits[one : one + zeros + 1], 2) - 1
        values.append(code // 2 if code % 2 == 0 else -(code + 1) // 2)
        pos = one + zeros + 1
    used = -(-pos // 8)
    _check(bits[pos : 8 * used].count("1") == 0, "tile residual padding bits must be zero")
    _check(all(abs(v) <= MAX_RESIDUAL for v in values), f"tile residual beyond +-{MAX_RESIDUAL}")
    return values, start + used


# ----------------------------------------------------------------------------- writing
def pack(bs: Bitstream) -> bytes:
    """Serialise a :class:`Bitstream` (validated first) in the current version."""
    bs.validate()
    name = bs.sampler.encode("ascii")
    parts = [
        MAGIC,
        struct.pack("<BB", VERSION, MODES.index(bs.mode)),
        bs.fingerprint,
        struct.pack("<HHBB", bs.height, bs.width, FLAG_GRAY if bs.gray else 0, len(name)),
        name,
        struct.pack(f"<HB{len(bs.sampler_params)}fI", bs.steps, len(bs.sampler_params), *bs.sampler_params, bs.seed),
        _pack_records(_records_of(bs)),
    ]
    for step in bs.gamma_steps:
        parts.append(struct.pack(f"<B{len(step.values)}e", step.code(), *step.values))
    parts.append(_pack_residuals([r for step in bs.gamma_steps for r in step.residuals]))
    parts += [struct.pack(f"<B{len(bs.streams)}I", len(bs.streams), *(len(s) for s in bs.streams)), *bs.streams]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def _records_of(bs: Bitstream) -> list[tuple[int, bytes]]:
    """The extension records of ``bs`` (its known fields and the unknown ones it was read with), in id order."""
    known = [(RECORD_QUALITY, struct.pack("<f", bs.quality))] if bs.quality is not None else []
    return sorted(known + [(i, bytes(v)) for i, v in bs.unknown_records], key=lambda record: record[0])


def _pack_records(records: list[tuple[int, bytes]]) -> bytes:
    return struct.pack("<B", len(records)) + b"".join(struct.pack("<BH", i, len(v)) + v for i, v in records)


# ----------------------------------------------------------------------------- reading
class _Reader:
    def __init__(self, data: bytes, end: int):
        self.data, self.pos, self.end = data, 0, end
        self.offsets: dict[str, int] = {}

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise BitstreamError(f"file is truncated (while reading {what})")
        self.offsets.setdefault(what, self.pos)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def _parse(data: bytes) -> tuple[Bitstream, dict[str, int]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:  # an interrupted copy or download, a file created by mistake: not "bad magic bytes"
        raise BitstreamError(f"empty file (0 bytes; a corrdiff file has at least {_MIN_SIZE})")
    if not data.startswith(MAGIC):
        raise BitstreamError("not a corrdiff file (bad magic bytes)")
    if len(data) < _MIN_SIZE:
        raise BitstreamError(f"file is truncated ({len(data)} bytes; a valid file has at least {_MIN_SIZE})")
    version = data[4]
    if version not in READABLE_VERSIONS:
        raise BitstreamError(
            f"format version {version} is not supported (this corrdiff reads versions {READABLE_VERSIONS})")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise BitstreamError("checksum mismatch: the file is corrupted or truncated")

    r = _Reader(data, len(data) - 4)
    r.take(5, "magic and version")
    (mode_id,) = r.unpack("<B", "mode")
    _check(mode_id < len(MODES), f"unknown mode id {mode_id}")
    mode = MODES[mode_id]
    fingerprint = r.take(FINGERPRINT_BYTES, "fingerprint")
    height, width = r.unpack("<HH", "image size")
    flags = r.unpack("<B", "flags")[0] if version >= 2 else 0
    _check(flags & ~FLAG_GRAY == 0, f"unknown flags {flags:#x}")
    (name_len,) = r.unpack("<B", "sampler name length")
    _check(1 <= name_len <= MAX_SAMPLER_NAME, f"sampler name length {name_len} outside 1..{MAX_SAMPLER_NAME}")
    try:
        sampler = r.take(name_len, "sampler name").decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("sampler name is not ASCII") from None
    (steps,) = r.unpack("<H", "steps")
    _check(steps <= MAX_STEPS, f"steps {steps} outside 0..{MAX_STEPS}")
    sampler_params = _read_sampler_params(r, version)
    (seed,) = r.unpack("<I", "seed")
    records = _read_records(r) if version >= 4 else {}
    _check_size(height, width)  # before the tile grids are sized from it
    gamma_steps = (_read_v1_gammas if version == 1 else _read_gamma_steps)(r, mode, steps, height, width)
    (n_streams,) = r.unpack("<B", "stream count")
    _check(1 <= n_streams <= MAX_STREAMS, f"{n_streams} streams, expected 1..{MAX_STREAMS}")
    lengths = r.unpack(f"<{n_streams}I", "stream lengths")
    _check(sum(lengths) == r.end - r.pos, "stream lengths do not match the file size")
    r.offsets["streams"] = r.pos
    streams = tuple(r.take(n, "stream") for n in lengths)
    bs = Bitstream(fingerprint, height, width, mode, sampler, steps, sampler_params, seed, gamma_steps, streams,
                   gray=bool(flags & FLAG_GRAY), quality=_read_quality(records),
                   unknown_records=tuple((i, v) for i, v in records.items() if i not in RECORDS), version=version)
    bs.validate()
    return bs, r.offsets


def _read_sampler_params(r: _Reader, version: int) -> tuple[float, ...]:
    """Version 3: a count and that many float32; versions 1 and 2: eta alone, a float32 in [0, 1]."""
    if version < 3:
        (eta,) = r.unpack("<f", "sampler parameters")
        _check(0.0 <= eta <= 1.0, f"eta {eta} outside [0, 1]")
        return (eta,)
    (count,) = r.unpack("<B", "sampler parameter count")
    _check(count <= MAX_SAMPLER_PARAMS, f"{count} sampler parameters, at most {MAX_SAMPLER_PARAMS}")
    return r.unpack(f"<{count}f", "sampler parameters")


def _read_records(r: _Reader) -> dict[int, bytes]:
    """Version 4's extension records by id (the known ones and the skippable unknown ones); BitstreamError for a
    count, length or order out of bounds, or an unknown critical record."""
    (count,) = r.unpack("<B", "record count")
    _check(count <= MAX_RECORDS, f"{count} header records, at most {MAX_RECORDS}")
    records: dict[int, bytes] = {}
    last = -1
    for _ in range(count):
        record_id, length = r.unpack("<BH", "record header")
        _check(record_id > last, f"header record {record_id} out of order or repeated (ids must increase)")
        _check(length <= MAX_RECORD_BYTES, f"header record {record_id} of {length} bytes, at most {MAX_RECORD_BYTES}")
        records[record_id] = r.take(length, "record")
        last = record_id
        _check(record_id in RECORDS or not record_id & RECORD_CRITICAL,
               f"header record {record_id} is unknown to this corrdiff and changes the decode: "
               "a newer corrdiff wrote this file")
    return records


def _read_quality(records: dict[int, bytes]) -> float | None:
    if RECORD_QUALITY not in records:
        return None
    value = records[RECORD_QUALITY]
    _check(len(value) == 4, f"quality record of {len(value)} bytes, expected 4")
    (quality,) = struct.unpack("<f", value)
    _check(math.isfinite(quality), "quality must be finite")
    return quality


def _read_v1_gammas(r: _Reader, mode: str, steps: int, height: int, width: int) -> tuple[GammaStep, ...]:
    (groups,) = r.unpack("<B", "gamma groups")
    _check(groups in (1, _V1_MAX_GROUPS), f"gamma groups {groups} not 1 or {_V1_MAX_GROUPS}")
    if not DECODE_MODES[mode].corrects:
        return ()
    gammas = r.unpack(f"<{steps * groups}e", "gammas")
    kind = "scalar" if groups == 1 else "channel"
    return tuple(GammaStep(kind, tuple(gammas[i * groups : (i + 1) * groups])) for i in range(steps))


def _read_gamma_steps(r: _Reader, mode: str, steps: int, height: int, width: int) -> tuple[GammaStep, ...]:
    if not DECODE_MODES[mode].corrects:
        return ()
    heads = []
    for _ in range(steps):
        (code,) = r.unpack("<B", "gamma code")
        head = GammaStep.from_code(code)
        values = r.unpack(f"<{head.value_count()}e", "gammas")
        heads.append((head, values))
    counts = [head.residual_count(height, width) for head, _ in heads]
    _check(sum(counts) <= MAX_TILE_GAMMAS, f"more than {MAX_TILE_GAMMAS} tile gammas")
    r.offsets.setdefault("tile residuals", r.pos)
    residuals, r.pos = _unpack_residuals(r.data, r.pos, r.end, sum(counts))
    out, start = [], 0
    for (head, values), count in zip(heads, counts):
        out.append(GammaStep(head.kind, tuple(values), head.cell, head.linear, head.quant,
                             tuple(residuals[start : start + count])))
        start += count
    return tuple(out)


def unpack(data: bytes) -> Bitstream:
    """Parse and check a ``.cdf`` file (version 1 to 4); raises :class:`BitstreamError` on any defect."""
    return _parse(data)[0]


def field_offsets(data: bytes) -> dict[str, int]:
    """Byte offset of each field of a valid file, by the names the reader uses (``mode``,
    ``image size``, ``flags``, ``sampler name length``, ``steps``, ``sampler parameter count`` (version 3),
    ``sampler parameters``, ``seed``, ``record count`` (version 4), ``record header``, ``record``, ``gamma code``
    (the first step's), ``gammas``, ``stream count``, ``streams``, ...)."""
    return _parse(data)[1]
