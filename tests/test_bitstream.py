"""The .cdf container (corrdiff.bitstream): round trips and a reader that refuses anything odd.

These tests need no model: the container knows bytes, not networks.
"""

from __future__ import annotations

import dataclasses
import io
import random
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corrdiff
from corrdiff import bitstream as B
from corrdiff.bitstream import Bitstream, GammaStep, field_offsets, pack, step_bits, unpack
from corrdiff.errors import BitstreamError


def scalars(*gammas: float) -> tuple[GammaStep, ...]:
    return tuple(GammaStep("scalar", (g,)) for g in gammas)


def tile(cell: int, residuals, base: float = 0.5, linear: bool = False, quant: int = 3) -> GammaStep:
    return GammaStep("tile", (base,), cell=cell, linear=linear, quant=quant, residuals=tuple(residuals))


def make_bs(**changes) -> Bitstream:
    bs = Bitstream(
        fingerprint=bytes(range(8)), height=67, width=131, mode="corrected", sampler="ddim", steps=8, sampler_params=(0.0,),
        seed=1234, gamma_steps=scalars(*(1.0 - i / 16 for i in range(8))), streams=(b"zz" * 5, b"y" * 37),
    )
    return dataclasses.replace(bs, **changes)


VALID = pack(make_bs())


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def header(*, mode=0, height=67, width=131, name=b"ddim", steps=8, eta=0.0, seed=0, groups=1,
           gammas=None, streams=(b"ab", b"cde"), version=1, magic=B.MAGIC, fingerprint=b"\0" * 8) -> bytes:
    """Hand-built file of format version 1 (independent of pack()) with a correct CRC."""
    if gammas is None:
        gammas = [0.5] * (steps * groups if mode == 0 else 0)
    body = (
        magic + struct.pack("<BB", version, mode) + fingerprint + struct.pack("<HHB", height, width, len(name)) + name
        + struct.pack("<HfIB", steps, eta, seed, groups) + struct.pack(f"<{len(gammas)}e", *gammas)
        + struct.pack(f"<B{len(streams)}I", len(streams), *map(len, streams)) + b"".join(streams)
    )
    return with_crc(body)


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"mode": "diffusion", "gamma_steps": ()},
        {"mode": "e2e", "steps": 0, "gamma_steps": ()},
        {"steps": 2, "gamma_steps": (GammaStep("channel", (0.5, -1.25, 65504.0)), GammaStep("channel", (-65504.0, -0.0, 2.0**-10)))},
        {"sampler": "ddpm", "sampler_params": (1.0,), "seed": 2**32 - 1},
        {"sampler": "plain", "sampler_params": ()},
        {"sampler": "dpm", "sampler_params": (0.5, 2.0, -3.0, 2.0**100, -0.0, 7.0, 8.0, 9.0)},
        {"height": 1, "width": 1, "streams": (b"",)},
        {"height": 65535, "width": 4096, "streams": tuple(bytes([97 + k]) for k in range(B.MAX_STREAMS))},
        {"sampler": "x" * 32, "steps": 1000, "gamma_steps": scalars(*[0.25] * 1000)},
        {"steps": 3, "gamma_steps": (tile(64, [0, -1, 1, 2, -2, 7]), GammaStep("scalar", (0.75,)),
                                     tile(16, range(-20, 25), linear=True, quant=7))},
        {"steps": 1, "gamma_steps": (tile(2048, [B.MAX_RESIDUAL], base=-3.0, quant=0),)},
        {"gray": True},
        {"quality": 2.625},
        {"quality": -2.0**100, "mode": "e2e", "steps": 0, "gamma_steps": ()},
    ],
    ids=["default", "diffusion", "e2e", "channel", "ddpm", "no-sampler-params", "8-sampler-params", "1x1", "maxside", "maxsteps", "tiles", "max-residual",
         "gray", "quality", "quality-e2e"],
)
def test_pack_unpack_round_trip(changes):
    bs = make_bs(**changes)
    data = pack(bs)
    back = unpack(data)
    assert back == bs
    assert pack(back) == data
    assert data.startswith(b"CDIF" + bytes([B.VERSION]))
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])


