"""Markdown of ``corrdiff bench``: one ``format_*`` per section, from the plain dicts the sections return."""

from __future__ import annotations

import math
from typing import Any, Sequence

from corrdiff.bench.measure import speed_drift

DRIFT_WARNING = 0.15  # a reference FLOP/s changing by more than this during the run is reported


def _num(value: float | None, digits: int = 3) -> str:
    """Compact number: 3 significant digits, no exponent for ordinary magnitudes; n/a for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** digits:
        return f"{value:.0f}"
    if magnitude >= 1e-3:
        decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
        return f"{value:.{decimals}f}"
    return f"{value:.{digits - 1}e}"


def _is_numeric(cell: str) -> bool:
    """Whether a table cell is a number (or n/a), i.e. its column is right-aligned."""
    head = cell.split(" ")[0].rstrip("%x")
    try:
        float(head)
        return True
    except ValueError:
        return head in ("n/a", "")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table with padded columns; numeric columns right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    right = [bool(cells) and all(_is_numeric(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda items: "| " + " | ".join(  # noqa: E731
        (s.rjust(w) if r else s.ljust(w)) for s, w, r in zip(items, widths, right)) + " |"
    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right)) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])


def format_machine(info: dict[str, Any], model: dict[str, Any]) -> str:
    """The machine and the model the figures belong to."""
    load = info["load_average"]
    rows = [
        ["CPU", f"{info['cpu']} ({info['usable_cpus']} usable of {info['logical_cpus']} logical CPUs)"],
        ["memory", f"{_num(info['memory_GiB'])} GiB"],
        ["load average at start", "n/a" if load is None else " / ".join(f"{v:.2f}" for v in load)],
        ["torch threads", f"{info['torch_threads']} ({info['torch_parallel']})"],
        ["versions", f"python {info['python']}, torch {info['torch']}, compressai {info['compressai']}, "
                     f"Pillow {info['pillow']}, numpy {info['numpy']}, corrdiff {info['corrdiff']}"],
        ["platform", info["platform"]],
        ["model", f"{model['spec']}: fingerprint {model['fingerprint']}, "
                  f"{model['parameters'] / 1e6:.2f} M parameters"
                  + (" (untrained: times only)" if model["untrained"] else "")],
        ["date", info["date"]],
    ]
    return "## Machine\n\n" + markdown_table(["", "value"], rows)


def format_codecs(section: dict[str, Any]) -> str:
    """Section ``codecs``: one row per (codec, size), with notes on how time and memory were read."""
    rows = section["rows"]
    table = markdown_table(
        ["codec", "size", "MPix", "runs", "bpp", "encode s", "decode s", "RSS loaded MiB",
         "encode peak MiB (+)", "decode peak MiB (+)"],
        [[r["label"], r["size"], _num(r["pixels"] / 1e6),
          f"{r['repeats']}" + (f" (+{r['warmup']} warm-up)" if r["warmup"] else ""), _num(r["bpp"]),
          _num(r["encode_s"]), _num(r["decode_s"]), _num(r["rss_loaded_MiB"]),
          _peak(r, "encode"), _peak(r, "decode")] for r in rows],
    )
    methods = sorted({r["memory_method"] for r in rows})
    notes = [
        "Times: median of the runs (wall clock). Memory: resident set size (RSS) of a fresh process per row: "
        "'RSS loaded' after importing the libraries and loading the model and the input image; the peaks are "
        f"the process's peak RSS during encoding and during decoding ({'; '.join(methods)}), "
        "(+) the increment over 'RSS loaded'.",
        "bpp from the bytes: CorrDiff counts the whole .cdf file, MSH its entropy-coded strings (no header), "
        "JPEG/WebP the whole file. JPEG and WebP use the highest quality whose bpp does not exceed "
        "CorrDiff's at that size.",
    ]
    if any(r["codec"] == "msh" for r in rows):
        notes.append(
            "MSH = compressai's MeanScaleHyperprior with our model's widths (N = decoder channels, "
            "M = latent channels), UNTRAINED: no pretrained weights are available offline. Network time "
            "does not depend on the weights; entropy-coding time depends (slightly) on the rate, which "
            "for an untrained network is not a trained codec's (its bpp column)."
        )
    return "## Encode and decode\n\n" + table + "\n\n" + "\n".join(f"- {n}" for n in notes)


def _peak(row: dict[str, Any], op: str) -> str:
    """Peak RSS of ``op`` with its increment over the loaded process."""
    peak, loaded = row[f"{op}_peak_MiB"], row["rss_loaded_MiB"]
    return _num(peak) + ("" if loaded is None else f" (+{_num(max(0.0, peak - loaded))})")


def format_exponents(section: dict[str, Any]) -> str:
    """Exponents of time against pixel count, per codec."""
    labels = {row["codec"]: row["label"].split(" q=")[0] for row in section["rows"]}
    table = markdown_table(
        ["codec", "encode exponent", "decode exponent"],
        [[labels[name], _num(e["encode"]), _num(e["decode"])] for name, e in section["exponents"].items()],
    )
    return ("## Time vs pixels\n\n" + table + "\n\nExponent: least-squares slope of log(time) against "
            "log(pixels) over the sizes; 1 = time proportional to the pixel count.")


def format_ratios(section: dict[str, Any]) -> str:
    """Our times over each peer's, per size."""
    table = markdown_table(
        ["size", "peer", "encode ours/peer", "decode ours/peer"],
        [[r["size"], r["label"], _num(r["encode"]) + "x", _num(r["decode"]) + "x"]
         for r in section["ratios"]],
    )
    return "## Ours / peer\n\n" + table + "\n\nRatio of median times; above 1: CorrDiff is slower."


