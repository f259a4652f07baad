"""Reliability and security (issue 8): hostile files, faults, cross-machine decoding.

docs/reliability.md says what each group proves and how to run the long fuzz campaign
(tools/fuzz_decoder.py, which shares its mutation engine with the tests here).

* decoder fuzzing through the whole codec and ``corrdiff decompress``: mutated, truncated and
  re-checksummed files end in a decoded image of the header's shape or a BitstreamError (CLI:
  exit 2, one line), quickly; the range decoder cannot read past its buffer; the decode size
  is bounded before anything is allocated;
* model files and checkpoints: pickled payloads never run; wrong widths, non-tensors, damaged
  archives are ModelLoadErrors;
* cross-machine decoding: a committed golden file keeps decoding to the same z/y (and, on the
  machine that wrote it, the same image); thread counts and deterministic algorithms change
  nothing in the entropy-decoded latent;
* training faults: SIGKILL mid-epoch then ``--ckpt_path last.ckpt`` continues the step count;
  an image that turns unreadable mid-run is skipped and counted;
* CLI hygiene: interrupted writes leave nothing, overwrites need --force, environment errors
  are one line and exit 2.

Already covered elsewhere and not repeated: unpack() fuzzing, every truncation and bit flip of
the container (test_bitstream.py); missing entropy tables, ``print``-payload refusal (test_codec.py);
NaN-loss guard, in-process resume, unreadable files at scan time (test_training.py); overwrite
refusal and bad input images of compress/decompress (test_cli_files.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import json
import math
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from corrdiff import bitstream
from corrdiff.cli import main as cli_main
from corrdiff.codec import MAX_DECODE_PIXELS, CorrDiffCodec
from corrdiff.modules.priors import range_decoder_padding
from corrdiff.errors import BitstreamError, ModelLoadError
from corrdiff.files import atomic_write
from corrdiff.model_io import export_checkpoint, load_model, read_checkpoint

from conftest import make_codec

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
FUZZ_PIXELS = 64 * 64  # decode-size limit while fuzzing: keeps every case well under a second


def _load_tool(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz_tool = _load_tool("fuzz_decoder", ROOT / "tools" / "fuzz_decoder.py")
golden_tool = _load_tool("make_golden", GOLDEN / "make_golden.py")


def run_main(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main([str(a) for a in argv])
    return code, err.getvalue()


def assert_one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"corrdiff {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# =========================================================================== 1. decoder fuzzing
@pytest.fixture(scope="module")
def fuzz(tiny_codec, model_file, tmp_path_factory):
    """Valid seed files of the tiny codec, whose decode-size limit is lowered for speed (restored after)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiny_codec, "max_decode_pixels", FUZZ_PIXELS, raising=False)
        seeds = fuzz_tool.seed_files(tiny_codec)
        yield {"codec": tiny_codec, "seeds": seeds, "model": str(model_file),
               "folder": tmp_path_factory.mktemp("fuzz")}


_pos = st.integers(0, 1 << 16)
_payload = st.one_of(
    st.binary(max_size=400),
    st.tuples(st.sampled_from([b"\xff", b"\x00", b"\xf0", b"\x0f"]), st.integers(0, 600)).map(lambda t: t[0] * t[1]),
)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), _pos, st.integers(0, 7)),
        st.tuples(st.just("stream_flip"), _pos, st.integers(0, 7)),
        st.tuples(st.just("set"), _pos, st.integers(0, 255)),
        st.tuples(st.just("insert"), _pos, st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("delete"), _pos, st.integers(1, 8)),
        st.tuples(st.just("truncate"), _pos),
        st.tuples(st.just("field"), st.sampled_from([f for f in fuzz_tool.FIELDS if f not in fuzz_tool.FLOAT_FIELDS]),
                  st.sampled_from(fuzz_tool.INTERESTING) | st.integers(0, 2**32 - 1)),
        st.tuples(st.just("field"), st.sampled_from(fuzz_tool.FLOAT_FIELDS),
                  st.sampled_from(fuzz_tool.INTERESTING_FLOATS) | st.floats(width=32)),
        st.tuples(st.just("streams"), st.lists(_payload, max_size=5).map(tuple)),
    ),
    min_size=1,
    max_size=4,
)
_cases = st.tuples(st.integers(0, 4), _ops, st.sampled_from([True, True, True, False]))  # mostly CRC fixed


def _check_outcome(codec, data: bytes) -> str:
    """decoded (right shape, finite, in [0, 1]) or BitstreamError; anything else fails the test."""
    start = time.perf_counter()
    try:
        image = codec.decompress(data)
    except BitstreamError as exc:
        kind = f"refused: {fuzz_tool.refusal_kind(exc)}"
    else:
        header = bitstream.unpack(data)
        assert image.shape == (1, 3, header.height, header.width)
        assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
        kind = "decoded"
    assert time.perf_counter() - start < 20, "a single file took too long to decode or refuse"
    return kind