def test_layout_matches_the_documented_offsets():
    bs = make_bs(gray=True)
    data = pack(bs)
    assert data[:4] == b"CDIF" and data[4] == 4 and data[5] == 0
    assert data[6:14] == bs.fingerprint
    assert struct.unpack_from("<HHBB", data, 14) == (67, 131, 1, 4)  # size, flags (gray), sampler name length
    assert data[20:24] == b"ddim"
    assert struct.unpack_from("<HBfI", data, 24) == (8, 1, 0.0, 1234)  # steps, 1 sampler parameter (eta), seed
    assert data[35] == 0  # no extension records
    for i in range(8):  # per step: code byte 0 (scalar), then its float16 gamma
        assert struct.unpack_from("<Be", data, 36 + 3 * i) == (0, bs.gammas[i])
    assert struct.unpack_from("<BII", data, 60) == (2, 10, 37)
    assert data[69:-4] == b"zz" * 5 + b"y" * 37
    assert len(data) == 69 + 47 + 4
    offsets = field_offsets(data)
    assert [offsets[f] for f in ("flags", "steps", "sampler parameter count", "sampler parameters", "seed",
                                 "record count", "gamma code", "stream count", "streams")] == [
        18, 24, 26, 27, 31, 35, 36, 60, 69]


def test_quality_record_layout():
    """The quality is record 1: id byte, uint16 length 4, float32; it adds 7 bytes to the count byte."""
    plain, rated = pack(make_bs()), pack(make_bs(quality=2.5))
    assert len(rated) == len(plain) + 7
    assert struct.unpack_from("<BBHf", rated, 35) == (1, B.RECORD_QUALITY, 4, 2.5)
    assert field_offsets(rated)["record"] == 39 and field_offsets(rated)["gamma code"] == 43


def _with_records(records: list[tuple[int, bytes]], bs=None) -> bytes:
    """A valid v4 file whose extension block is ``records`` (id, value) as given (order not checked here)."""
    data = pack(bs or make_bs())
    at = field_offsets(data)["record count"]
    block = struct.pack("<B", len(records)) + b"".join(struct.pack("<BH", i, len(v)) + v for i, v in records)
    return with_crc(data[:at] + block + data[at + 1 : -4])


def test_unknown_optional_records_are_skipped_and_unknown_critical_ones_refused():
    later = _with_records([(5, b"later field"), (127, b"")])
    bs = unpack(later)
    assert bs.unknown_records == ((5, b"later field"), (127, b"")) and pack(bs) == later  # kept as read
    assert dataclasses.replace(bs, unknown_records=()) == make_bs()
    assert unpack(_with_records([(1, struct.pack("<f", 3.0)), (9, b"x" * 1024)])).quality == 3.0
    with pytest.raises(BitstreamError, match="record 128 is unknown .* changes the decode"):
        unpack(_with_records([(128, b"")]))


def test_record_zero_is_an_optional_record_like_any_other():
    """Record ids run from 0 (strictly increasing): a later version's record 0 is skipped and kept."""
    data = _with_records([(0, b"first"), (1, struct.pack("<f", 2.5))])
    bs = unpack(data)
    assert bs.unknown_records == ((0, b"first"),) and bs.quality == 2.5 and pack(bs) == data


@pytest.mark.parametrize("record_id", [B.RECORD_CRITICAL, 255, B.RECORD_QUALITY])
def test_a_header_cannot_carry_a_critical_or_known_record_as_unknown(record_id):
    """The writer's side of the refusal: only ids 0..127 that this version does not know are kept as read."""
    with pytest.raises(BitstreamError, match=f"record {record_id} is not an unknown optional record"):
        pack(make_bs(unknown_records=((record_id, b""),)))


