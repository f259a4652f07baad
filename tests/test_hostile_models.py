"""Issue 16: hostile model files, coding-time guards, stream-length bound, exclusive and interruptible writes.

docs/reliability.md says what each group proves. Items of the issue:

1. a NaN in h_s is an error, never a table index (it segfaulted the process);
2. forged entropy tables are refused by load_model (they crashed encode and decode);
3. an infinite or absurd latent is an error, not an endless loop in the encoder;
4. of two writers without --force, the second fails and the first one's file is kept;
5. symbolic links and inputs are never outputs (compress, decompress, export, demo, eval, bench);
6. a stream longer than its symbols can take is refused before any padding;
7. interruptions: truthful messages, no temporary file after SIGINT/SIGTERM, SIGKILL's left-overs
   removed by the next run;
8. model files carry their fingerprint; a config changed behind it is refused when loading.

The hostile-model fuzz campaign (tools/fuzz_model.py) runs bounded at the end.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corrdiff import bitstream
from corrdiff.cli import main as cli_main
from corrdiff.errors import BitstreamError, EntropyCoderError, ModelLoadError
from corrdiff.files import atomic_write, remove_stale_temp_files
from corrdiff.image_io import OutputGuard, check_output
from corrdiff.model_io import check_model, load_model, save_model
from corrdiff.modules.priors import MAX_SYMBOL, MIN_SYMBOLS, ScaleGrid, check_symbols, max_stream_bytes

from conftest import make_codec, random_image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "experiments" / "default_model" / "models").rglob("*.pt"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run_main(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main([str(a) for a in argv])
    return code, err.getvalue()


def one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"corrdiff {command}: error: ") and "Traceback" not in err, err
    return lines[0]


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


@pytest.fixture
def png(tmp_path, natural_images) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.ascontiguousarray(natural_images["astronaut"][:16, :24])).save(path)
    return path


@pytest.fixture
def hostile(tiny_codec):
    """A private copy of the tiny codec to break in memory (the shared one stays intact)."""
    return copy.deepcopy(tiny_codec)


def payload_of(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def write_payload(payload: dict, path: Path) -> Path:
    torch.save(payload, path)
    return path


# =========================================================================== 1, 3: coding-time guards
def test_non_finite_scales_are_an_error_never_an_index():
    grid = ScaleGrid()
    assert grid.index(torch.tensor([0.0, 0.11, 1e9])).tolist() == [0, 0, 63]
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(EntropyCoderError, match="NaN or infinite scales"):
            grid.index(torch.tensor([1.0, bad]))


@pytest.mark.timeout(120, method="thread")
def test_nan_in_h_s_is_refused_at_coding_time(hostile):
    """Issue 16 item 1: a NaN weight in h_s segfaulted compress and decompress at 128 px (index -2^31)."""
    image = random_image(128, 128)
    good = hostile.compress(image, steps=1)
    with torch.no_grad():
        hostile.prior.h_s[0].weight[0, 0, 0, 0] = math.nan
    with pytest.raises(EntropyCoderError, match="NaN or infinite"):
        hostile.compress(image, steps=1)
    streams = bitstream.unpack(good).streams
    with pytest.raises(EntropyCoderError, match="NaN or infinite (scales|means)"):
        hostile.prior.decompress(list(streams), hostile.latent_hw(128, 128))


@pytest.mark.timeout(120, method="thread")
@pytest.mark.parametrize("where, value", [("h_a", math.inf), ("h_a", 1e30), ("encoder", 1e30), ("h_s", 1e30)])
def test_absurd_latents_are_refused_before_the_coder_not_an_endless_loop(hostile, where, value):
    """Issue 16 item 3: an inf weight in h_a made encode_with_indexes loop forever."""
    module = {"h_a": hostile.prior.h_a[0], "h_s": hostile.prior.h_s[-1], "encoder": hostile.encoder[0]}[where]
    with torch.no_grad():
        module.bias.fill_(value)
    start = time.perf_counter()
    with pytest.raises(EntropyCoderError, match="NaN or infinite|entropy coder's range"):
        hostile.compress(random_image(32, 48), steps=1)
    assert time.perf_counter() - start < 30


def test_symbol_range_and_count_are_checked_exactly():
    means = torch.zeros(1, 1, 1, MIN_SYMBOLS)
    check_symbols(torch.full_like(means, float(MAX_SYMBOL)), means, "y")
    with pytest.raises(EntropyCoderError, match="range"):
        check_symbols(torch.full_like(means, MAX_SYMBOL + 2.0), means, "y")  # the next float32 above 2^24
    with pytest.raises(EntropyCoderError, match="at least 4"):
        check_symbols(torch.zeros(1, 1, 1, MIN_SYMBOLS - 1), torch.zeros(1), "z")


@pytest.mark.timeout(120, method="thread")
def test_a_latent_too_narrow_for_the_encoder_buffer_is_refused(tmp_path):
    """compressai's encoder overruns its buffer (heap corruption) on streams of fewer than 4 symbols."""
    narrow = make_codec(0, prior={"name": "mean_scale_hyperprior", "hyper_channels": 2})
    with pytest.raises(EntropyCoderError, match="at least 4"):
        narrow.compress(random_image(16, 16), steps=1)
    with pytest.raises(ModelLoadError, match="too narrow"):
        save_model(narrow, tmp_path / "narrow.pt")
    assert not (tmp_path / "narrow.pt").exists()


