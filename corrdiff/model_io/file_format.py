"""The model file's format marks, and what a file passed in its place (or in a checkpoint's) looks like.

A model file is a torch zip archive holding ``{"format": FORMAT, "format_version": FORMAT_VERSION, ...}``
(:mod:`corrdiff.model_io`); its first bytes are :data:`ZIP_MAGIC`. An image or a compressed file given
by mistake is named in the error message (:func:`describe_file`).
"""

from __future__ import annotations

from pathlib import Path

from corrdiff.bitstream import MAGIC as CDF_MAGIC

FORMAT = "corrdiff-model"
FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive format

#: leading bytes of files passed by mistake where a model or checkpoint belongs, and what they are
FILE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"BM", "a BMP image"),
    (CDF_MAGIC, "a compressed corrdiff file (.cdf)"),
)


def describe_file(head: bytes) -> str:
    """What a file starting with ``head`` (its first 16 bytes or more) looks like, for error messages."""
    if not head:
        return "an empty file"
    for signature, kind in FILE_SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp":
        return "an AVIF/HEIF image or an MP4 video"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "a file of an unknown format"


def read_head(path: Path, size: int = 16) -> bytes:
    """The first ``size`` bytes of a file."""
    with open(path, "rb") as f:
        return f.read(size)