@pytest.mark.parametrize("records, message", [
    ([(3, b""), (2, b"")], "out of order"),
    ([(1, struct.pack("<f", 1.0)), (1, struct.pack("<f", 2.0))], "out of order or repeated"),
    ([(9, b"x" * 1025)], "at most 1024"),
    ([(1, b"abc")], "quality record of 3 bytes"),
    ([(1, struct.pack("<f", float("nan")))], "quality must be finite"),
    ([(i, b"") for i in range(17)], "17 header records"),
])
def test_bad_records_are_refused(records, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(_with_records(records))


def test_version_3_files_have_no_record_block():
    """Version 3 is version 4 without the record count (and so without a quality)."""
    v4 = pack(make_bs())
    at = field_offsets(v4)["record count"]
    v3 = bytearray(v4[:-4])
    v3[4] = 3
    del v3[at]
    bs = unpack(with_crc(bytes(v3)))
    assert bs.version == 3 and bs == make_bs() and bs.quality is None


def test_tile_step_layout_code_byte_values_and_exp_golomb_residuals():
    # 67x131 with 64-pixel cells: 2 x 3 cells; residuals 0, -1, 1, 2, -2, 3 -> zigzag 0, 1, 2, 4, 3, 6
    # -> Exp-Golomb "1" "010" "011" "00101" "00100" "00111" = 22 bits, padded to 3 bytes
    step = tile(64, [0, -1, 1, 2, -2, 3], base=0.5, linear=True, quant=5)
    data = pack(make_bs(steps=1, gamma_steps=(step,)))
    code = 3 | (B.TILE_CELLS.index(64) << 2) | (5 << 5)
    assert struct.unpack_from("<Be", data, 36) == (code, 0.5)
    assert data[39:42] == int("1" "010" "011" "00101" "00100" "00111" "00", 2).to_bytes(3, "big")
    assert field_offsets(data)["tile residuals"] == 39
    assert step_bits(step) == 8 + 16 + 22


def test_gamma_payload_is_16_bits_per_scalar_plus_a_code_byte_per_step():
    base = len(pack(make_bs(steps=4, gamma_steps=scalars(0.5, 0.5, 0.5, 0.5))))
    assert len(pack(make_bs(steps=8, gamma_steps=scalars(*[0.5] * 8)))) - base == 4 * 3
    channel = (GammaStep("channel", (0.5, 0.5, 0.5)),) * 4
    assert len(pack(make_bs(steps=4, gamma_steps=channel))) - base == 4 * 2 * 2
    assert len(pack(make_bs(mode="diffusion", steps=8, gamma_steps=()))) == base - 4 * 3
    assert all(step_bits(s) == 24 for s in scalars(0.5, 1.0))


def test_gammas_are_stored_as_float16():
    data = pack(make_bs(steps=1, gamma_steps=scalars(0.1)))
    assert unpack(data).gammas == (struct.unpack("<e", struct.pack("<e", 0.1))[0],)


@given(st.lists(st.integers(-B.MAX_RESIDUAL, B.MAX_RESIDUAL), min_size=1, max_size=60))
@settings(max_examples=60, deadline=None)
def test_residuals_round_trip_and_cost_what_step_bits_says(residuals):
    cols = len(residuals)
    bs = make_bs(height=16, width=16 * cols, steps=1, gamma_steps=(tile(16, residuals),))
    data = pack(bs)
    assert unpack(data) == bs
    scalar = pack(make_bs(height=16, width=16 * cols, steps=1, gamma_steps=scalars(0.5)))
    assert len(data) - len(scalar) == -(-(step_bits(bs.gamma_steps[0]) - 24) // 8)


def test_version_1_files_are_read():
    """A file of the first format (one gamma-groups byte, float16 gammas) decodes as scalar or channel steps."""
    bs = unpack(header(seed=5, gammas=[0.25 * i for i in range(8)]))
    assert bs.version == 1 and bs.gamma_steps == scalars(*(0.25 * i for i in range(8))) and not bs.gray
    channel = unpack(header(steps=2, groups=3, gammas=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    assert channel.gamma_steps == (GammaStep("channel", (1.0, 2.0, 3.0)), GammaStep("channel", (4.0, 5.0, 6.0)))
    assert unpack(header(mode=2, steps=0, groups=3)).gamma_steps == ()
    # re-packed, it is the same content in the current version
    assert unpack(pack(bs)) == bs and pack(bs)[4] == B.VERSION


def test_version_2_files_are_read_with_eta_as_their_one_sampler_parameter():
    """Version 2 is version 3 without the parameter count: eta alone, a float32 in [0, 1]."""
    for eta in (0.0, 0.25, 1.0):
        v3 = pack(make_bs(sampler_params=(eta,), steps=1, gamma_steps=(tile(64, [0, 1, -1, 2, 0, 0]),)))
        offsets = field_offsets(v3)
        count = offsets["sampler parameter count"]
        v2 = bytearray(v3[:-4])
        v2[4] = 2
        del v2[offsets["record count"]]  # (written by version 4: not in version 2)
        del v2[count]
        bs = unpack(with_crc(bytes(v2)))
        assert bs.version == 2 and bs.sampler_params == (eta,) and bs == unpack(v3)
    v2[count : count + 4] = struct.pack("<f", 1.5)
    with pytest.raises(BitstreamError, match="eta 1.5 outside"):
        unpack(with_crc(bytes(v2)))


# --------------------------------------------------------------------------- pack() validates too
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"fingerprint": b"short"}, "fingerprint"),
        ({"height": 0}, "image size"),
        ({"width": 65536}, "image size"),
        ({"height": 65535, "width": 65535}, "exceeds"),
        ({"mode": "lossless"}, "mode"),
        ({"sampler": ""}, "sampler"),
        ({"sampler": "d\u00fcm"}, "sampler"),
        ({"sampler": "a\nb"}, "sampler"),
        ({"steps": 1001}, "steps"),
        ({"steps": 0, "gamma_steps": ()}, "at least one step"),
        ({"sampler_params": (0.0,) * 9}, "more than 8 sampler parameters"),
        ({"sampler_params": (float("nan"),)}, "sampler parameters must be finite"),
        ({"sampler_params": (0.0, float("inf"))}, "sampler parameters must be finite"),
        ({"sampler_params": (0.1,)}, "float32"),
        ({"sampler_params": (1e39,)}, "float32"),
        ({"seed": 2**32}, "seed"),
        ({"gamma_steps": scalars(*[0.5] * 7)}, "7 gamma steps"),
        ({"gamma_steps": scalars(*[float("inf")] * 8)}, "finite"),
        ({"mode": "diffusion"}, "expected 0"),
        ({"steps": 1, "gamma_steps": (GammaStep("channel", (0.5,)),)}, "needs 3 values"),
        ({"steps": 1, "gamma_steps": (tile(64, [0] * 5),)}, "5 tile residuals, expected 6"),
        ({"steps": 1, "gamma_steps": (tile(48, [0] * 6),)}, "tile cell"),
        ({"steps": 1, "gamma_steps": (tile(64, [0] * 5 + [B.MAX_RESIDUAL + 1]),)}, "beyond"),
        ({"steps": 1, "gamma_steps": (tile(64, [0] * 6, quant=8),)}, "quantiser"),
        ({"steps": 1, "gamma_steps": (GammaStep("scalar", (0.5,), quant=2),)}, "no tile fields"),
        ({"steps": 17, "height": 4096, "width": 4096, "gamma_steps": (tile(16, [0] * 65536),) * 17}, "tile gammas"),
        ({"streams": ()}, "streams"),
        ({"streams": (b"",) * (B.MAX_STREAMS + 1)}, "streams"),
    ],
)
def test_pack_refuses_out_of_bounds_fields(changes, message):
    with pytest.raises(BitstreamError, match=message):
        pack(make_bs(**changes))