# =========================================================================== 2: entropy tables
def _gc(payload, name):
    return payload["state_dict"][f"prior.gaussian_conditional.{name}"]


def _eb(payload, name):
    return payload["state_dict"][f"prior.entropy_bottleneck.{name}"]


def _set(payload, module, name, value):
    payload["state_dict"][f"prior.{module}.{name}"] = value


FORGERIES = {
    # name: (edit of the payload, words of the expected message)
    "gaussian cut to one row": (lambda p: _set(p, "gaussian_conditional", "_quantized_cdf", _gc(p, "_quantized_cdf")[:1]),
                                "1 CDF rows"),
    "gaussian tables all cut": (lambda p: [_set(p, "gaussian_conditional", n, _gc(p, n)[:1])
                                           for n in ("_quantized_cdf", "_cdf_length", "_offset")], "for 64 tables"),
    "bottleneck rows cut": (lambda p: [_set(p, "entropy_bottleneck", n, _eb(p, n)[:3])
                                       for n in ("_quantized_cdf", "_cdf_length", "_offset")], "for 24 tables"),
    "all-zero cdf": (lambda p: _set(p, "gaussian_conditional", "_quantized_cdf", torch.zeros_like(_gc(p, "_quantized_cdf"))),
                     "row 0: CDF does not end at 2^16"),
    "zero row": (lambda p: _gc(p, "_quantized_cdf")[5].zero_(), "row 5: CDF does not end"),
    "reversed row": (lambda p: _gc(p, "_quantized_cdf")[63].copy_(_gc(p, "_quantized_cdf")[63].flip(0)),
                     "row 63: CDF does not start at 0"),
    "frequency 0": (lambda p: _eb(p, "_quantized_cdf")[3, 2].copy_(_eb(p, "_quantized_cdf")[3, 1]),
                    "row 3: CDF does not strictly increase"),
    "end above 2^16": (lambda p: _eb(p, "_quantized_cdf")[1, int(_eb(p, "_cdf_length")[1]) - 1].fill_(65537),
                       "row 1: CDF does not end at 2^16"),
    "length beyond the row": (lambda p: _gc(p, "_cdf_length")[9].fill_(_gc(p, "_quantized_cdf").shape[1] + 1),
                              "row 9: CDF length outside"),
    "length 2": (lambda p: _gc(p, "_cdf_length")[0].fill_(2), "row 0: CDF length outside"),
    "negative length": (lambda p: _eb(p, "_cdf_length")[0].fill_(-(1 << 31)), "row 0: CDF length outside"),
    "positive offset": (lambda p: _gc(p, "_offset")[4].fill_(1), "row 4: offset outside"),
    "offset beyond the row": (lambda p: _eb(p, "_offset")[2].fill_(-(1 << 31)), "row 2: offset outside"),
    "2-D lengths": (lambda p: _set(p, "gaussian_conditional", "_cdf_length", _gc(p, "_cdf_length")[None]), "1-D int32"),
    "scale table decreasing": (lambda p: _gc(p, "scale_table").copy_(_gc(p, "scale_table").flip(0)), "scale_table"),
    "scale table negative": (lambda p: _gc(p, "scale_table")[0].fill_(-1.0), "scale_table"),
    "scale table duplicate": (lambda p: _gc(p, "scale_table")[3].copy_(_gc(p, "scale_table")[2]), "scale_table"),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_forged_entropy_tables_are_refused_when_loading(model_file, tmp_path, forgery):
    """Issue 16 item 2: tables cut to one row segfaulted; all-zero rows raised SIGFPE on encode."""
    edit, words = FORGERIES[forgery]
    payload = payload_of(model_file)
    payload.pop("fingerprint")  # a forger drops it (files without one load), so the tables are what is checked
    edit(payload)
    path = write_payload(payload, tmp_path / "forged.pt")
    with pytest.raises(ModelLoadError, match="entropy tables of prior") as info:
        load_model(path)
    assert words in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_forged_tables_through_the_cli_are_one_line_exit_2(model_file, tmp_path, png):
    payload = payload_of(model_file)
    payload.pop("fingerprint")
    FORGERIES["all-zero cdf"][0](payload)
    path = write_payload(payload, tmp_path / "forged.pt")
    for argv in (["compress", png, "-o", tmp_path / "o.cdf"], ["decompress", tmp_path / "x.cdf", "-o", tmp_path / "o.png"]):
        (tmp_path / "x.cdf").write_bytes(b"CDIF")
        code, err = run_main(*argv, "--model", path)
        assert code == 2 and "entropy tables" in one_line_error(err, argv[0])


def test_shipped_and_golden_models_pass_the_validator():
    """The shipped files written before files stored their fingerprint keep loading, and so do the later ones
    (which store one, checked at load: the current default, the experiments' later exports); every table keeps the
    coder's contract."""
    assert len(SHIPPED) >= 5
    assets = ROOT / "corrdiff" / "assets"
    old = [path for path in SHIPPED if "fingerprint" not in payload_of(path)]
    assert len(old) >= 5
    for path in [*old, assets / "smooth.pt", ROOT / "tests" / "golden" / "model.pt"]:
        assert "fingerprint" not in payload_of(path)
        check_model(load_model(path))
    later = [path for path in SHIPPED if path not in old]
    for path in (*later, assets / "default.pt", assets / "variable.pt", ROOT / "tests" / "golden" / "model-rate.pt"):
        model = load_model(path)
        check_model(model)
        assert bytes.fromhex(payload_of(path)["fingerprint"]) == model.fingerprint()


def test_save_model_validates_before_writing(tmp_path, monkeypatch):
    """save_model (so `corrdiff export`) runs the validator on the rebuilt tables; nothing is written when it fails."""
    from corrdiff import model_io

    def broken_update(self, force=False):
        self.prior.gaussian_conditional._quantized_cdf.zero_()
        return True

    codec = make_codec(0)
    monkeypatch.setattr(type(codec), "update", broken_update)
    with pytest.raises(ModelLoadError, match="entropy tables"):
        model_io.save_model(codec, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists() and not temp_files(tmp_path)


# =========================================================================== 8: stored fingerprint
def test_model_files_record_their_fingerprint(tiny_codec, model_file):
    assert payload_of(model_file)["fingerprint"] == tiny_codec.fingerprint().hex()


@pytest.mark.parametrize("change", ["schedule", "sampler_eta", "steps", "gamma_granularity"])
def test_a_config_changed_with_the_same_shapes_is_refused_when_loading(model_file, tmp_path, change):
    """Issue 16 item 8: e.g. a cosine schedule instead of a linear one loaded silently."""
    payload = payload_of(model_file)
    config = json.loads(payload["config"])
    if change == "schedule":
        config["schedule"] = {"name": "cosine"}
    elif change == "sampler_eta":
        config["sampler"]["eta"] = 0.5
    elif change == "steps":
        config["steps"] = 4
    else:
        config["correction"]["granularity"] = "channel" if config["correction"]["granularity"] == "scalar" else "scalar"
    payload["config"] = json.dumps(config)
    path = write_payload(payload, tmp_path / "changed.pt")
    with pytest.raises(ModelLoadError, match="stored fingerprint .* differs from the model's"):
        load_model(path)
    payload.pop("fingerprint")  # without one, the file loads (and its files are refused at decode time)
    assert load_model(write_payload(payload, path)).fingerprint() != payload_of(model_file)["fingerprint"]


def test_changed_weights_and_garbled_fingerprints_are_refused(model_file, tmp_path):
    payload = payload_of(model_file)
    payload["state_dict"]["decoder.0.bias"] = payload["state_dict"]["decoder.0.bias"] + 1e-3
    with pytest.raises(ModelLoadError, match="stored fingerprint"):
        load_model(write_payload(payload, tmp_path / "w.pt"))
    for garbled in (7, "", "zz" * 8):
        payload = payload_of(model_file)
        payload["fingerprint"] = garbled
        with pytest.raises(ModelLoadError, match="fingerprint"):
            load_model(write_payload(payload, tmp_path / "g.pt"))


def test_half_precision_files_record_the_fingerprint_of_the_loaded_model(tiny_codec, tmp_path):
    save_model(tiny_codec, tmp_path / "half.pt", half=True)
    loaded = load_model(tmp_path / "half.pt")
    assert payload_of(tmp_path / "half.pt")["fingerprint"] == loaded.fingerprint().hex() != tiny_codec.fingerprint().hex()


def test_weights_that_overflow_float16_are_refused_before_writing(tmp_path):
    codec = make_codec(0)
    with torch.no_grad():
        codec.decoder[0].bias[0] = 1e6
    with pytest.raises(ModelLoadError, match="overflow float16"):
        save_model(codec, tmp_path / "h.pt", half=True)
    assert not (tmp_path / "h.pt").exists()


# =========================================================================== 6: stream lengths
@pytest.mark.parametrize("n", [4, 5, 7, 100, 3000])
def test_max_stream_bytes_bounds_the_encoders_worst_case(tiny_codec, n):
    """The proven bound holds for the costliest symbols (rarest bin, 7 bypass chunks) and is nearly tight."""
    gc = tiny_codec.prior.gaussian_conditional
    rng = random.Random(n)
    longest = 0
    for value, row in ((MAX_SYMBOL, 0), (-MAX_SYMBOL, 0), ((1 << 27) - 1, 0), (MAX_SYMBOL, 63), (3, 63), (None, None)):
        if value is None:  # random mixture
            symbols = torch.tensor([float(rng.choice((0, 1, -40, MAX_SYMBOL, -MAX_SYMBOL))) for _ in range(n)])
            indexes = torch.tensor([rng.randrange(64) for _ in range(n)], dtype=torch.int32)
        else:
            symbols, indexes = torch.full((n,), float(value)), torch.full((n,), row, dtype=torch.int32)
        stream = gc.compress(symbols.view(1, 1, 1, n), indexes.view(1, 1, 1, n))[0]
        assert len(stream) <= max_stream_bytes(n)
        longest = max(longest, len(stream))
    assert longest >= 6 * n + 8 - 4  # 48 bits a symbol, reached: the bound is not vacuous


def _with_streams(data: bytes, streams: tuple[bytes, ...]) -> bytes:
    """The file with other streams, CRC recomputed (what a forger writes)."""
    return bitstream.pack(dataclasses.replace(bitstream.unpack(data), streams=streams))


def test_oversized_stream_is_refused_before_any_padding(tiny_codec, encoded, monkeypatch):
    """Issue 16 item 6: a 32 MiB stream behind a 64x64 header cost ~1 GiB of padding and copies."""
    data = encoded("random32x48").data
    z, y = bitstream.unpack(data).streams
    y_limit = max_stream_bytes(tiny_codec.prior.stream_symbols(tiny_codec.latent_hw(32, 48))[1])
    from corrdiff.modules import entropy_coding  # where every prior's padded range decoder reads it

    monkeypatch.setattr(entropy_coding, "range_decoder_padding", lambda *a: pytest.fail("padded an oversized stream"))
    for streams in ((z, y + bytes(1 << 20)), (z, y + bytes(y_limit - len(y) + 1)), (z + bytes(1 << 16), y)):
        with pytest.raises(BitstreamError, match=r"stream [zy] holds \d+ bytes, more than the \d+ bytes"):
            tiny_codec.decompress(_with_streams(data, streams))
    monkeypatch.undo()
    padded = _with_streams(data, (z, y + bytes(y_limit - len(y))))  # at the bound: decoded (or refused otherwise)
    try:
        tiny_codec.decompress(padded)
    except BitstreamError as exc:
        assert "more than" not in str(exc)


def test_oversized_stream_through_the_cli_is_one_line_exit_2(tmp_path, encoded, model_file, tiny_codec):
    data = encoded("random32x48").data
    z, y = bitstream.unpack(data).streams
    (tmp_path / "big.cdf").write_bytes(_with_streams(data, (z, y + bytes(8 << 20))))
    code, err = run_main("decompress", tmp_path / "big.cdf", "-o", tmp_path / "o.png", "--model", model_file)
    assert code == 2 and "more than" in one_line_error(err, "decompress") and not (tmp_path / "o.png").exists()


OVERSIZED_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    limit = int(float(sys.argv[1]) * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from corrdiff.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_96_mib_file_under_an_address_space_limit_is_one_line_exit_2(tmp_path, encoded, model_file):
    """Issue 16 item 6: 96 MiB under a 4 GiB limit (here 5 GiB: torch alone maps ~4 GiB) was a MemoryError traceback."""
    data = encoded("random32x48").data
    z, y = bitstream.unpack(data).streams
    big = tmp_path / "big.cdf"
    big.write_bytes(_with_streams(data, (z, y + bytes(96 << 20))))
    proc = subprocess.run([sys.executable, "-c", OVERSIZED_SCRIPT, "5", "decompress", str(big), "-o",
                           str(tmp_path / "o.png"), "--model", str(model_file)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=280)
    assert proc.returncode == 2 and "more than" in one_line_error(proc.stderr, "decompress")


# =========================================================================== 4: exclusive creation
def test_second_writer_without_force_fails_and_keeps_the_first(tmp_path, monkeypatch):
    """Issue 16 item 4: exists() then rename let the second writer replace the first one's file."""
    target = tmp_path / "out.cdf"
    real_fsync = os.fsync

    def other_writer_finishes_first(fd):
        real_fsync(fd)
        if not target.exists():
            target.write_bytes(b"the other writer's complete file")

    monkeypatch.setattr(os, "fsync", other_writer_finishes_first)
    with pytest.raises(FileExistsError, match="another writer"):
        atomic_write(target, b"ours", overwrite=False)
    assert target.read_bytes() == b"the other writer's complete file" and not temp_files(tmp_path)
    atomic_write(target, b"ours", overwrite=True)  # --force still replaces, atomically
    assert target.read_bytes() == b"ours" and not temp_files(tmp_path)


def test_exclusive_creation_without_hard_links(tmp_path, monkeypatch):
    """On a file system without hard links (EPERM from link) the name is reserved with O_EXCL."""
    monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(PermissionError(1, "Operation not permitted")))
    atomic_write(tmp_path / "a.cdf", b"data", overwrite=False)
    assert (tmp_path / "a.cdf").read_bytes() == b"data" and not temp_files(tmp_path)
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (real_fsync(fd), (tmp_path / "b.cdf").write_bytes(b"theirs")))
    with pytest.raises(FileExistsError, match="another writer"):
        atomic_write(tmp_path / "b.cdf", b"ours", overwrite=False)
    assert (tmp_path / "b.cdf").read_bytes() == b"theirs" and not temp_files(tmp_path)


RACE_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from corrdiff.files import atomic_write
    go, target, tag = sys.argv[1:4]
    while not os.path.exists(go):
        time.sleep(0.0005)
    try:
        atomic_write(target, tag.encode() * 200000, overwrite=False)
        print("wrote")
    except FileExistsError as exc:
        print("refused:", exc)
    """
)


@pytest.mark.timeout(240)
def test_concurrent_writers_without_force_exactly_one_wins(tmp_path):
    """Two processes released together write the same new output: one file, the other refused (8 rounds)."""
    for round_ in range(8):
        go, target = tmp_path / f"go{round_}", tmp_path / f"out{round_}.cdf"
        procs = [subprocess.Popen([sys.executable, "-c", RACE_SCRIPT, str(go), str(target), tag], stdout=subprocess.PIPE,
                                  text=True, env=ENV, cwd=ROOT) for tag in "AB"]
        time.sleep(0.5)  # both are waiting
        go.touch()
        results = [p.communicate(timeout=60)[0].strip() for p in procs]
        winners = [tag for tag, r in zip("AB", results) if r == "wrote"]
        assert len(winners) == 1, results
        assert all(r == "wrote" or "another writer" in r or "exists" in r for r in results), results
        assert target.read_bytes() == winners[0].encode() * 200000
    assert not temp_files(tmp_path)


def test_cli_writer_that_loses_the_race_is_one_line_exit_2(tmp_path, png, model_file, monkeypatch):
    out = tmp_path / "o.cdf"
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (real_fsync(fd), None if out.exists() else out.write_bytes(b"theirs")))
    code, err = run_main("compress", png, "-o", out, "--model", model_file, "--steps", 1)
    assert code == 2 and "another writer" in one_line_error(err, "compress")
    assert out.read_bytes() == b"theirs" and not temp_files(tmp_path)


# =========================================================================== 5: aliases
@pytest.mark.parametrize("link", ["dangling", "to_a_file"])
@pytest.mark.parametrize("force", [False, True])
def test_symbolic_links_are_never_outputs(tmp_path, png, model_file, link, force):
    """Issue 16 item 5: a dangling link was replaced without -f; a link given -f became a regular file."""
    target = tmp_path / "elsewhere.cdf"
    if link == "to_a_file":
        target.write_bytes(b"someone's file")
    out = tmp_path / "link.cdf"
    out.symlink_to(target)
    flags = ["-f"] if force else []
    code, err = run_main("compress", png, "-o", out, "--model", model_file, "--steps", 1, *flags)
    assert code == 2 and "symbolic link" in one_line_error(err, "compress")
    cdf = tmp_path / "real.cdf"
    assert run_main("compress", png, "-o", cdf, "--model", model_file, "--steps", 1)[0] == 0
    png_link = tmp_path / "link.png"
    png_link.symlink_to(tmp_path / "elsewhere.png")
    code, err = run_main("decompress", cdf, "-o", png_link, "--model", model_file, *flags)
    assert code == 2 and "symbolic link" in one_line_error(err, "decompress")
    assert out.is_symlink() and png_link.is_symlink() and not (tmp_path / "elsewhere.png").exists()
    assert target.read_bytes() == b"someone's file" if link == "to_a_file" else not target.exists()


def test_the_model_file_is_never_an_output_even_with_force(tmp_path, png, model_file):
    before = Path(model_file).read_bytes()
    for argv in (["compress", png], ["compress", png, "--save-reconstruction", model_file, "-o", tmp_path / "x.cdf"]):
        out = [] if "-o" in argv else ["-o", model_file]
        code, err = run_main(*argv, *out, "--model", model_file, "-f")
        assert code == 2 and "also an input" in one_line_error(err, "compress")
    assert Path(model_file).read_bytes() == before


def test_export_bench_demo_and_eval_use_the_guard(tmp_path, png, model_file, tiny_codec):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "nowhere.json")
    code, err = run_main("export", tmp_path / "c.ckpt", "-o", link, "-f")
    assert code == 2 and "symbolic link" in one_line_error(err, "export")
    code, err = run_main("bench", "--quick", "--json", link, "-f")
    assert code == 2 and "symbolic link" in one_line_error(err, "bench")
    out = tmp_path / "demo"
    out.mkdir()
    photo = out / "demo.png"  # the photo to demonstrate on is where demo writes its decoded image
    photo.write_bytes(png.read_bytes())
    code, err = run_main("demo", "--model", model_file, "--image", photo, "--out", out)
    assert code == 2 and "also an input" in one_line_error(err, "demo") and photo.read_bytes() == png.read_bytes()
    from corrdiff.evaluation import run_eval

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(png.read_bytes())
    results = tmp_path / "results"
    results.mkdir()
    (results / "index.json").symlink_to(photos / "a.png")  # a link into the data: never written through
    with pytest.raises(FileExistsError, match="also an input"):
        run_eval(photos, [tiny_codec], out=results, modes="e2e", baselines="none", metrics="psnr-rgb", progress=False,
                 log=lambda *a: None)
    assert (photos / "a.png").read_bytes() == png.read_bytes()


def test_output_guard_identifies_inputs_by_device_and_inode(tmp_path):
    data = tmp_path / "data.png"
    data.write_bytes(b"x")
    os.link(data, tmp_path / "hard.png")
    guard = OutputGuard([data, None, tmp_path / "missing"], force=True)
    with pytest.raises(FileExistsError, match="also an input"):
        guard.check(tmp_path / "hard.png")
    assert guard.check(tmp_path / "new.png") == tmp_path / "new.png"
    with pytest.raises(FileExistsError, match="pass --force"):
        check_output(tmp_path / "hard.png", [], force=False)


# =========================================================================== 7: interruptions
def _signal_after(fn, sig):
    """``fn`` that, once done, sends ``sig`` to this process (it lands at the next bytecode, as a real one would)."""

    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        signal.raise_signal(sig)
        return result

    return wrapper


@pytest.mark.parametrize("force", [False, True])
def test_ctrl_c_landing_just_after_the_rename_says_the_output_was_written(tmp_path, png, model_file, monkeypatch, force):
    """Issue 16 item 7: 'interrupted; no output written' was printed while the rename had completed."""
    out = tmp_path / "o.cdf"
    if force:
        out.write_bytes(b"old")
    monkeypatch.setattr(os, "link", _signal_after(os.link, signal.SIGINT))
    monkeypatch.setattr(os, "replace", _signal_after(os.replace, signal.SIGINT))
    code, err = run_main("compress", png, "-o", out, "--model", model_file, "--steps", 1, *(["-f"] if force else []))
    assert code == 130 and err.strip() == f"corrdiff compress: interrupted; wrote {out} before stopping; nothing else was written"
    assert bitstream.unpack(out.read_bytes()).height == 16 and not temp_files(tmp_path)


def test_ctrl_c_between_two_outputs_names_only_the_first(tmp_path, png, model_file, monkeypatch):
    out, rec = tmp_path / "o.cdf", tmp_path / "rec.png"
    real_link = os.link
    monkeypatch.setattr(os, "link", lambda src, dst: (real_link(src, dst), signal.raise_signal(signal.SIGINT)
                                                      if Path(dst) == out else None))
    code, err = run_main("compress", png, "-o", out, "--model", model_file, "--steps", 1, "--save-reconstruction", rec)
    assert code == 130 and f"wrote {out} before stopping" in err and str(rec) not in err
    assert out.exists() and not rec.exists() and not temp_files(tmp_path)


def test_ctrl_c_that_an_import_turns_into_another_error_is_still_an_interrupt(tmp_path, png, model_file, monkeypatch):
    """A SIGINT landing in an extension module's initialisation surfaces as ImportError('initialization
    failed'), not KeyboardInterrupt (seen in the random Ctrl-C test below): it still ends as the interrupt."""
    from corrdiff.cli import entry

    def interrupted_import(args):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None

    monkeypatch.setitem(entry.COMMANDS, "compress", interrupted_import)
    code, err = run_main("compress", png, "-o", tmp_path / "o.cdf", "--model", model_file)
    assert code == 130 and err.strip() == "corrdiff compress: interrupted; no output written"


FAULT_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    fault = sys.argv[1]
    real_fsync = os.fsync
    def fsync(fd):
        real_fsync(fd)
        if fault == "sigterm-at-fsync":
            os.kill(os.getpid(), signal.SIGTERM)
        elif fault == "hang-at-fsync":
            print("temporary file written", flush=True)
            time.sleep(600)
    os.fsync = fsync
    from corrdiff.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _cli_process(fault: str, *argv, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", FAULT_SCRIPT, fault, *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT, **kwargs)


@pytest.mark.timeout(240)
def test_sigterm_mid_write_removes_the_temporary_file_and_says_so(tmp_path, png, model_file):
    out = tmp_path / "o.cdf"
    proc = _cli_process("sigterm-at-fsync", "compress", png, "-o", out, "--model", model_file, "--steps", 1)
    _, err = proc.communicate(timeout=200)
    assert proc.returncode == 143, err
    assert err.strip() == "corrdiff compress: terminated by SIGTERM; no output written"
    assert not out.exists() and not temp_files(tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_leaves_a_temporary_file_that_the_next_run_removes(tmp_path, png, model_file):
    """Only SIGKILL (or a power cut) can leave a temporary file; the next write of that output removes it."""
    out = tmp_path / "o.cdf"
    proc = _cli_process("hang-at-fsync", "compress", png, "-o", out, "--model", model_file, "--steps", 1)
    assert proc.stdout.readline().strip() == "temporary file written"
    proc.kill()
    proc.communicate(timeout=60)
    left = temp_files(tmp_path)
    assert len(left) == 1 and left[0].name.startswith(f".o.cdf.{proc.pid}.") and not out.exists()
    again = _cli_process("none", "compress", png, "-o", out, "--model", model_file, "--steps", 1)
    _, err = again.communicate(timeout=200)
    assert again.returncode == 0, err
    assert out.exists() and not temp_files(tmp_path)


def test_stale_temp_cleanup_spares_live_writers_and_other_files(tmp_path, monkeypatch):
    from corrdiff import files

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = {
        "stale": f".out.cdf.{dead_pid}.abcd_123.tmp",
        "old_format": ".out.cdf.k2j4h5g6.tmp",
        "live_writer": f".out.cdf.{os.getppid()}.abcdefgh.tmp",
        "other_output": f".other.cdf.{dead_pid}.abcdefgh.tmp",
        "not_ours": f".out.cdf.{dead_pid}.notours.tmp.bak",
        "fresh": f".out.cdf.{dead_pid}.zzzzzzzz.tmp",
    }
    for key, name in names.items():
        (tmp_path / name).write_bytes(b"partial")
        if key != "fresh":
            os.utime(tmp_path / name, (time.time() - 3600, time.time() - 3600))
    monkeypatch.setattr(files, "_STARTED", time.time() - 60)  # "fresh" was modified after this process started
    removed = {p.name for p in remove_stale_temp_files(tmp_path / "out.cdf")}
    assert removed == {names["stale"], names["old_format"]}
    assert all((tmp_path / names[k]).exists() for k in ("live_writer", "other_output", "not_ours", "fresh"))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_random_ctrl_c_ends_in_exit_130_or_0_with_a_truthful_message(tmp_path, png, model_file):
    """Issue 16 item 7: 4 of 12 random SIGINTs ended the process by the signal instead of exit 130."""
    rng = random.Random(16)
    outcomes = []
    for k in range(6):
        out, rec = tmp_path / f"o{k}.cdf", tmp_path / f"r{k}.png"
        proc = subprocess.Popen([sys.executable, "-m", "corrdiff.cli", "compress", str(png), "-o", str(out), "--model",
                                 str(model_file), "--steps", "1", "--save-reconstruction", str(rec)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
        time.sleep(rng.uniform(0.3, 3.0) if k < 4 else rng.uniform(3.0, 9.0))  # mostly while torch loads
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=200)
        outcomes.append(proc.returncode)
        assert proc.returncode in (0, 130), (proc.returncode, err)
        if proc.returncode == 130:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("corrdiff compress: interrupted; "), err
            for path in (out, rec):
                assert path.exists() == (str(path) in lines[0]), err
            assert ("no output written" in lines[0]) == (not out.exists() and not rec.exists())
        assert not temp_files(tmp_path)
    assert 130 in outcomes


# =========================================================================== the hostile-model fuzz campaign
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_hostile_model_fuzz_campaign_has_no_crash_hang_or_traceback(tmp_path):
    """tools/fuzz_model.py, bounded: 36 mutated models through compress and decompress, each checked."""
    report = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, "tools/fuzz_model.py", "--cases", "36", "--seed", "0", "--timeout", "60",
                           "--json", str(report)], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=580)
    summary = json.loads(report.read_text())
    totals = summary["totals"]
    assert proc.returncode == 0 and totals["failures"] == 0, proc.stdout[-3000:]
    assert totals["cases"] == 36 and totals["crashed"] == 0 and totals["hung"] == 0
    assert totals["ok"] > 0 and totals["refused"] > 0 and totals["decoded"] > 0
    assert set(summary["mutations"]) >= {"weights", "tables", "scale_table", "config"}