@pytest.fixture(scope="module", params=["learned", "avif"])
def fuzzed(request):
    """The seed files of either base: the learned one (entropy-coded streams) or AVIF (AV1 data, docs/avif_base.md)."""
    return request.getfixturevalue("fuzz" if request.param == "learned" else "avif_fuzz")


@pytest.mark.timeout(300, method="thread")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=_cases)
def test_mutated_files_through_decompress(fuzzed, case):
    seed, ops, fix_crc = case
    event(_check_outcome(fuzzed["codec"], fuzz_tool.mutate(fuzzed["seeds"][seed], ops, fix_crc)))


@pytest.mark.timeout(300, method="thread")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=_cases)
def test_mutated_files_through_the_cli(fuzzed, case):
    seed, ops, fix_crc = case
    data = fuzz_tool.mutate(fuzzed["seeds"][seed], ops, fix_crc)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CorrDiffCodec, "max_decode_pixels", FUZZ_PIXELS)  # the CLI loads its own codec
        kind, detail = fuzz_tool.cli_case(fuzzed["model"], data, fuzzed["folder"])
    event(kind)
    assert kind in ("cli:exit0", "cli:exit2"), detail  # PNG of the header's size, or one line + exit 2 + no file


@pytest.fixture(scope="module")
def avif_fuzz(tmp_path_factory):
    """Seed files of a tiny AVIF-base model (docs/avif_base.md) and its model file, decode-size limit lowered."""
    import corrdiff

    codec = fuzz_tool.build_codec(None, FUZZ_PIXELS, base="avif")
    folder = tmp_path_factory.mktemp("avif-fuzz")
    corrdiff.save_model(codec, folder / "avif.pt")
    return {"codec": codec, "seeds": fuzz_tool.seed_files(codec), "model": str(folder / "avif.pt"), "folder": folder}


@pytest.mark.timeout(300, method="thread")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(seed=st.sampled_from([0, 2]), height=st.integers(1, 64), width=st.integers(1, 64), z=_payload, y=_payload)
def test_crc_valid_garbage_streams_decode_or_raise(fuzz, seed, height, width, z, y):
    """Right fingerprint, valid header and CRC, random entropy-coded bytes: the rANS decoder accepts anything."""
    header = bitstream.unpack(fuzz["seeds"][seed])  # 0: corrected, 2: e2e
    forged = bitstream.pack(dataclasses.replace(header, height=height, width=width, streams=(z, y)))
    event(_check_outcome(fuzz["codec"], forged))


def _rans_tables(module):
    return (module._quantized_cdf.tolist(), module._cdf_length.reshape(-1).int().tolist(),
            module._offset.reshape(-1).int().tolist())


@settings(max_examples=80, deadline=None)
@given(stream=_payload, symbols=st.integers(1, 3000), which=st.sampled_from(["gaussian", "bottleneck"]),
       indexes=st.sampled_from(["random", "widest", "narrowest"]), seed=st.integers(0, 1000))
def test_range_decoder_never_reads_past_the_padding(tiny_codec, stream, symbols, which, indexes, seed):
    """compressai's decoder has no bounds check; with range_decoder_padding() zeros appended, what lies
    beyond the padding never influences the result, i.e. it is never read."""
    from compressai.ans import RansDecoder

    module = getattr(tiny_codec.prior, "gaussian_conditional" if which == "gaussian" else "entropy_bottleneck")
    cdfs, lengths, offsets = _rans_tables(module)
    rng = np.random.default_rng(seed)
    if indexes == "random":
        idx = rng.integers(0, len(lengths), symbols).tolist()
    else:
        pick = max if indexes == "widest" else min
        idx = [pick(range(len(lengths)), key=lengths.__getitem__)] * symbols
    padded = stream + bytes(range_decoder_padding(len(stream), symbols))
    first = RansDecoder().decode_with_indexes(padded + b"\xa5" * 4096, idx, cdfs, lengths, offsets)
    second = RansDecoder().decode_with_indexes(padded + b"\x5a" * 4096, idx, cdfs, lengths, offsets)
    assert first == second


