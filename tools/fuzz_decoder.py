"""Long fuzz campaign for the ``.cdf`` decoder: mutated files through ``decompress`` and the CLI.

    python tools/fuzz_decoder.py --minutes 3                 # tiny variable-rate model, seeded random weights
    python tools/fuzz_decoder.py --minutes 3 --base avif     # tiny AVIF-base model: the AV1 stream is damaged
    python tools/fuzz_decoder.py --max-files 20000 --model model.pt --seed 7 --save-dir fuzz-out

Every case is a valid file from the model (corrected, diffusion or e2e mode) mutated by a few
random operations (bit flips, byte replacements, insertions, deletions, truncation, header
fields set to edge values, entropy-coded streams replaced by random bytes), and, in most cases,
with the CRC recomputed so that the damage reaches the header checks and the entropy decoder.
Each case must end in exactly one of:

* ``decoded``: an image of the shape the header names, finite, in [0, 1];
* ``refused:<kind>``: :class:`corrdiff.BitstreamError` (kinds: checksum, truncated, header
  field, decode-size limit, fingerprint, streams, sampler, ...);
* for every ``--cli-every``-th case also ``corrdiff decompress`` in-process: exit 0 with a PNG
  of the right size, or exit 2 with a one-line message and no output file.

Anything else is a failure and is counted as such: another exception (``unexpected:<type>``),
a bad output (``bad-output``), a worker killed by a signal (``crash``, e.g. a segfault in
native code) or a case that takes longer than ``--timeout`` seconds (``hang``). The cases run in
a worker subprocess so that crashes and hangs are observed, not suffered; a failing case is
written to ``--save-dir`` and can be replayed (``--replay FILE``). The tests
(tests/test_reliability.py) reuse :func:`mutate` with hypothesis-generated operations.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import selectors
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- mutations (no torch)
FIELDS = ("mode", "height", "width", "flags", "name_len", "steps", "param_count", "sampler_param", "seed", "record_count",
          "quality", "gamma_code", "stream_count")
FLOAT_FIELDS = ("sampler_param", "quality")  # mutated with INTERESTING_FLOATS, the others with INTERESTING
INTERESTING = (0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 257, 999, 1000,
               1001, 4095, 4096, 8191, 8192, 16384, 32767, 32768, 65534, 65535, 2**31 - 1, 2**32 - 1)
INTERESTING_FLOATS = (0.0, -0.0, 0.5, 1.0, 1.0000001, -1e-9, 2.0, 65504.0, math.inf, -math.inf, math.nan)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def layout(seed_file: bytes) -> dict[str, int]:
    """Byte offsets of the header fields of a valid file (the seed of the mutations), from the reader itself."""
    from corrdiff.bitstream import field_offsets

    at = field_offsets(seed_file)
    offsets = {"mode": at["mode"], "height": at["image size"], "width": at["image size"] + 2, "flags": at["flags"],
               "name_len": at["sampler name length"], "steps": at["steps"], "seed": at["seed"],
               "stream_count": at["stream count"], "streams": at["streams"]}
    optional = {"gamma_code": "gamma code", "param_count": "sampler parameter count", "sampler_param": "sampler parameters",
                "record_count": "record count", "quality": "record"}
    offsets.update({ours: at[theirs] for ours, theirs in optional.items() if theirs in at})
    return offsets


_WIDTH = {"mode": "<B", "name_len": "<B", "flags": "<B", "gamma_code": "<B", "stream_count": "<B", "height": "<H", "width": "<H",
          "steps": "<H", "seed": "<I", "param_count": "<B", "sampler_param": "<f", "record_count": "<B", "quality": "<f"}


def mutate(data: bytes, ops: list[tuple], fix_crc: bool) -> bytes:
    """Apply mutation operations to a valid ``.cdf`` file; optionally recompute its CRC.

    Operations (positions are taken modulo the current length):
    ``("flip", pos, bit)``, ``("set", pos, byte)``, ``("insert", pos, bytes)``,
    ``("delete", pos, count)``, ``("truncate", keep)``, ``("field", name, value)`` (a header field
    of :data:`FIELDS` at its offset in the seed file), ``("stream_flip", pos, bit)`` (a bit of the
    entropy-coded bytes), ``("streams", (bytes, ...))`` (replace the entropy-coded streams and their
    lengths by these payloads).
    """
    offsets = layout(data) if len(data) > 40 else {}
    buf = bytearray(data)
    for op in ops:
        kind = op[0]
        if kind == "flip" and buf:
            buf[op[1] % len(buf)] ^= 1 << (op[2] % 8)
        elif kind == "set" and buf:
            buf[op[1] % len(buf)] = op[2] & 0xFF
        elif kind == "insert":
            pos = op[1] % (len(buf) + 1)
            buf[pos:pos] = op[2]
        elif kind == "delete" and buf:
            pos = op[1] % len(buf)
            del buf[pos : pos + op[2]]
        elif kind == "truncate":
            del buf[op[1] % (len(buf) + 1) :]
        elif kind == "field" and op[1] in offsets:
            fmt = _WIDTH[op[1]]
            value = float(op[2]) if fmt == "<f" else int(op[2]) % (1 << (8 * struct.calcsize(fmt)))
            raw = struct.pack(fmt, value)
            at = offsets[op[1]]
            buf[at : at + len(raw)] = raw
        elif kind == "stream_flip" and "streams" in offsets and len(buf) > offsets["streams"] + 4:
            at = offsets["streams"]
            buf[at + op[1] % (len(buf) - 4 - at)] ^= 1 << (op[2] % 8)
        elif kind == "streams" and "stream_count" in offsets:
            at = offsets["stream_count"]
            payloads = tuple(op[1])
            section = struct.pack(f"<B{len(payloads)}I", len(payloads), *map(len, payloads)) + b"".join(payloads)
            buf = buf[:at] + section + b"\0\0\0\0"
    out = bytes(buf)
    if fix_crc and len(out) >= 4:
        out = with_crc(out[:-4])
    return out


def random_ops(rng: random.Random, data: bytes) -> tuple[list[tuple], bool]:
    """A random list of 1..4 mutation operations for :func:`mutate`, and whether to fix the CRC."""
    ops: list[tuple] = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        kind = rng.choice(("flip", "flip", "set", "set", "insert", "delete", "truncate", "field", "field", "field",
                           "streams", "streams", "stream_flip", "stream_flip"))
        if kind in ("flip", "stream_flip"):
            ops.append((kind, rng.randrange(1 << 16), rng.randrange(8)))
        elif kind == "set":
            ops.append(("set", rng.randrange(1 << 16), rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))))
        elif kind == "insert":
            ops.append(("insert", rng.randrange(1 << 16), rng.randbytes(rng.choice((1, 1, 2, 4, 8, 33)))))
        elif kind == "delete":
            ops.append(("delete", rng.randrange(1 << 16), rng.choice((1, 1, 2, 4, 8))))
        elif kind == "truncate":
            ops.append(("truncate", rng.randrange(len(data) + 1)))
        elif kind == "field":
            name = rng.choice(FIELDS)
            if name in FLOAT_FIELDS:
                value = rng.choice(INTERESTING_FLOATS)
            else:
                value = rng.choice(INTERESTING + (rng.randrange(1 << 32),))
            ops.append(("field", name, value))
        else:
            count = rng.choice((2, 2, 2, 1, 3, 0, 5))
            ops.append(("streams", tuple(_random_payload(rng) for _ in range(count))))
    return ops, rng.random() < 0.85


def _random_payload(rng: random.Random) -> bytes:
    n = rng.choice((0, 1, 3, 4, 7, 8, 16, 64, 300, rng.randrange(2000)))
    fill = rng.choice(("random", "random", "ff", "zero", "f0"))
    if fill == "random":
        return rng.randbytes(n)
    return {"ff": b"\xff", "zero": b"\0", "f0": b"\xf0"}[fill] * n


# ----------------------------------------------------------------------------- outcomes (torch)
def refusal_kind(exc: Exception) -> str:
    """A short name for why a file was refused (for the outcome counts)."""
    from corrdiff.errors import ModelMismatchError

    if isinstance(exc, ModelMismatchError):
        return "fingerprint"
    text = str(exc)
    for needle, kind in (("bad magic", "magic"), ("checksum", "checksum"), ("format version", "version"),
                         ("truncated", "truncated"), ("decoder's limit", "decode-size-limit"),
                         ("stream lengths", "stream-lengths"), ("streams", "stream-count"),
                         ("non-finite", "non-finite-output"), ("entropy-coded", "entropy-decoder"),
                         ("sampler", "sampler"), ("gamma", "gamma-steps"), ("tile", "gamma-steps"), ("flags", "flags"), ("record", "records"), ("quality", "records"), ("no gammas", "mode"),
                         ("no sampling steps", "mode")):
        if needle in text:
            return kind
    return "header-field"


def decode_case(codec, data: bytes) -> tuple[str, str]:
    """Decode ``data``; return (outcome kind, detail). Kinds: decoded, refused:*, bad-output, unexpected:*."""
    from corrdiff import bitstream
    from corrdiff.errors import BitstreamError

    try:
        image = codec.decompress(data)
    except BitstreamError as exc:
        return f"refused:{refusal_kind(exc)}", str(exc)[:200]
    except Exception as exc:  # noqa: BLE001 - the point is to see any other exception
        return f"unexpected:{type(exc).__name__}", str(exc)[:200]
    header = bitstream.unpack(data)
    shape_ok = tuple(image.shape) == (1, 3, header.height, header.width)
    if not shape_ok or not bool(image.isfinite().all()) or float(image.min()) < 0 or float(image.max()) > 1:
        return "bad-output", f"shape {tuple(image.shape)}"
    return "decoded", f"{header.height}x{header.width} {header.mode}"


def cli_case(model_path: str, data: bytes, folder: Path) -> tuple[str, str]:
    """``corrdiff decompress`` in-process: exit 0 + PNG of the right size, or exit 2 + one line, no output."""
    from corrdiff import bitstream
    from corrdiff.cli import main

    src, out = folder / "case.cdf", folder / "case.png"
    src.write_bytes(data)
    out.unlink(missing_ok=True)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["decompress", str(src), "-o", str(out), "--model", model_path])
    except BaseException as exc:  # noqa: BLE001
        return f"cli:unexpected:{type(exc).__name__}", str(exc)[:200]
    text = err.getvalue()
    leftovers = list(folder.glob(".*.tmp"))
    if code == 0:
        from PIL import Image

        header = bitstream.unpack(data)
        with Image.open(out) as img:
            ok = img.size == (header.width, header.height) and img.mode == "RGB"
        return ("cli:exit0", "") if ok and not leftovers else ("cli:bad-output", text[:200])
    lines = text.strip().splitlines()
    one_line = len(lines) == 1 and lines[0].startswith("corrdiff decompress: error: ") and "Traceback" not in text
    if code == 2 and one_line and not out.exists() and not leftovers:
        return "cli:exit2", lines[0][:200]
    return f"cli:bad-exit{code}", text[:200]


def build_codec(model: str | None, max_decode_pixels: int, base: str = "learned"):
    import torch

    import corrdiff
    from corrdiff.presets import preset

    if model:
        codec = corrdiff.load_model(model)
    elif base == "avif":  # its files carry a quality record and the AV1 data as their one stream
        torch.manual_seed(0)
        codec = corrdiff.CorrDiffCodec(**preset("avif_tiny")).eval()
    else:  # variable-rate, so that its files carry a quality record (docs/bitstream.md) to damage
        torch.manual_seed(0)
        codec = corrdiff.CorrDiffCodec(**preset("tiny"), rate={"lambdas": [2.0, 1.0, 0.5]})
        codec.update(force=True)
        codec.eval()
    codec.max_decode_pixels = max_decode_pixels
    return codec


def seed_files(codec) -> list[bytes]:
    """Valid files to mutate: one per mode, two sizes, a few steps (small: the campaign is about parsing)."""
    import torch

    files = []
    g = torch.Generator().manual_seed(0)
    for (h, w), mode, steps in (((17, 33), "corrected", 2), ((24, 40), "diffusion", 2), ((17, 33), "e2e", None),
                                ((1, 1), "corrected", 1), ((40, 24), "corrected", 3)):
        image = torch.rand(1, 3, h, w, generator=g)
        files.append(codec.compress(image, steps=steps, mode=mode, seed=len(files)))
    return files


def case(seed: int, index: int, seeds: list[bytes]) -> tuple[bytes, bool]:
    """The index-th mutated file of a campaign and whether its CRC was recomputed (replayable from seed, index)."""
    rng = random.Random(f"{seed}:{index}")
    data = rng.choice(seeds)
    ops, fix_crc = random_ops(rng, data)
    return mutate(data, ops, fix_crc), fix_crc


# ----------------------------------------------------------------------------- worker / parent
def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    codec = build_codec(args.model, args.max_decode_pixels, args.base)
    seeds = seed_files(codec)
    if args.save_dir:  # so that the parent can rebuild (and save) a case that crashed or hung the worker
        (Path(args.save_dir) / "seeds").mkdir(parents=True, exist_ok=True)
        for k, data in enumerate(seeds):
            (Path(args.save_dir) / "seeds" / f"seed{k}.cdf").write_bytes(data)
    folder = Path(tempfile.mkdtemp(prefix="corrdiff-fuzz-"))
    model_path = args.model
    if args.cli_every:
        import corrdiff
        from corrdiff.codec import CorrDiffCodec

        CorrDiffCodec.max_decode_pixels = args.max_decode_pixels  # the CLI builds its own codec
        if not model_path:
            model_path = str(folder / "model.pt")
            corrdiff.save_model(codec, model_path)
    entropy_decodes = [0]
    coder = codec.prior if codec.base is None else codec.base  # the range decoder, or the AVIF base's read
    method = "decompress" if codec.base is None else "read"
    decode_streams = getattr(coder, method)

    def counting_decode(*a, **k):  # how many cases got past every header check into the stream decoder
        entropy_decodes[0] += 1
        return decode_streams(*a, **k)

    setattr(coder, method, counting_decode)
    print("ready", flush=True)
    for index in range(args.start, args.end):
        data, crc_fixed = case(args.seed, index, seeds)
        if args.inject_fault and int(args.inject_fault.split(":")[1]) == index:  # self-test of crash/hang accounting
            if args.inject_fault.startswith("crash"):
                os.kill(os.getpid(), 11)
            time.sleep(3600)
        start = time.perf_counter()
        before = entropy_decodes[0]
        kind, detail = decode_case(codec, data)
        kinds, details = [kind], [detail]
        if args.cli_every and index % args.cli_every == 0:
            cli_kind, cli_detail = cli_case(model_path, data, folder)
            kinds.append(cli_kind)
            details.append(cli_detail)
        seconds = time.perf_counter() - start
        print(json.dumps({"i": index, "kinds": kinds, "details": [d.replace("\n", " ") for d in details],
                          "crc_fixed": crc_fixed, "entropy_decoded": entropy_decodes[0] > before,
                          "s": round(seconds, 3)}), flush=True)


def _start_worker(args: argparse.Namespace, start: int, end: int) -> subprocess.Popen:
    cmd = [sys.executable, "-W", "ignore", __file__, "--worker", "--seed", str(args.seed), "--start", str(start),
           "--end", str(end), "--max-decode-pixels", str(args.max_decode_pixels), "--cli-every", str(args.cli_every)]
    if args.model:
        cmd += ["--model", args.model]
    cmd += ["--base", args.base]
    if args.save_dir:
        cmd += ["--save-dir", args.save_dir]
    if args.inject_fault:
        cmd += ["--inject-fault", args.inject_fault]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)


def campaign(args: argparse.Namespace) -> dict:
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    failures: list[dict] = []
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else math.inf
    slowest, slowest_case = 0.0, None
    next_index, end = 0, args.max_files
    save_dir = Path(args.save_dir) if args.save_dir else None
    while next_index < end and time.monotonic() < deadline:
        proc = _start_worker(args, next_index, end)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready_by = time.monotonic() + 300  # imports + seed files
        ready = False
        current = next_index
        while True:
            limit = ready_by if not ready else time.monotonic() + args.timeout
            if time.monotonic() >= deadline:
                proc.kill()
                proc.wait()
                break
            events = sel.select(timeout=max(0.0, min(limit, deadline) - time.monotonic()))
            if not events:
                if time.monotonic() >= deadline:
                    continue
                kind = "hang" if ready else "worker-start-timeout"
                proc.kill()
                proc.wait()
                counts[kind] += 1
                failures.append({"i": current, "kind": kind})
                next_index = current + 1
                break
            line = proc.stdout.readline()
            if not line:  # the worker died: a crash of the case after the last one reported
                code = proc.wait()
                if code == 0:
                    next_index = end
                else:
                    counts["crash"] += 1
                    failures.append({"i": current, "kind": "crash", "returncode": code})
                    next_index = current + 1
                break
            if line.startswith("ready"):
                ready = True
                continue
            record = json.loads(line)
            current = record["i"] + 1
            next_index = current
            for kind, detail in zip(record["kinds"], record["details"]):
                counts[kind] += 1
                examples.setdefault(kind, detail)
            counts["files"] += 1
            counts["crc recomputed"] += record["crc_fixed"]
            counts["reached the entropy decoder"] += record["entropy_decoded"]
            if record["s"] > slowest:
                slowest, slowest_case = record["s"], record
            bad = any(k.startswith(("unexpected", "bad-output", "cli:bad", "cli:unexpected")) for k in record["kinds"])
            if bad:
                failures.append(record)
        sel.close()
    if save_dir and failures:
        save_dir.mkdir(parents=True, exist_ok=True)
        (save_dir / "failures.json").write_text(json.dumps(failures, indent=1))
        seeds = [p.read_bytes() for p in sorted((save_dir / "seeds").glob("seed*.cdf"))]
        for failure in failures if seeds else []:
            data, _ = case(args.seed, failure["i"], seeds)
            (save_dir / f"case-{failure['i']}.cdf").write_bytes(data)  # replay: --replay FILE
    return {"counts": dict(counts), "examples": examples, "failures": failures, "slowest_case_s": slowest,
            "slowest_case": slowest_case, "seed": args.seed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    p.add_argument("--max-files", type=int, default=1_000_000, help="stop after this many mutated files")
    p.add_argument("--seed", type=int, default=0, help="campaign seed (cases are replayable from seed + index)")
    p.add_argument("--model", default=None, help="model file (default: the tiny preset with seeded random weights)")
    p.add_argument("--base", choices=("learned", "avif"), default="learned",
                   help="without --model: the tiny preset's base codec (avif: the avif_tiny preset)")
    p.add_argument("--max-decode-pixels", type=int, default=64 * 64,
                   help="decode-size limit of the fuzzed codec (small keeps cases fast; the limit itself is tested)")
    p.add_argument("--cli-every", type=int, default=10, help="also run every N-th case through `corrdiff decompress`")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds after which a case counts as a hang")
    p.add_argument("--save-dir", default=None, help="write failures.json here")
    p.add_argument("--json", default=None, help="write the summary as JSON to this file")
    p.add_argument("--replay", default=None, help="decode one saved file and print its outcome")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--inject-fault", default=None, help=argparse.SUPPRESS)  # crash:INDEX or hang:INDEX
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--end", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.replay:
        codec = build_codec(args.model, args.max_decode_pixels, args.base)
        print(decode_case(codec, Path(args.replay).read_bytes()))
        return 0
    if args.minutes is None and args.max_files == p.get_default("max_files"):
        args.minutes = 3.0
    started = time.monotonic()
    summary = campaign(args)
    summary["minutes"] = round((time.monotonic() - started) / 60, 2)
    counts = summary["counts"]
    slow = summary["slowest_case"] or {}
    print(f"files tried: {counts.get('files', 0)} in {summary['minutes']} min (seed {args.seed}); "
          f"CRC recomputed in {counts.get('crc recomputed', 0)}, "
          f"{counts.get('reached the entropy decoder', 0)} reached the entropy decoder; "
          f"slowest case {summary['slowest_case_s']:.2f} s (#{slow.get('i')}: {slow.get('details', [''])[0][:60]})")
    width = max((len(k) for k in counts), default=10)
    for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if kind not in ("files", "crc recomputed", "reached the entropy decoder"):
            print(f"  {kind:<{width}}  {n:>7}   e.g. {summary['examples'].get(kind, '')[:90]}")
    failures = summary["failures"]
    print(f"failures (crash, hang, unexpected exception, bad output or bad CLI exit): {len(failures)}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