# --------------------------------------------------------------------------- damaged files
def test_every_truncation_raises():
    for n in range(len(VALID)):
        with pytest.raises(BitstreamError):
            unpack(VALID[:n])


def test_trailing_bytes_raise():
    with pytest.raises(BitstreamError):
        unpack(VALID + b"\0")
    # even with a recomputed CRC the stream lengths no longer add up
    with pytest.raises(BitstreamError, match="stream lengths"):
        unpack(with_crc(VALID[:-4] + b"\0"))


def test_every_single_bit_flip_raises():
    for i in range(len(VALID)):
        for bit in range(8):
            corrupted = bytearray(VALID)
            corrupted[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                unpack(bytes(corrupted))


def test_checksum_mismatch_is_reported_as_such():
    corrupted = bytearray(VALID)
    corrupted[len(VALID) // 2] ^= 0x10
    with pytest.raises(BitstreamError, match="checksum"):
        unpack(bytes(corrupted))


def _png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [b"", b"C", b"CDIF", b"CDIF\x01", _png_bytes(), b"\x00" * 200, random.Random(0).randbytes(300),
     b"CDIF" + random.Random(1).randbytes(100)],
    ids=["empty", "one-byte", "magic-only", "magic-version", "png", "zeros", "random", "magic+random"],
)
def test_foreign_data_raises(data):
    with pytest.raises(BitstreamError):
        unpack(data)


@pytest.mark.parametrize("data", [None, "CDIF", 12, [1, 2]])
def test_non_bytes_input_raises(data):
    with pytest.raises(BitstreamError, match="expected bytes"):
        unpack(data)


def test_accepts_bytearray_and_memoryview():
    assert unpack(bytearray(VALID)) == unpack(memoryview(VALID)) == make_bs()


@pytest.mark.parametrize("version", [0, 5, 255])
def test_unsupported_version_raises_even_with_valid_crc(version):
    with pytest.raises(BitstreamError, match=f"version {version}"):
        unpack(header(version=version))


def test_hand_built_header_is_accepted():
    bs = unpack(header())
    assert (bs.height, bs.width, bs.mode, bs.sampler, bs.steps, bs.granularities) == (
        67, 131, "corrected", "ddim", 8, ("scalar",) * 8)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"height": 65535, "width": 65535}, "exceeds"),  # 4.3 Gpx: refused before any allocation
        ({"height": 0}, "image size"),
        ({"width": 0}, "image size"),
        ({"mode": 3}, "mode id"),
        ({"mode": 255}, "mode id"),
        ({"name": b""}, "sampler name length"),
        ({"name": b"x" * 33}, "sampler name length"),
        ({"name": b"dd\xffm"}, "ASCII"),
        ({"name": b"dd\x00m"}, "printable"),
        ({"steps": 1001, "gammas": []}, "steps 1001"),
        ({"steps": 65535, "gammas": []}, "steps 65535"),
        ({"groups": 0, "gammas": []}, "gamma groups"),
        ({"groups": 4, "gammas": [0.0] * 32}, "gamma groups"),
        ({"steps": 0, "gammas": []}, "at least one step"),
        ({"eta": -0.5}, "eta"),
        ({"eta": float("nan")}, "eta"),
        ({"eta": float("inf")}, "eta"),
        ({"gammas": [float("nan")] * 8}, "finite"),
        ({"gammas": [float("inf")] + [0.0] * 7}, "finite"),
        ({"streams": ()}, "streams"),
        ({"streams": (b"",) * (B.MAX_STREAMS + 1)}, "streams"),
        ({"streams": (b"",) * 255}, "streams"),
    ],
)
def test_absurd_header_fields_refused_with_valid_crc(fields, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(header(**fields))


def _body(**changes) -> bytearray:
    return bytearray(pack(make_bs(**changes))[:-4])


GAMMA_CODE = field_offsets(VALID)["gamma code"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b.__setitem__(18, 2), "unknown flags"),
        (lambda b: b.__setitem__(GAMMA_CODE, 0b100), "no tile fields"),  # a scalar code with tile bits
        (lambda b: b.__setitem__(GAMMA_CODE, 5), "no tile fields"),
        (lambda b: b.__setitem__(field_offsets(VALID)["sampler parameter count"], 9), "9 sampler parameters"),
        (lambda b: b.__setitem__(slice(27, 31), struct.pack("<f", float("nan"))), "finite"),
    ],
    ids=["flags", "scalar-with-cell", "scalar-with-bit-2", "9-sampler-params", "nan-sampler-param"],
)
def test_forged_fields_refused_with_valid_crc(edit, message):
    body = _body()
    edit(body)
    with pytest.raises(BitstreamError, match=message):
        unpack(with_crc(bytes(body)))


