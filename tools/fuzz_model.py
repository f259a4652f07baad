"""Hostile-model fuzz campaign: mutated weights, entropy tables and configs through the command line.

    python tools/fuzz_model.py --cases 36                      # what the test suite runs (tests/test_hostile_models.py)
    python tools/fuzz_model.py --minutes 10 --seed 3 --json fuzz-model.json
    python tools/fuzz_model.py --cases 40 --fresh              # one `python -m corrdiff.cli` process per command
    python tools/fuzz_model.py --replay 17 --seed 3            # one case, outcome printed

The base is the ``tiny`` preset with seeded random weights, saved with :func:`corrdiff.save_model`.
Case ``i`` of seed ``s`` (replayable) applies one or two mutations (:data:`FAMILIES`: weights set to
NaN, infinity or huge values; entropy tables cut, zeroed, reordered, lengthened, offset, retyped; the
scale table broken; configs changed with or without a change of shapes, or made absurd), then keeps
the stored fingerprint (stale after most mutations), drops it (files without one load, so most cases
reach the coder) or garbles it. Each case runs:

1. ``corrdiff compress IMAGE -o OUT.cdf --model CASE.pt --steps 1``;
2. ``corrdiff decompress`` of that output, or, when the compress was refused but the model loads, of
   a file of the base model re-labelled with the case model's fingerprint (CRC recomputed), so that
   decoding with the hostile model's tables and networks is tried as well.

Each command must exit 0 with its output, or 2 with one line ``corrdiff CMD: error: ...`` and no
output; never a temporary file left behind. Anything else is a failure: another exit status, a
traceback, a process killed by a signal (``crash``) or a case over ``--timeout`` (``hang``). The
commands run under an address-space limit (``RLIMIT_AS``, ``--memory-gib``): by default in a worker
subprocess that calls :func:`corrdiff.cli.main` case after case and is restarted after a crash or a
hang; with ``--fresh`` each command is its own ``python -m corrdiff.cli`` process (slower: torch
is imported every time).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import resource
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
IMAGE_SIZE = 64  # pixels a side: the NaN-scale crash of issue 16 needed 128, but ours is refused before any index
FAMILIES = ("weights", "tables", "scale_table", "config")
BAD_FLOATS = (math.nan, math.inf, -math.inf, 1e30, -1e30, 3e38, 1e-30, 0.0)
BAD_INTS = (0, 1, 2, 3, -1, -3, 65535, 65536, 65537, 1 << 20, (1 << 31) - 1, -(1 << 31))
TABLES = ("prior.entropy_bottleneck", "prior.gaussian_conditional")


# ----------------------------------------------------------------------------- the cases
def mutate(payload: dict, rng: random.Random) -> list[str]:
    """Apply one or two random mutations to a model-file payload, in place; return what was done."""
    done = [_MUTATORS[rng.choice(FAMILIES)](payload, rng) for _ in range(rng.choice((1, 1, 1, 2)))]
    fate = rng.choices(("drop", "keep", "garble"), weights=(7, 2, 1))[0]
    if fate == "drop":
        payload.pop("fingerprint", None)
    elif fate == "garble":
        payload["fingerprint"] = rng.choice((7, "", "0" * 16, "zz", None))
    return [*done, f"fingerprint:{fate}"]


def _weights(payload: dict, rng: random.Random) -> str:
    state = payload["state_dict"]
    keys = sorted(k for k, v in state.items() if v.is_floating_point() and v.numel() and not k.endswith("scale_table"))
    prior = [k for k in keys if k.startswith("prior.")]  # half the cases: what feeds the entropy coder
    key = rng.choice(prior if rng.random() < 0.5 else keys)
    value = rng.choice(BAD_FLOATS + (1e30, -1e30, 1e15))  # finite ones load, and must be stopped at coding time
    tensor = state[key].clone()
    if rng.random() < 0.5:
        tensor.view(-1)[rng.randrange(tensor.numel())] = value
        where = "one"
    else:
        tensor.fill_(value)
        where = "all"
    if rng.random() < 0.2 and math.isfinite(value):
        tensor = tensor * rng.choice((1e6, -1e6, 1e20))
        where += ",scaled"
    state[key] = tensor
    return f"weights:{key}={value}:{where}"


def _tables(payload: dict, rng: random.Random) -> str:
    import torch

    state = payload["state_dict"]
    module = rng.choice(TABLES)
    cdf, lengths, offsets = (f"{module}.{n}" for n in ("_quantized_cdf", "_cdf_length", "_offset"))
    rows, width = state[cdf].shape
    row = rng.randrange(rows)
    op = rng.choice(("cut", "cut_all", "zero_row", "zero_all", "reverse_row", "set_cdf", "length", "offset", "dtype",
                     "shape", "end", "flat_step"))
    if op == "cut":  # fewer CDF rows than indexes (the Gaussian "cut to one row" of issue 16)
        state[cdf] = state[cdf][: rng.choice((0, 1, rows // 2, rows - 1))].clone()
    elif op == "cut_all":
        keep = rng.choice((1, rows - 1))
        for key in (cdf, lengths, offsets):
            state[key] = state[key][:keep].clone()
    elif op == "zero_row":
        state[cdf] = state[cdf].clone()
        state[cdf][row] = 0
    elif op == "zero_all":
        state[cdf] = torch.zeros_like(state[cdf])
    elif op == "reverse_row":
        state[cdf] = state[cdf].clone()
        state[cdf][row] = state[cdf][row].flip(0)
    elif op == "set_cdf":
        state[cdf] = state[cdf].clone()
        state[cdf][row, rng.randrange(width)] = rng.choice(BAD_INTS)
    elif op == "length":
        state[lengths] = state[lengths].clone()
        state[lengths][row] = rng.choice(BAD_INTS + (width, width + 1))
    elif op == "offset":
        state[offsets] = state[offsets].clone()
        state[offsets][row] = rng.choice(BAD_INTS + (int(state[offsets][row]) - 1,))
    elif op == "dtype":
        key = rng.choice((cdf, lengths, offsets))
        state[key] = state[key].to(rng.choice((torch.float32, torch.int64, torch.int16)))
    elif op == "shape":
        key = rng.choice((cdf, lengths, offsets))
        state[key] = rng.choice((state[key].reshape(-1), state[key][None], torch.zeros(0, dtype=torch.int32)))
    elif op == "end":  # the row's last value other than 2^16
        state[cdf] = state[cdf].clone()
        state[cdf][row, int(state[lengths][row]) - 1] = rng.choice((65535, 65537, 1 << 20))
    else:  # two equal neighbours: a symbol of frequency 0
        state[cdf] = state[cdf].clone()
        j = rng.randrange(1, int(state[lengths][row]))
        state[cdf][row, j] = state[cdf][row, j - 1]
    return f"tables:{module}:{op}:row{row}"


def _scale_table(payload: dict, rng: random.Random) -> str:
    key = "prior.gaussian_conditional.scale_table"
    table = payload["state_dict"][key].clone()
    op = rng.choice(("nan", "negative", "zero", "reverse", "duplicate", "inf", "huge"))
    i = rng.randrange(table.numel())
    if op == "reverse":
        table = table.flip(0)
    elif op == "duplicate":
        table[i] = table[i - 1]
    else:
        table[i] = {"nan": math.nan, "negative": -1.0, "zero": 0.0, "inf": math.inf, "huge": 1e30}[op]
    payload["state_dict"][key] = table
    return f"scale_table:{op}:{i}"


def _config(payload: dict, rng: random.Random) -> str:
    try:
        config = json.loads(payload["config"])
    except ValueError:
        config = None
    if not isinstance(config, dict):  # a first mutation broke it already
        return "config:unchanged"
    op = rng.choice(("schedule", "steps", "latent_channels", "hyper_channels", "narrow_hyper", "scale_levels",
                     "sampler", "prediction", "groups", "unknown", "not_json", "not_dict", "huge", "scale_range"))
    if op == "schedule":  # same shapes, another model: only the fingerprint tells
        config["schedule"] = {"name": "cosine" if config["schedule"]["name"] == "linear" else "linear"}
    elif op == "steps":
        config["steps"] = rng.choice((0, -1, 1000, 10**9, "8"))
    elif op == "latent_channels":
        config["latent_channels"] = rng.choice((0, 1, 31, 33))
    elif op == "hyper_channels":
        config["prior"]["hyper_channels"] = rng.choice((0, 1, 23, 25))
    elif op == "narrow_hyper":  # a whole model of 1-3 hyper channels (z of a small image: too few symbols)
        _replace_with_narrow_model(payload, rng.choice((1, 2, 3)))
        return "config:narrow_hyper"
    elif op == "scale_levels":
        config["prior"]["scale_levels"] = rng.choice((0, 1, 2, 63, 65))
    elif op == "sampler":
        config["sampler"] = rng.choice(({"name": "nope"}, {"name": "ddim", "eta": 7}, {"name": "ddim", "x": 1}, "ddim"))
    elif op == "prediction":
        config["score_net"]["prediction"] = rng.choice(("x0", "v", "eps", "bogus"))
    elif op == "groups":
        config["correction"]["granularity"] = rng.choice(("channel", "bogus", 3))
    elif op == "unknown":
        config["encoder"]["name"] = "no-such-encoder"
    elif op == "not_json":
        payload["config"] = "{not json"
        return "config:not_json"
    elif op == "not_dict":
        payload["config"] = json.dumps([1, 2])
        return "config:not_dict"
    elif op == "huge":  # a resource bomb: refused by the address-space limit, never a traceback
        config["score_net"]["base_channels"] = rng.choice((10**6, 10**9))
    else:
        config["prior"]["scale_min"], config["prior"]["scale_max"] = rng.choice(((1.0, 1.0), (-1.0, 2.0), (0.0, 1e309)))
    payload["config"] = json.dumps(config)
    return f"config:{op}"


def _replace_with_narrow_model(payload: dict, hyper_channels: int) -> None:
    """The payload of a tiny model with ``hyper_channels`` (written as save_model would, minus its checks)."""
    import torch

    import corrdiff
    from corrdiff.presets import preset

    config = preset("tiny")
    config["prior"]["hyper_channels"] = hyper_channels
    torch.manual_seed(0)
    codec = corrdiff.CorrDiffCodec(**config)
    codec.update(force=True)
    payload["config"] = json.dumps(codec.config, sort_keys=True)
    payload["state_dict"] = {k: v.clone() for k, v in codec.state_dict().items()}
    payload.pop("fingerprint", None)


_MUTATORS = {"weights": _weights, "tables": _tables, "scale_table": _scale_table, "config": _config}


def write_case(base: dict, seed: int, index: int, path: Path) -> list[str]:
    """Write case ``index`` of campaign ``seed`` to ``path``; return its mutations (replayable)."""
    import copy

    import torch

    payload = copy.deepcopy(base)
    rng = random.Random(f"{seed}:{index}")
    ops = mutate(payload, rng)
    buf = io.BytesIO()
    torch.save(payload, buf)
    path.write_bytes(buf.getvalue())
    return ops


def relabel(data: bytes, fingerprint: bytes) -> bytes:
    """A ``.cdf`` file with another model fingerprint (bytes 6-13) and its CRC recomputed."""
    body = data[:6] + fingerprint + data[14:-4]
    return body + struct.pack("<I", zlib.crc32(body))


# ----------------------------------------------------------------------------- one command, checked
def judge(command: str, code: int | None, err: str, output: Path, folder: Path) -> str:
    """The outcome of one command: ``ok``, ``refused:<kind>`` or a failure (``bad-exit``, ``traceback``, ...)."""
    leftovers = [p.name for p in folder.glob(".*.tmp")]
    lines = err.strip().splitlines()
    if leftovers:
        return "failure:temporary-file-left"
    if code == 0:
        return "ok" if output.is_file() else "failure:exit0-without-output"
    if "Traceback" in err:
        return "failure:traceback"
    if code == 2 and len(lines) == 1 and lines[0].startswith(f"corrdiff {command}: error: ") and not output.exists():
        return f"refused:{refusal_kind(lines[0])}"
    return f"failure:exit{code}"


def refusal_kind(line: str) -> str:
    """A short name for a refusal message (for the counts)."""
    for needle, kind in (("weights hold NaN", "load:non-finite-weights"), ("entropy tables", "load:tables"),
                         ("stored fingerprint", "load:fingerprint"), ("too narrow", "load:narrow-latent"),
                         ("embedded config", "load:config"), ("not match the model's config", "load:shapes"),
                         ("lacks entropy tables", "load:no-tables"), ("encoded with model", "other-model"),
                         ("hyper-synthesis produced", "coder:non-finite-scales-or-means"),
                         ("in the latent", "coder:non-finite-latent"), ("entropy coder's range", "coder:range"),
                         ("decoding produced non-finite", "decode:non-finite-image"), ("out of memory", "memory"),
                         ("sampler", "sampler"), ("entropy-coded", "decode:stream")):
        if needle in line:
            return kind
    return "other"


# ----------------------------------------------------------------------------- worker (in-process CLI)
def _run_cli(argv: list[str]) -> tuple[int | None, str]:
    from corrdiff.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except BaseException as exc:  # noqa: BLE001 - an exception out of main() is the failure we look for
        return None, f"Traceback (escaped main): {type(exc).__name__}: {exc}"
    return code, err.getvalue()


def run_case(base: dict, seed: int, index: int, folder: Path, image: Path, reference: bytes, runner,
             announce=None) -> dict:
    """Write case ``index`` and run compress, then decompress, through ``runner(argv) -> (code, stderr)``;
    ``announce(index, ops)`` is called before the commands run."""
    import corrdiff

    for stale in [*folder.glob("case*"), *folder.glob(".case*.tmp")]:
        stale.unlink()
    model, out, decoded = folder / "case.pt", folder / "case.cdf", folder / "case.png"
    ops = write_case(base, seed, index, model)
    if announce is not None:
        announce(index, ops)
    code, err = runner(["compress", str(image), "-o", str(out), "--model", str(model), "--steps", "1"])
    outcomes = {"compress": judge("compress", code, err, out, folder)}
    details = {"compress": err.strip()[:300]}
    source = out if outcomes["compress"] == "ok" else None
    if source is None:
        try:
            fingerprint = corrdiff.load_model(model).fingerprint()
        except corrdiff.CorrDiffError:
            fingerprint = None
        if fingerprint is not None:
            source = folder / "case-forged.cdf"
            source.write_bytes(relabel(reference, fingerprint))
    if source is not None:
        code, err = runner(["decompress", str(source), "-o", str(decoded), "--model", str(model)])
        outcomes["decompress"] = judge("decompress", code, err, decoded, folder)
        details["decompress"] = err.strip()[:300]
    return {"i": index, "ops": ops, "outcomes": outcomes, "details": details}


def prepare(folder: Path) -> tuple[dict, Path, bytes]:
    """The base model file, test image and a reference ``.cdf`` in ``folder``; the base payload."""
    import numpy as np
    import torch
    from PIL import Image

    import corrdiff
    from corrdiff.presets import preset

    torch.manual_seed(0)
    codec = corrdiff.CorrDiffCodec(**preset("tiny"))
    codec.update(force=True)
    corrdiff.save_model(codec.eval(), folder / "base.pt")
    rng = np.random.default_rng(0)
    image = folder / "image.png"
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    rgb = np.stack([yy * 4, xx * 4, (yy + xx) * 2], axis=2) + rng.integers(0, 40, (IMAGE_SIZE, IMAGE_SIZE, 3))
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(image)
    reference = codec.compress(np.array(Image.open(image)), steps=1)
    return torch.load(folder / "base.pt", weights_only=True), image, reference


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    folder = Path(args.folder)
    base, image, reference = prepare(folder)
    print("ready", flush=True)
    for index in range(args.start, args.end):
        record = run_case(base, args.seed, index, folder, image, reference, _run_cli,
                          lambda i, ops: print(json.dumps({"start": i, "ops": ops}), flush=True))
        print(json.dumps(record), flush=True)


def limit_memory(gib: float) -> None:
    """Cap this process's address space (RLIMIT_AS) at ``gib`` GiB: a runaway allocation fails, never swaps."""
    limit = int(gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _start_worker(args: argparse.Namespace, start: int) -> subprocess.Popen:
    cmd = [sys.executable, "-W", "ignore", __file__, "--worker", "--seed", str(args.seed), "--start", str(start),
           "--end", str(args.cases), "--folder", args.folder]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env,
                            preexec_fn=lambda: limit_memory(args.memory_gib))