def format_breakdown(breakdown: dict[str, Any], size: str) -> str:
    """Section ``breakdown``: seconds and share of each part of decoding."""
    table = markdown_table(
        ["part", "seconds", "share"],
        [[name, _num(s), f"{100 * breakdown['share'][name]:.1f}%"]
         for name, s in breakdown["seconds"].items()]
        + [["total", _num(breakdown["total_s"]), "100.0%"]],
    )
    runs = len(breakdown["timing"]["times_s"])
    return (f"## Decode time breakdown ({size})\n\n" + table + "\n\nThe decode whose total is the median of "
            f"{runs} run(s); forward hooks and method wrappers read time.perf_counter. "
            "Entropy decoding is compressai's rANS with its index/means set-up, excluding h_s.")


def format_flops(flops: dict[str, Any], size: str) -> str:
    """Section ``flops``: achieved FLOP/s per network against the dense references."""
    ref = flops["reference"]
    n, runs = ref["n"], len(ref["matmul"]["timing"]["times_s"])
    table = markdown_table(
        ["part", "GFLOP", "seconds", "GFLOP/s", "of matmul", "of 1x1 conv"],
        [[r["part"], _num(r["flop"] / 1e9), _num(r["seconds"]), _num(r["flops"] / 1e9),
          f"{100 * r['of_matmul']:.1f}%", f"{100 * r['of_conv1x1']:.1f}%"] for r in flops["rows"]],
    )
    return (f"## Achieved FLOP/s of decoding ({size})\n\n" + table + "\n\n"
            f"References, fp32, same thread count, median of {runs}: torch.mm {n}x{n} @ {n}x{n} "
            f"{_num(ref['matmul']['flops'] / 1e9)} GFLOP/s; the same product as a 1x1 convolution "
            f"{_num(ref['conv1x1']['flops'] / 1e9)} GFLOP/s. FLOPs from torch.utils.flop_counter over one "
            "decode (convolutions and matrix products; h_s runs in float64); times from the breakdown above.")


def format_speed(start: dict[str, Any], end: dict[str, Any], judge: bool = True) -> str:
    """The reference FLOP/s at the start and the end of the run, and (``judge``) a warning if they drifted."""
    rows = [[when, _num(ref["matmul"]["flops"] / 1e9), _num(ref["conv1x1"]["flops"] / 1e9)]
            for when, ref in (("start", start), ("end", end))]
    table = markdown_table(["when", "torch.mm GFLOP/s", "1x1 conv GFLOP/s"], rows)
    drift = speed_drift(start, end)
    verdict = (f"WARNING: the machine's speed changed by up to {100 * drift:.0f}% during the run "
               "(other load?); the times above are not comparable with each other to better than that."
               if drift > DRIFT_WARNING else f"Stable within {100 * drift:.0f}%.")
    if not judge:
        verdict = "Quick mode: products this small say nothing about the machine's speed."
    return f"## Machine speed during the run\n\n{table}\n\n{verdict}"


def format_training(rows: list[dict[str, Any]]) -> str:
    """Section ``training``: step time and samples/s per phase and batch size."""
    table = markdown_table(
        ["phase", "batch", "crop", "step s", "samples/s"],
        [[r["phase"], r["batch"], f"{r['crop']}x{r['crop']}", _num(r["step_s"]), _num(r["samples_per_s"])]
         for r in rows],
    )
    steps = rows[0]["timing"] if rows else {"times_s": [], "warmup": 0}
    return ("## Training step\n\n" + table + "\n\nOne step = one iteration of lightning.Trainer.fit on the "
            "phase's LightningModule (its training_step: loss terms + aux loss; its guarded step: backward, "
            "gradient clipping, the Adam steps of its configure_optimizers; its EMA update; the adversarial "
            "phase's discriminator step); median of "
            f"{len(steps['times_s'])} step(s) after {steps['warmup']} warm-up step(s); the model's "
            "architecture, fp32.")


def format_gamma(gamma: dict[str, Any]) -> str:
    """Section ``gamma``: both solvers' times and transmitted gammas."""
    table = markdown_table(
        ["solver", "median s", "gamma", "gamma sent (fp16)"],
        [[name, _num(s["median_s"]), f"{s['gamma']:.6f}", f"{s['gamma_fp16']:.6f}"]
         for name, s in gamma["solvers"].items()],
    )
    agree = "agree" if gamma["agree_fp16"] else "DIFFER"
    return (f"## Gamma solver ({gamma['size']})\n\n" + table + "\n\n"
            f"Gradient / closed form time: {_num(gamma['ratio_gradient_over_closed'])}x. Transmitted gammas "
            f"{agree} ({_num(gamma['fp16_ulps_apart'])} float16 ulps apart). Inputs: x0_e a blurred photo, "
            "x0_d a noisy one.")