def test_forged_residuals_refused_with_valid_crc():
    data = pack(make_bs(steps=1, gamma_steps=(tile(64, [0] * 6),)))  # six "1" bits, then 2 padding bits
    at = field_offsets(data)["tile residuals"]
    body = bytearray(data[:-4])
    body[at] = 0b11111101  # a padding bit set
    with pytest.raises(BitstreamError, match="padding"):
        unpack(with_crc(bytes(body)))
    body[at] = 0  # 8 zeros and then 0b00000000...: a code longer than any residual needs
    with pytest.raises(BitstreamError, match="too long|truncated"):
        unpack(with_crc(bytes(body)))
    # a header naming more residuals than the bytes can hold: refused before parsing them
    huge = pack(make_bs(height=2048, width=2048, steps=1, gamma_steps=(tile(16, [0] * 16384),)))
    cut = field_offsets(huge)["tile residuals"] + 10
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(with_crc(huge[:cut] + huge[-4 - 9 - 47 : -4]))


def test_huge_stream_length_is_refused_without_allocation():
    body = header()[:-4]
    # rewrite the first stream length as 4 GiB - 1 and fix the CRC
    at = len(body) - 5 - 9
    assert struct.unpack_from("<BII", body, at) == (2, 2, 3)
    forged = body[:at] + struct.pack("<BII", 2, 2**32 - 1, 3) + body[at + 9 :]
    with pytest.raises(BitstreamError, match="stream lengths"):
        unpack(with_crc(forged))