def campaign(args: argparse.Namespace, deadline: float) -> list[dict]:
    """Run cases in worker subprocesses; a crash or a hang is recorded and the worker restarted after it."""
    records: list[dict] = []
    next_index = 0
    while next_index < args.cases and time.monotonic() < deadline:
        proc = _start_worker(args, next_index)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready, current, ops = False, next_index, []
        while True:
            wait = (300 if not ready else args.timeout)
            if not sel.select(timeout=max(0.0, min(wait, deadline - time.monotonic()))):
                proc.kill()
                proc.wait()
                if time.monotonic() < deadline:
                    records.append({"i": current, "ops": ops, "outcomes": {"worker": "failure:hang" if ready else
                                                                           "failure:worker-start"}})
                next_index = current + 1
                break
            line = proc.stdout.readline()
            if not line:
                code = proc.wait()
                if code != 0:  # killed by a signal (a crash), or an exception out of the case (a traceback)
                    kind = f"crash(signal {-code})" if code < 0 else f"traceback(exit {code})"
                    records.append({"i": current, "ops": ops, "outcomes": {"worker": f"failure:{kind}"}})
                next_index = current + 1 if code != 0 else args.cases
                break
            if line.startswith("ready"):
                ready = True
                continue
            record = json.loads(line)
            if "start" in record:  # the case about to run, so that a crash or hang names its mutations
                current, ops = record["start"], record["ops"]
                continue
            records.append(record)
            current = next_index = record["i"] + 1
            ops = []  # until the next case is announced (a failure while writing it has none)
        sel.close()
    return records