def test_codec_pads_every_range_decoder(tiny_codec, encoded):
    data = encoded("random17x33").data
    tiny_codec.read(data)
    coders = [m.entropy_coder for m in tiny_codec.prior.modules() if hasattr(m, "entropy_coder")]
    assert coders and all(type(c).__name__ == "_BoundedRangeDecoder" for c in coders)
    tiny_codec.read(data)  # idempotent: no wrapper around a wrapper
    assert all(type(c._inner).__name__ != "_BoundedRangeDecoder" for c in coders)
    assert torch.equal(tiny_codec.decompress(data), encoded("random17x33").reconstruction)  # valid files unchanged


def _forge(data: bytes, **fields) -> bytes:
    return bitstream.pack(dataclasses.replace(bitstream.unpack(data), **fields))


def test_enormous_headers_are_refused_before_any_allocation(encoded):
    data = encoded("random17x33").data
    tiny_codec = make_codec(0)  # the default limit (the shared codec may have the fuzzing one)
    header = bitstream.unpack(data)
    # beyond the format (4.3 Gpx): the parser refuses it, whatever the CRC says
    body = bytearray(data[:-4])
    struct.pack_into("<HH", body, 14, 65535, 65535)
    forged = fuzz_tool.with_crc(bytes(body))
    start = time.perf_counter()
    with pytest.raises(BitstreamError, match="exceeds"):
        tiny_codec.decompress(forged)
    # within the format (268 Mpx, 2^28) but beyond what a decoder should allocate for a 100-byte file
    huge = _forge(data, height=65535, width=4096)
    with pytest.raises(BitstreamError, match="decoder's limit"):
        tiny_codec.decompress(huge)
    assert time.perf_counter() - start < 1.0
    assert tiny_codec.max_decode_pixels == MAX_DECODE_PIXELS == 1 << 24
    assert MAX_DECODE_PIXELS >= 4096 * 4096 > 4032 * 3024 > 3840 * 2160  # 4K UHD and 12 Mpx photos decode by default
    assert (header.height, header.width) == (17, 33)


def test_decode_size_limit_is_exact_and_adjustable(tiny_codec, encoded):
    result = encoded("random17x33")
    codec = make_codec(0)
    codec.max_decode_pixels = 17 * 33
    assert torch.equal(codec.decompress(result.data), result.reconstruction)
    codec.max_decode_pixels = 17 * 33 - 1
    with pytest.raises(BitstreamError, match="561 pixels exceeds this decoder's limit of 560"):
        codec.read(result.data)


def test_forged_gamma_codes_are_a_bitstream_error(tiny_codec, test_images):
    """Found by the fuzzer in format 1 (G = 2 in a diffusion-mode file reached the sampler as a shape
    error); in format 2 every forged step code is refused by the parser or decodes to a valid map."""
    data = tiny_codec.compress(test_images["random17x33"], steps=2)
    at = bitstream.field_offsets(data)["gamma code"]
    outcomes = set()
    for code in range(256):
        forged = bytearray(data[:-4])
        forged[at] = code
        outcomes.add(_check_outcome(tiny_codec, fuzz_tool.with_crc(bytes(forged))).split(":")[0])
    assert outcomes == {"decoded", "refused"}


def test_altered_stream_behind_a_valid_crc_never_returns_nan(tiny_codec, test_images):
    """Found by the fuzzer: one flipped bit in y plus a recomputed CRC decoded to a latent of ~1e6 and NaN pixels."""
    data = tiny_codec.compress(test_images["random17x33"], steps=1)
    header = bitstream.unpack(data)
    outcomes = set()
    for i in range(len(header.streams[1]) * 8):
        y = bytearray(header.streams[1])
        y[i // 8] ^= 1 << (i % 8)
        forged = _forge(data, streams=(header.streams[0], bytes(y)))
        outcomes.add(_check_outcome(tiny_codec, forged))
    assert "decoded" in outcomes  # most flips decode to another (finite) image: the CRC is the integrity check


CRASH_SCRIPT = textwrap.dedent(
    """
    import dataclasses, random, sys, torch
    sys.path.insert(0, sys.argv[1])
    from conftest import make_codec, random_image
    from corrdiff import bitstream
    from corrdiff.errors import BitstreamError
    codec = make_codec(0)
    data = codec.compress(random_image(32, 48), steps=1)
    header = bitstream.unpack(data)
    # before the fix: this segfaulted (compressai's rANS decoder read megabytes past the 8-byte y stream)
    forged = bitstream.pack(dataclasses.replace(header, height=2048, width=2048))
    codec.read(forged)
    # the decode-size limit comes from $CORRDIFF_MAX_DECODE_PIXELS here (2048 x 2048)
    assert codec.max_decode_pixels == 2048 * 2048, codec.max_decode_pixels
    try:
        codec.read(bitstream.pack(dataclasses.replace(header, height=2048, width=2049)))
        raise AssertionError("not refused")
    except BitstreamError as exc:
        assert "CORRDIFF_MAX_DECODE_PIXELS" in str(exc), exc
    rng = random.Random(0)
    counts = {"decoded": 0, "refused": 0}
    for i in range(int(sys.argv[2])):
        h, w = rng.choice([(1, 1), (17, 33), (300, 200), (1024, 768), (2048, 64)])
        streams = tuple(rng.choice([rng.randbytes(rng.randrange(64)), b"\\xff" * rng.randrange(64), b""])
                        for _ in range(2))
        try:
            codec.read(bitstream.pack(dataclasses.replace(header, height=h, width=w, streams=streams)))
            counts["decoded"] += 1
        except BitstreamError:
            counts["refused"] += 1
    print(counts)
    """
)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_forged_sizes_with_short_streams_do_not_crash_the_process():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "CORRDIFF_MAX_DECODE_PIXELS": str(2048 * 2048)}
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(Path(__file__).parent), "150"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, f"returncode {proc.returncode} (-11: segfault)\n{proc.stderr[-2000:]}"
    counts = eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our own subprocess's dict
    assert counts["decoded"] + counts["refused"] == 150