def test_bitstream_error_is_a_documented_value_error():
    assert issubclass(BitstreamError, corrdiff.CorrDiffError)
    assert issubclass(BitstreamError, ValueError)
    assert issubclass(corrdiff.ModelMismatchError, BitstreamError)


# --------------------------------------------------------------------------- fuzzing
def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None, fix_crc: bool) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    if cut is not None:
        buf = buf[: cut % (len(buf) + 1)]
    out = bytes(buf)
    if fix_crc and len(out) >= 4:
        out = with_crc(out[:-4])
    return out


_edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6)
_inputs = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: B.MAGIC + b),
    st.binary(max_size=200).map(lambda b: with_crc(B.MAGIC + b"\x01" + b)),
    st.binary(max_size=200).map(lambda b: with_crc(B.MAGIC + b"\x02" + b)),
    st.binary(max_size=200).map(lambda b: with_crc(B.MAGIC + b"\x03" + b)),
    st.binary(max_size=200).map(lambda b: with_crc(B.MAGIC + b"\x04" + b)),
    st.builds(_mutate, st.just(VALID), _edits, st.none() | st.integers(0, 10_000), st.booleans()),
    st.builds(_mutate, st.just(pack(make_bs(steps=2, gamma_steps=(tile(32, range(15)), tile(64, [1] * 6))))),
              _edits, st.none() | st.integers(0, 10_000), st.booleans()),
    st.builds(_mutate, st.just(pack(make_bs(quality=3.5, unknown_records=((7, b"abc"),)))),
              _edits, st.none() | st.integers(0, 10_000), st.booleans()),
    st.builds(_mutate, st.just(header()), _edits, st.none() | st.integers(0, 10_000), st.booleans()),
    st.builds(_mutate, st.just(header(mode=2, steps=0)), _edits, st.none() | st.integers(0, 10_000), st.booleans()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_inputs)
def test_fuzzed_bytes_only_ever_raise_bitstream_error(data):
    try:
        bs = unpack(data)
    except BitstreamError:
        return
    # whatever the reader accepts is a canonical, valid file (of its version: pack() writes the current one)
    bs.validate()
    assert unpack(pack(bs)) == bs
    if bs.version == B.VERSION:
        assert pack(bs) == data


def test_decode_modes_say_what_they_mean():
    """One place says what a mode means (issue 14, item 4); the file's mode ids follow MODES."""
    assert [(m.samples, m.corrects) for m in B.DECODE_MODES.values()] == [(True, True), (True, False), (False, False)]
    assert tuple(B.DECODE_MODES) == B.MODES
    with pytest.raises(ValueError, match="mode must be one of"):
        B.decode_mode("lossless")