def fresh_campaign(args: argparse.Namespace, deadline: float) -> list[dict]:
    """Every command its own ``python -m corrdiff.cli`` process (exit status and signals as a shell sees them)."""
    folder = Path(args.folder)
    base, image, reference = prepare(folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}

    def runner(argv: list[str]) -> tuple[int | None, str]:
        try:
            proc = subprocess.run([sys.executable, "-m", "corrdiff.cli", *argv], capture_output=True, text=True,
                                  timeout=args.timeout, cwd=ROOT, env=env,
                                  preexec_fn=lambda: limit_memory(args.memory_gib))
        except subprocess.TimeoutExpired:
            return -999, "hang"
        return proc.returncode, proc.stderr

    records = []
    for index in range(args.cases):
        if time.monotonic() >= deadline:
            break
        records.append(run_case(base, args.seed, index, folder, image, reference, runner))
    return records


def summarise(records: list[dict]) -> dict:
    """Counts by outcome and the failures: what the docs and the tests report."""
    counts: Counter[str] = Counter()
    families: Counter[str] = Counter()
    failures = []
    for record in records:
        for op in record.get("ops", []):
            families[op.split(":")[0]] += 1
        for command, outcome in record["outcomes"].items():
            counts[f"{command}:{outcome}"] += 1
        if any(o.startswith("failure") for o in record["outcomes"].values()):
            failures.append(record)
    outcomes = [o for r in records for o in r["outcomes"].values()]
    totals = {
        "cases": len(records),
        "commands": len(outcomes),
        "ok": sum(o == "ok" for o in outcomes),
        "refused": sum(o.startswith("refused") for o in outcomes),
        "crashed": sum("crash" in o for o in outcomes),
        "tracebacks": sum("traceback" in o for o in outcomes),
        "hung": sum("hang" in o for o in outcomes),
        "failures": len(failures),
        "decoded": sum(r["outcomes"].get("decompress") == "ok" for r in records),
    }
    return {"totals": totals, "counts": dict(counts), "mutations": dict(families), "failures": failures}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=None, help="number of cases (default: 200, or unlimited with --minutes)")
    p.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    p.add_argument("--seed", type=int, default=0, help="campaign seed (case i of seed s is replayable)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds after which a case counts as a hang")
    p.add_argument("--memory-gib", type=float, default=6.0,
                   help="address-space limit of the processes running the commands (torch alone maps ~4 GiB)")
    p.add_argument("--fresh", action="store_true", help="one `python -m corrdiff.cli` process per command")
    p.add_argument("--json", default=None, help="write the summary (and every case's outcome) to this file")
    p.add_argument("--replay", type=int, default=None, metavar="I", help="run case I of --seed alone and print it")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--end", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--folder", default=None, help=argparse.SUPPRESS)  # the workers' scratch folder
    args = p.parse_args(argv)
    if args.worker:
        args.end = args.end or args.start + 1
        worker(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="corrdiff-fuzz-model-") as scratch:
        args.folder = scratch
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """A replay or a campaign, with ``args.folder`` as scratch space; exit status 1 if any case failed."""
    if args.replay is not None:
        args.start, args.end = args.replay, args.replay + 1
        worker(args)
        return 0
    if args.cases is None:
        args.cases = 10**9 if args.minutes else 200
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else math.inf
    started = time.monotonic()
    records = (fresh_campaign if args.fresh else campaign)(args, deadline)
    summary = summarise(records)
    summary.update(seed=args.seed, minutes=round((time.monotonic() - started) / 60, 2), fresh=args.fresh,
                   memory_gib=args.memory_gib, timeout_s=args.timeout)
    t = summary["totals"]
    print(f"model cases: {t['cases']} in {summary['minutes']} min (seed {args.seed}); commands {t['commands']}: "
          f"ok {t['ok']}, refused {t['refused']}; decoded {t['decoded']}; crashed {t['crashed']}, hung {t['hung']}, "
          f"tracebacks {t['tracebacks']}; "
          f"failures {t['failures']}")
    print("  mutations: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["mutations"].items())))
    for kind, n in sorted(summary["counts"].items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {kind:<40} {n:>6}")
    for failure in summary["failures"][:20]:
        print(f"  FAILED case {failure['i']}: {failure.get('ops')} -> {failure['outcomes']} {failure.get('details', '')}")
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, "records": records}, indent=1))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
