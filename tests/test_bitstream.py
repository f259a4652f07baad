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
from corrdiff.bitstream import Bitstream, pack, unpack
from corrdiff.errors import BitstreamError


def make_bs(**changes) -> Bitstream:
    bs = Bitstream(
        fingerprint=bytes(range(8)), height=67, width=131, mode="corrected", sampler="ddim", steps=8, eta=0.0,
        seed=1234, groups=1, gammas=tuple(1.0 - i / 16 for i in range(8)), streams=(b"zz" * 5, b"y" * 37),
    )
    return dataclasses.replace(bs, **changes)


VALID = pack(make_bs())


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def header(*, mode=0, height=67, width=131, name=b"ddim", steps=8, eta=0.0, seed=0, groups=1,
           gammas=None, streams=(b"ab", b"cde"), version=1, magic=B.MAGIC, fingerprint=b"\0" * 8) -> bytes:
    """Hand-built file (independent of pack()) with a correct CRC."""
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
        {"mode": "diffusion", "gammas": ()},
        {"mode": "e2e", "steps": 0, "gammas": ()},
        {"groups": 3, "steps": 2, "gammas": (0.5, -1.25, 65504.0, -65504.0, -0.0, 2.0**-10)},
        {"sampler": "ddpm", "eta": 1.0, "seed": 2**32 - 1},
        {"height": 1, "width": 1, "streams": (b"",)},
        {"height": 65535, "width": 4096, "streams": (b"a", b"b", b"c", b"d")},
        {"sampler": "x" * 32, "steps": 1000, "gammas": tuple([0.25] * 1000)},
    ],
    ids=["default", "diffusion", "e2e", "channel", "ddpm", "1x1", "maxside", "maxsteps"],
)
def test_pack_unpack_round_trip(changes):
    bs = make_bs(**changes)
    data = pack(bs)
    back = unpack(data)
    assert back == bs
    assert pack(back) == data
    assert data.startswith(b"CDIF\x01")
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])


def test_layout_matches_the_documented_offsets():
    bs = make_bs()
    data = pack(bs)
    assert data[:4] == b"CDIF" and data[4] == 1 and data[5] == 0
    assert data[6:14] == bs.fingerprint
    assert struct.unpack_from("<HHB", data, 14) == (67, 131, 4)
    assert data[19:23] == b"ddim"
    assert struct.unpack_from("<HfIB", data, 23) == (8, 0.0, 1234, 1)
    assert struct.unpack_from("<8e", data, 34) == bs.gammas  # 16 bits per gamma
    assert struct.unpack_from("<BII", data, 50) == (2, 10, 37)
    assert data[59:-4] == b"zz" * 5 + b"y" * 37
    assert len(data) == 59 + 47 + 4
    # the hand-built reference writer agrees with pack()
    assert header(seed=1234, fingerprint=bs.fingerprint, gammas=list(bs.gammas), streams=bs.streams) == data


def test_gamma_payload_is_16_bits_per_scalar():
    base = len(pack(make_bs(steps=4, gammas=(0.5,) * 4)))
    assert len(pack(make_bs(steps=8, gammas=(0.5,) * 8))) - base == 4 * 2
    assert len(pack(make_bs(steps=4, groups=3, gammas=(0.5,) * 12))) - base == 8 * 2
    assert len(pack(make_bs(mode="diffusion", steps=8, gammas=()))) == base - 4 * 2


def test_gammas_are_stored_as_float16():
    data = pack(make_bs(steps=1, gammas=(0.1,)))
    assert unpack(data).gammas == (struct.unpack("<e", struct.pack("<e", 0.1))[0],)


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
        ({"steps": 0, "gammas": ()}, "at least one step"),
        ({"eta": 1.5}, "eta"),
        ({"eta": float("nan")}, "eta"),
        ({"seed": 2**32}, "seed"),
        ({"groups": 4}, "groups"),
        ({"gammas": (0.5,) * 7}, "7 gammas"),
        ({"gammas": (float("inf"),) * 8}, "finite"),
        ({"streams": ()}, "streams"),
        ({"streams": (b"",) * 5}, "streams"),
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


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unsupported_version_raises_even_with_valid_crc(version):
    with pytest.raises(BitstreamError, match=f"version {version}"):
        unpack(header(version=version))


def test_hand_built_header_is_accepted():
    bs = unpack(header())
    assert (bs.height, bs.width, bs.mode, bs.sampler, bs.steps, bs.groups) == (67, 131, "corrected", "ddim", 8, 1)


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
        ({"steps": 1001, "gammas": []}, "out of range"),
        ({"steps": 65535, "gammas": []}, "out of range"),
        ({"groups": 0, "gammas": []}, "out of range"),
        ({"groups": 4, "gammas": [0.0] * 32}, "out of range"),
        ({"steps": 0, "gammas": []}, "at least one step"),
        ({"eta": -0.5}, "eta"),
        ({"eta": float("nan")}, "eta"),
        ({"eta": float("inf")}, "eta"),
        ({"gammas": [float("nan")] * 8}, "finite"),
        ({"gammas": [float("inf")] + [0.0] * 7}, "finite"),
        ({"streams": ()}, "streams"),
        ({"streams": (b"",) * 5}, "streams"),
        ({"streams": (b"",) * 255}, "streams"),
    ],
)
def test_absurd_header_fields_refused_with_valid_crc(fields, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(header(**fields))


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
    st.builds(_mutate, st.just(VALID), _edits, st.none() | st.integers(0, 10_000), st.booleans()),
    st.builds(_mutate, st.just(header(mode=2, steps=0)), _edits, st.none() | st.integers(0, 10_000), st.booleans()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_inputs)
def test_fuzzed_bytes_only_ever_raise_bitstream_error(data):
    try:
        bs = unpack(data)
    except BitstreamError:
        return
    # whatever the reader accepts is a canonical, valid file
    bs.validate()
    assert pack(bs) == data