# =========================================================================== 2. model files and checkpoints
class SideEffect:
    """Unpickling this runs ``os.system("touch <path>")``: the classic payload of a hostile .pt file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _model_payload(model_file: Path) -> dict:
    return torch.load(model_file, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("where", ["top_level", "in_state_dict", "as_config", "legacy_format"])
def test_model_file_with_code_payload_is_refused_and_never_runs(model_file, tmp_path, where):
    marker = tmp_path / "pwned"
    payload = _model_payload(model_file)
    evil = SideEffect(marker)
    if where == "top_level":
        payload["extra"] = evil
    elif where == "in_state_dict":
        payload["state_dict"]["encoder.0.weight"] = evil
    elif where == "as_config":
        payload["config"] = evil
    path = tmp_path / "evil.pt"
    torch.save(payload if where != "legacy_format" else {"x": evil}, path,
               _use_new_zipfile_serialization=where != "legacy_format")
    with pytest.raises(ModelLoadError, match="pickled|not a model file"):
        load_model(path)
    assert not marker.exists(), "the pickled payload ran"
    # through the command line too: exit 2, one line, and still nothing ran
    cdf = tmp_path / "x.cdf"
    cdf.write_bytes(b"CDIF")
    code, err = run_main("decompress", cdf, "-o", tmp_path / "x.png", "--model", path)
    assert code == 2
    assert_one_line_error(err, "decompress")
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_checkpoint_with_code_payload_is_refused_and_never_runs(tmp_path, legacy):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"codec_config": {}}, "callbacks": SideEffect(marker)}, ckpt,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ModelLoadError, match="pickled"):
        read_checkpoint(ckpt)
    with pytest.raises(ModelLoadError, match="pickled"):
        export_checkpoint(ckpt, tmp_path / "m.pt")
    code, err = run_main("export", ckpt, "-o", tmp_path / "m.pt")
    assert code == 2 and "pickled" in assert_one_line_error(err, "export")
    assert not marker.exists() and not (tmp_path / "m.pt").exists()


def test_model_file_with_weights_of_another_width_names_the_shapes(model_file, tmp_path):
    """Was a RuntimeError from load_state_dict (a traceback on the command line)."""
    payload = _model_payload(model_file)
    payload["state_dict"] = make_codec(0, latent_channels=40).state_dict()
    path = tmp_path / "wide.pt"
    torch.save(payload, path)
    with pytest.raises(ModelLoadError, match=r"do not match the model's config.*encoder\.6\.weight \(40, 24, 5, 5\) "
                                             r"\(config: \(32, 24, 5, 5\)\)") as info:
        load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    cdf = tmp_path / "x.cdf"
    cdf.write_bytes(b"CDIF")
    code, err = run_main("decompress", cdf, "-o", tmp_path / "x.png", "--model", path)
    assert code == 2 and "do not match" in assert_one_line_error(err, "decompress")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.pop("state_dict"), "must be a dict of tensors"),
        (lambda p: p.__setitem__("state_dict", [1, 2]), "must be a dict of tensors"),
        (lambda p: p["state_dict"].__setitem__(7, torch.zeros(1)), "must be a dict of tensors by name"),
        (lambda p: p["state_dict"].__setitem__("encoder.0.weight", "not a tensor"), "not a tensor: encoder.0.weight"),
        (lambda p: p["state_dict"].__setitem__("encoder.0.weight", 3), "not a tensor"),
        (lambda p: p.__setitem__("metadata", "{not json"), "metadata is invalid"),
        (lambda p: p.__setitem__("config", '{"latent_channels": -3}'), "config is invalid"),
        (lambda p: p.__setitem__("config", "[1, 2]"), "config is invalid"),
        (lambda p: p.__setitem__("config", 7), "config is invalid"),
    ],
    ids=["no-weights", "weights-list", "int-key", "weight-str", "weight-int", "metadata", "negative-width",
         "config-list", "config-int"],
)
def test_malformed_model_payloads_are_model_load_errors(model_file, tmp_path, change, message):
    payload = _model_payload(model_file)
    change(payload)
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_truncated_model_file_and_checkpoint(model_file, tmp_path):
    data = model_file.read_bytes()
    for cut in (10, len(data) // 3, len(data) - 30):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError):
            load_model(path)
        ckpt = tmp_path / f"cut{cut}.ckpt"
        ckpt.write_bytes(data[:cut])
        code, err = run_main("export", ckpt, "-o", tmp_path / "m.pt")
        assert code == 2
        assert_one_line_error(err, "export")


def _member_data_offset(archive: bytes | bytearray, info: zipfile.ZipInfo) -> int:
    """Where a stored zip member's bytes start (its local header's extra field may differ from the central one)."""
    name_len, extra_len = struct.unpack_from("<HH", archive, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len


@pytest.mark.timeout(300, method="thread")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=4),
       member=st.sampled_from(["data.pkl", "tensor", "anywhere"]))
def test_byte_mutated_model_files_load_or_raise_model_load_error(fuzz, tmp_path_factory, edits, member):
    """Damage in the pickle, in a tensor's bytes or anywhere in the zip: a ModelLoadError or a model that
    then refuses the file of the original model (fingerprint) or decodes it. Never another exception."""
    data = bytearray(Path(fuzz["model"]).read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        infos = zf.infolist()
    if member == "anywhere":
        spans = [(0, len(data))]
    else:
        chosen = [i for i in infos if i.filename.endswith("data.pkl") == (member == "data.pkl")]
        spans = [(_member_data_offset(data, i), i.file_size) for i in chosen]
        spans = [(s, n) for s, n in spans if n > 0] or [(0, len(data))]
    for pos, value in edits:
        start, size = spans[pos % len(spans)]
        data[start + (pos // len(spans)) % size] = value
    path = tmp_path_factory.mktemp("mutated") / "model.pt"
    path.write_bytes(bytes(data))
    try:
        codec = load_model(path)
    except ModelLoadError:
        event("refused")
        return
    event("loaded")
    codec.max_decode_pixels = FUZZ_PIXELS
    try:
        image = codec.decompress(fuzz["seeds"][2])
    except BitstreamError:
        event("file refused by the damaged model")
    else:
        assert image.shape == (1, 3, 17, 33)


# =========================================================================== 3. cross-machine decoding
GOLDEN_VERSIONS = (1, 2, 3, 4)  # a golden file of every format version ever written: all keep decoding


def _golden(version: int = 1):
    names = golden_tool.golden_names(version)
    expected = json.loads((GOLDEN / names["json"]).read_text())
    codec = load_model(GOLDEN / names["model"])
    data = (GOLDEN / names["cdf"]).read_bytes()
    return expected, codec, data


def test_golden_files_are_small_and_current():
    sizes = {p.name: p.stat().st_size for p in GOLDEN.iterdir() if p.is_file()}
    assert sum(sizes.values()) < 1_000_000, sizes
    for version in GOLDEN_VERSIONS:
        expected, _, data = _golden(version)
        assert hashlib.sha256(data).hexdigest() == expected["file_sha256"]
        assert data[4] == expected["format_version"] == version
    assert GOLDEN_VERSIONS[-1] == bitstream.VERSION, (
        "the format version changed: if on purpose, add a golden file of the new version with "
        "CORRDIFF_REGENERATE_GOLDEN=1 python tests/golden/make_golden.py and list it in GOLDEN_VERSIONS"
    )


def test_make_golden_refuses_without_the_environment_variable(monkeypatch, capsys):
    monkeypatch.delenv("CORRDIFF_REGENERATE_GOLDEN", raising=False)
    before = {p.name: p.stat().st_mtime_ns for p in GOLDEN.iterdir()}
    assert golden_tool.main() == 1
    assert "CORRDIFF_REGENERATE_GOLDEN=1" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in GOLDEN.iterdir()} == before


@pytest.mark.parametrize("version", GOLDEN_VERSIONS)
def test_golden_file_decodes_to_the_committed_latents_and_image(num_threads, version):
    expected, codec, data = _golden(version)
    num_threads(expected["image_threads"])
    assert codec.fingerprint().hex() == expected["fingerprint"], (
        "the golden model's fingerprint changed (config keys or weight layout changed?)"
    )
    header = bitstream.unpack(data)
    assert header.mode == expected["header"]["mode"] and list(header.gammas) == expected["header"]["gammas"]
    assert header.quality == expected["header"].get("quality")
    z_hat, y_hat = golden_tool.latents(codec, data)
    assert list(z_hat.shape) == expected["z_hat_shape"] and list(y_hat.shape) == expected["y_hat_shape"]
    # the entropy-coded part must decode bit for bit on every machine, with any thread count
    assert golden_tool.digest(z_hat) == expected["z_hat_sha256"]
    assert golden_tool.digest(y_hat) == expected["y_hat_sha256"]
    image = codec.decompress(data)
    if golden_tool.platform_signature() == expected["platform"]:
        # the machine (CPU, OS, torch build and kernels) that wrote the golden files, same thread count:
        # bit-exact image
        assert golden_tool.digest(image) == expected["image_sha256"]
    # elsewhere float convolutions may round differently: the image must still be the same picture
    with Image.open(GOLDEN / golden_tool.golden_names(version)["png"]) as png:
        reference = torch.from_numpy(np.asarray(png, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    mse = float(((image - reference) ** 2).mean())
    assert mse == 0 or 10 * math.log10(1 / mse) > 40


DECODE_SCRIPT = textwrap.dedent(
    """
    # One import (compressai's takes ~10 s here), then a forked child per thread count: no parallel
    # region has run before the fork, so each child starts its own, fresh thread pool.
    import json, os, sys
    import torch
    import corrdiff, corrdiff.codec, corrdiff.model_io
    sys.path.insert(0, sys.argv[1])
    from make_golden import digest, latents
    files = json.loads(sys.argv[2])
    reports = {}
    for threads in (1, 2, 3):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            torch.set_num_threads(threads)
            out = {"threads": torch.get_num_threads()}
            for name, model, cdf in files:
                codec = corrdiff.load_model(model)
                data = open(cdf, "rb").read()
                for deterministic in (False, True):
                    torch.use_deterministic_algorithms(deterministic)
                    z_hat, y_hat = latents(codec, data)
                    out[f"{name}/det={deterministic}"] = {"z": digest(z_hat), "y": digest(y_hat),
                                                         "image": digest(codec.decompress(data))}
            os.write(write, json.dumps(out).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as f:
            text = f.read()
        _, status = os.waitpid(pid, 0)
        assert status == 0, f"child for {threads} threads: status {status}"
        reports[threads] = json.loads(text)
    print(json.dumps(reports))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_entropy_decoding_is_bit_exact_across_fresh_thread_pools_and_determinism(model_file, test_images, tmp_path,
                                                                                  num_threads):
    expected, _, _ = _golden()
    encoder = load_model(model_file)  # the tiny preset
    num_threads(3)  # a second file, encoded here with 3 threads
    result = encoder.encode(test_images["chelsea"], steps=2)
    fresh = tmp_path / "fresh.cdf"
    fresh.write_bytes(result.data)
    z_fresh, y_fresh = golden_tool.latents(encoder, result.data)
    assert torch.equal(y_fresh, result.y_hat)
    files = [("golden", str(GOLDEN / "model.pt"), str(GOLDEN / "golden.cdf")), ("fresh", str(model_file), str(fresh))]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_WAIT_POLICY": "PASSIVE"}  # no spinning on a busy CPU
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run([sys.executable, "-c", DECODE_SCRIPT, str(GOLDEN), json.dumps(files)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    assert {t: r["threads"] for t, r in reports.items()} == {1: 1, 2: 2, 3: 3}
    want = {"golden": (expected["z_hat_sha256"], expected["y_hat_sha256"]),
            "fresh": (golden_tool.digest(z_fresh), golden_tool.digest(y_fresh))}
    for threads, report in reports.items():
        for key, digests in report.items():
            if key != "threads":
                assert (digests["z"], digests["y"]) == want[key.split("/")[0]], f"{key} with {threads} threads"
    # same thread count: the image does not depend on deterministic algorithms (on this CPU)
    for report in reports.values():
        for name in want:
            assert report[f"{name}/det=False"]["image"] == report[f"{name}/det=True"]["image"]
    # the golden image digest was recorded with 1 thread: the forked 1-thread child reproduces it
    if golden_tool.platform_signature() == expected["platform"]:
        assert reports[expected["image_threads"]]["golden/det=False"]["image"] == expected["image_sha256"]


# =========================================================================== 4. training faults
def _small_photos(folder: Path, count: int = 4) -> Path:
    from skimage import data as skdata

    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    for split in ("train", "val"):
        (folder / split).mkdir(parents=True)
    for i, rgb in enumerate(photos[:count]):
        small = np.ascontiguousarray(rgb[::8, ::8][:48, :48])
        Image.fromarray(small).save(folder / ("val" if i == 0 else "train") / f"p{i}.png")
    return folder


def _fit_args(photos: Path, run: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(ROOT / "experiments" / "tiny" / "phase1.yaml"),
        "--data.train_dirs", str(photos / "train"), "--data.val_dirs", str(photos / "val"),
        "--data.crop_size", "32", "--data.batch_size", "2", "--data.train_repeat", "400",  # 600 steps per epoch
        "--trainer.max_steps", "600", "--trainer.limit_val_batches", "0", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(run),
        "--trainer.logger.init_args.save_dir", str(run),
        "--trainer.callbacks.init_args.dirpath", str(run / "checkpoints"),
        "--trainer.callbacks.init_args.every_n_train_steps", "1",
        "--model.init_args.val_compress_images", "0",
        *extra,
    ]


def _step_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_mid_epoch_then_resume_continues_the_step_count(tmp_path):
    photos = _small_photos(tmp_path / "photos")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    log = open(tmp_path / "fit.log", "w")  # a file, not a pipe: a full pipe would stall the run
    proc = subprocess.Popen([sys.executable, "-m", "corrdiff.cli", *_fit_args(photos, run)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            steps = [int(p.stem.split("step=")[1]) for p in (run / "checkpoints").glob("epoch=*-step=*.ckpt")]
            if steps and max(steps) >= 4:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the run ended before it was killed: {(tmp_path / 'fit.log').read_text()[-2000:]}"
        proc.send_signal(signal.SIGKILL)  # no chance to clean up, like a node that dies
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    last = run / "checkpoints" / "last.ckpt"
    killed_at = _step_of(last)  # the last checkpoint is complete (Lightning writes it atomically)
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 0 and 3 <= killed_at < 600, "killed mid-epoch"

    assert cli_main(_fit_args(photos, run, "--trainer.max_steps", str(killed_at + 3), "--ckpt_path", str(last))) == 0
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == killed_at + 3 and resumed["epoch"] == 0  # same epoch, steps continue
    assert all(torch.isfinite(v).all() for v in resumed["state_dict"].values() if v.is_floating_point())
    logs = sorted(run.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)[-1].read_text().splitlines()
    columns = logs[0].split(",")
    rows = [dict(zip(columns, line.split(","))) for line in logs[1:]]
    losses = {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}
    assert sorted(losses) == [killed_at, killed_at + 1, killed_at + 2], losses  # no restart at step 0
    assert all(math.isfinite(v) for v in losses.values())


def test_image_that_becomes_unreadable_mid_run_is_skipped_and_counted(tmp_path):
    from corrdiff.training.data import ImageCrops

    photos = _small_photos(tmp_path / "photos")
    dataset = ImageCrops(str(photos / "train"), crop_size=32, train=True, cache=False, repeat=2)
    assert dataset.skipped == 0 and len(dataset) == 6
    dataset.files[0].write_bytes(b"\x89PNG\r\n\x1a\n truncated by a full disk")  # after the scan
    dataset.files[1].unlink()  # and one deleted by a cleanup job
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        crops = [dataset[i] for i in range(len(dataset))]
    assert all(c.shape == (3, 32, 32) and torch.isfinite(c).all() for c in crops)
    # every failed read is counted: per pass, index 0 tries files 0 (bad), 1 (bad), 2; index 1 tries 1 (bad), 2
    assert dataset.skipped == 6


# =========================================================================== 5. CLI hygiene
@pytest.fixture
def png(tmp_path, natural_images) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.ascontiguousarray(natural_images["astronaut"][:16, :24])).save(path)
    return path


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


@pytest.mark.parametrize("command", ["compress", "decompress"])
@pytest.mark.parametrize("fault", ["interrupt-at-rename", "disk-full-mid-write"])
def test_interrupted_write_leaves_no_partial_file(tmp_path, png, model_file, monkeypatch, command, fault):
    src, out = png, tmp_path / "out.cdf"
    if command == "decompress":
        assert run_main("compress", png, "-o", out, "--model", model_file, "--steps", 1)[0] == 0
        src, out = out, tmp_path / "out.png"
    if fault == "interrupt-at-rename":
        def commit(*args):
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "replace", commit)
        monkeypatch.setattr(os, "link", commit)  # the commit of an output created exclusively (no --force)
    else:
        real_fdopen = os.fdopen

        class HalfWritten(io.BufferedWriter):
            def write(self, data):
                super().write(bytes(data)[: len(data) // 2])
                raise OSError(28, "No space left on device")

        def fdopen(fd, mode="r", *args, **kwargs):
            if mode != "wb":
                return real_fdopen(fd, mode, *args, **kwargs)
            return HalfWritten(real_fdopen(fd, "wb", buffering=0))

        monkeypatch.setattr(os, "fdopen", fdopen)
    steps = ["--steps", 1] if command == "compress" else []
    code, err = run_main(command, src, "-o", out, "--model", model_file, *steps)
    if fault == "interrupt-at-rename":
        assert code == 130 and err.strip() == f"corrdiff {command}: interrupted; no output written"
    else:
        assert code == 2 and "No space left on device" in assert_one_line_error(err, command)
    assert not out.exists() and not _leftovers(tmp_path)


@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError])
def test_interrupted_overwrite_keeps_the_old_file(tmp_path, monkeypatch, fault):
    target = tmp_path / "image.cdf"
    target.write_bytes(b"old, complete file")

    def fsync(fd):
        raise fault()

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(fault):
        atomic_write(target, b"new file" * 1000)
    assert target.read_bytes() == b"old, complete file" and not _leftovers(tmp_path)


def test_export_refuses_to_overwrite_without_force(tmp_path):
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"precious")
    code, err = run_main("export", tmp_path / "whatever.ckpt", "-o", existing)
    assert code == 2 and "--force" in assert_one_line_error(err, "export")
    assert existing.read_bytes() == b"precious"


def test_directories_in_place_of_files(tmp_path, png, model_file):
    folder = tmp_path / "folder.cdf"
    folder.mkdir()
    code, err = run_main("decompress", folder, "-o", tmp_path / "o.png", "--model", model_file)
    # a folder input stands for the files below it (corrdiff/cli/batch.py): this one holds none
    assert code == 2 and "no .cdf or .avif files" in assert_one_line_error(err, "decompress")
    # output path is a directory: refused as such, with or without --force, before any work (issue 13, item 6)
    for force in ([], ["--force"]):
        code, err = run_main("compress", png, "-o", folder, "--model", model_file, "--steps", 1, *force)
        assert code == 2 and "is a folder" in assert_one_line_error(err, "compress")
    assert folder.is_dir() and not _leftovers(tmp_path)
    # output into a folder that does not exist
    code, err = run_main("compress", png, "-o", tmp_path / "missing" / "o.cdf", "--model", model_file, "--steps", 1)
    assert code == 2
    assert_one_line_error(err, "compress")
    # a directory given as the model
    code, err = run_main("compress", png, "-o", tmp_path / "o.cdf", "--model", tmp_path)
    assert code == 2 and "no such model file" in assert_one_line_error(err, "compress")


@pytest.mark.parametrize("what", ["read-cdf", "read-image", "write-output"])
def test_permission_denied_is_one_line_exit_2(tmp_path, png, model_file, monkeypatch, what):
    """Simulated (the tests may run as root, where chmod does not deny anything)."""
    cdf = tmp_path / "in.cdf"
    assert run_main("compress", png, "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    denied = PermissionError(13, "Permission denied")
    if what == "read-cdf":
        real = Path.read_bytes
        monkeypatch.setattr(Path, "read_bytes",
                            lambda self: (_ for _ in ()).throw(denied) if self == cdf else real(self))
        argv = ["decompress", cdf, "-o", tmp_path / "o.png"]
    elif what == "read-image":
        real_open = Image.open
        monkeypatch.setattr(Image, "open", lambda fp, *a, **k: (_ for _ in ()).throw(denied) if Path(fp) == png
                            else real_open(fp, *a, **k))
        argv = ["compress", png, "-o", tmp_path / "o.cdf"]
    else:
        import tempfile

        monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(denied))
        argv = ["decompress", cdf, "-o", tmp_path / "o.png"]
    code, err = run_main(*argv, "--model", model_file)
    assert code == 2 and "Permission denied" in assert_one_line_error(err, argv[0])
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.cdf").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_real_read_only_folder_and_unreadable_file(tmp_path, png, model_file):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, err = run_main("compress", png, "-o", locked / "o.cdf", "--model", model_file, "--steps", 1)
        assert code == 2 and "Permission denied" in assert_one_line_error(err, "compress")
    finally:
        locked.chmod(0o700)
    secret = tmp_path / "secret.cdf"
    secret.write_bytes(b"CDIF")
    secret.chmod(0)
    code, err = run_main("decompress", secret, "-o", tmp_path / "o.png", "--model", model_file)
    assert code == 2 and "Permission denied" in assert_one_line_error(err, "decompress")


def test_written_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "x.cdf", b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "x.cdf").stat().st_mode & 0o777 == 0o644
