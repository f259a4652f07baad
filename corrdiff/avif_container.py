"""The AVIF base layer's bytes: a whole AVIF file, or its AV1 payload alone (docs/avif_base.md, "Bytes").

An AVIF still image as libavif writes it for the AVIF base (8-bit, no alpha, ICC, Exif or XMP) is 275 bytes
of ISOBMFF boxes around the AV1 data::

    ftyp  'avif' + brands ('MA1A' for 4:4:4, 'MA1B' for 4:2:0)
    meta  hdlr 'pict', pitm, iloc (offset and length of the AV1 data), iinf (one 'av01' item),
          iprp: ispe (width, height), pixi (3 x 8 bits), av1C (4 bytes), colr 'nclx' (BT.709 primaries,
          sRGB transfer, BT.601 matrix, full range), ipma
    mdat  the AV1 data: a sequence header OBU and one frame

Of these boxes only the width, height, the data's length and two bytes of av1C (the AV1 profile and level,
the subsampling) change from file to file, and the first three are known to a decoder that has read the
``.cdf`` header. So the base stream is, in its first byte:

* :data:`WHOLE` (0): an AVIF file follows as it is (any AVIF, e.g. from another libavif version);
* :data:`PAYLOAD` (1): av1C's bytes 1 and 2, then the AV1 data alone; :func:`rebuild` writes the boxes
  back. :func:`pack` uses it only after checking that the rebuilt file equals the encoder's to the byte,
  so a libavif that writes other boxes costs 267 bytes, never a wrong decode.

:func:`payload_size` reads the frame size from the AV1 sequence header (a reduced still-picture header, the
form libavif writes for one still image) so that a decoder can refuse a payload whose frame size is not
the header's before any decoding; :func:`whole_file_size` does the same with a whole file's ``ispe``.
No decoding happens here (bytes in, bytes out).
"""

from __future__ import annotations

import struct

from corrdiff.errors import BitstreamError

WHOLE = 0
PAYLOAD = 1

# libavif 1.4's ftyp and meta boxes of an 8-bit 4:4:4 still image, with the fields that change zeroed.
_TEMPLATE_444 = bytes.fromhex(
    "00000020667479706176696600000000617669666d6966316d6961664d413141000000eb6d657461000000000000002168646c72"
    "000000000000000070696374000000000000000000000000000000000e7069746d0000000000010000001e696c6f630000000044"
    "00000100010000000100000113000000000000002869696e660000000000010000001a696e666502000000000100006176303143"
    "6f6c6f72000000006a697072700000004b6970636f00000014697370650000000000000000000000000000001070697869000000"
    "00030808080000000c617631438100000000000013636f6c726e636c780001000d0006800000001769706d610000000000000001"
    "00010401028304")
HEADER_BYTES = len(_TEMPLATE_444)  # 267: ftyp and meta; mdat's 8-byte box header follows
_ILOC_LENGTH = _TEMPLATE_444.index(b"iloc") + 4 + 18  # extent_length (u32), the box's last field
_ISPE = _TEMPLATE_444.index(b"ispe") + 8  # width, height (u32 each) after version and flags
_AV1C = _TEMPLATE_444.index(b"av1C") + 4 + 1  # av1C bytes 1 and 2: profile + level, tier + depth + subsampling
_BRAND = _TEMPLATE_444.index(b"MA1A")
SUBSAMPLED = 0x0C  # av1C byte 2 bits chroma_subsampling_x, chroma_subsampling_y


def is_avif_file(data: bytes) -> bool:
    """Whether ``data`` starts like an AVIF file (an ISOBMFF ``ftyp`` box whose major brand is 'avif' or 'avis')."""
    return len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis")


def rebuild(width: int, height: int, av1c: bytes, payload: bytes) -> bytes:
    """The AVIF file of this AV1 data (see the module doc): ``av1c`` is av1C's bytes 1 and 2."""
    out = bytearray(_TEMPLATE_444)
    if av1c[1] & SUBSAMPLED:
        out[_BRAND:_BRAND + 4] = b"MA1B"  # libavif's brand of a 4:2:0 image (AVIF baseline profile)
    struct.pack_into(">I", out, _ILOC_LENGTH, len(payload))
    struct.pack_into(">II", out, _ISPE, width, height)
    out[_AV1C:_AV1C + 2] = av1c
    return bytes(out) + struct.pack(">I4s", len(payload) + 8, b"mdat") + payload


def pack(avif: bytes, width: int, height: int) -> bytes:
    """The base stream of an AVIF file that libavif wrote for a ``width`` x ``height`` image: the AV1 data alone
    when :func:`rebuild` gives the file back exactly, else the whole file."""
    start = HEADER_BYTES + 8
    if len(avif) > start:
        av1c, payload = avif[_AV1C:_AV1C + 2], avif[start:]
        if rebuild(width, height, av1c, payload) == avif:
            return bytes([PAYLOAD]) + av1c + payload
    return bytes([WHOLE]) + avif


def unpack(stream: bytes, width: int, height: int) -> bytes:
    """The AVIF file a base stream holds (BitstreamError for an unknown form); the frame size is checked
    against ``width`` x ``height`` before anything is decoded (:func:`payload_size`, :func:`whole_file_size`)."""
    if not stream:
        raise BitstreamError("the AVIF base stream is empty")
    kind, body = stream[0], stream[1:]
    if kind == PAYLOAD:
        if len(body) < 3:
            raise BitstreamError("the AVIF base stream is truncated")
        size = payload_size(body[2:])
        if size != (width, height):
            raise BitstreamError(f"the AV1 data codes a {size[0]}x{size[1]} frame, the header says {width}x{height}")
        return rebuild(width, height, body[:2], body[2:])
    if kind == WHOLE:
        size = whole_file_size(body)
        if size != (width, height):
            raise BitstreamError(f"the AVIF file is {size[0]}x{size[1]}, the header says {width}x{height}")
        return body
    raise BitstreamError(f"unknown AVIF base stream form {kind}")


class _Bits:
    """Most-significant-bit-first reader of AV1 header fields (AV1 specification, section 4.10.2 f(n))."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.position >> 3
            if byte >= len(self.data):
                raise BitstreamError("the AV1 sequence header is truncated")
            value = (value << 1) | ((self.data[byte] >> (7 - (self.position & 7))) & 1)
            self.position += 1
        return value


def _leb128(data: bytes, offset: int) -> tuple[int, int]:
    """(value, next offset) of an unsigned LEB128 number (AV1 specification, section 4.10.5), at most 8 bytes."""
    value = 0
    for i in range(8):
        if offset + i >= len(data):
            raise BitstreamError("the AV1 data is truncated")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, offset + i + 1
    raise BitstreamError("the AV1 data has an invalid OBU size")


def payload_size(payload: bytes) -> tuple[int, int]:
    """(width, height) of the frames that AV1 data's sequence header allows: its first OBU after any temporal
    delimiters must be a sequence header with the reduced still-picture header (AV1 specification, sections
    5.3 and 5.5); BitstreamError otherwise."""
    offset = 0
    for _ in range(4):
        if offset >= len(payload):
            raise BitstreamError("the AV1 data is truncated")
        header = payload[offset]
        obu_type, has_extension, has_size = (header >> 3) & 0xF, (header >> 2) & 1, (header >> 1) & 1
        if not has_size:
            raise BitstreamError("the AV1 data's OBUs carry no sizes")
        size, offset = _leb128(payload, offset + 1 + has_extension)
        if obu_type != 2:  # OBU_TEMPORAL_DELIMITER: skipped (it has no payload)
            break
        offset += size
    if obu_type != 1:  # OBU_SEQUENCE_HEADER
        raise BitstreamError("the AV1 data does not start with a sequence header")
    bits = _Bits(payload[offset:offset + 32])
    bits.read(3)  # seq_profile
    still_picture, reduced = bits.read(1), bits.read(1)
    if not (still_picture and reduced):
        raise BitstreamError("the AV1 data is not a reduced still-picture sequence (libavif's form for one image)")
    bits.read(5)  # seq_level_idx[0]
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    return bits.read(width_bits) + 1, bits.read(height_bits) + 1


def whole_file_size(avif: bytes) -> tuple[int, int]:
    """(width, height) of an AVIF file's ``ispe`` property, found by walking its boxes (ftyp, meta, iprp, ipco)
    without decoding anything; BitstreamError for a file without one."""

    def boxes(start: int, end: int):
        while start + 8 <= end:
            size, kind = struct.unpack_from(">I4s", avif, start)
            if size < 8 or start + size > end:
                raise BitstreamError("the AVIF file's boxes are damaged")
            yield kind, start, start + size
            start += size

    def find(path: tuple[bytes, ...], start: int, end: int) -> int | None:
        for kind, box_start, box_end in boxes(start, end):
            if kind == path[0]:
                body = box_start + (12 if kind in (b"meta", b"ispe") else 8)  # full boxes: version and flags
                return body if len(path) == 1 else find(path[1:], body, box_end)
        return None

    found = find((b"meta", b"iprp", b"ipco", b"ispe"), 0, len(avif))
    if found is None or found + 8 > len(avif):
        raise BitstreamError("not an AVIF still image: no image size (ispe) in its boxes")
    return struct.unpack_from(">II", avif, found)
