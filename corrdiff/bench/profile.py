"""Sections ``breakdown`` and ``flops``: where decoding time goes, and the FLOP/s the networks reach
against this machine's dense references."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from corrdiff.bench.measure import Meter, time_call

NETWORKS = ("score network", "end-to-end decoder D", "conditioning network C", "hyper-synthesis h_s")
HYPER_SYNTHESIS = NETWORKS[3]


def networks(codec) -> dict[str, torch.nn.Module]:
    """The codec's networks by their :data:`NETWORKS` name (a prior without side information has no h_s)."""
    parts = (codec.score_net, codec.decoder, codec.conditioner, codec.prior.hyper_synthesis)
    return {name: module for name, module in zip(NETWORKS, parts) if module is not None}


def profile_decode(codec, data: bytes, reading: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """One ``codec.decompress(data)``, with ``reading`` summed per network and per coding step.

    Keys: the networks (:data:`NETWORKS`), ``prior.decompress`` (entropy decoding, which runs the
    hyper-synthesis h_s) and ``fingerprint`` (the model check in ``read``).
    """
    with Meter(reading) as meter:
        for name, module in networks(codec).items():
            meter.module(name, module)
        meter.method("prior.decompress", codec.prior, "decompress")
        meter.method("fingerprint", codec, "fingerprint")
        codec.decompress(data)
    return meter.totals


def decode_breakdown(codec, data: bytes, repeats: int, warmup: int) -> dict[str, Any]:
    """Section ``breakdown``: shares of decode time in the run whose total is the median (they sum to 1)."""
    timing, parts = time_call(lambda: profile_decode(codec, data), repeats, warmup)
    index = sorted(range(repeats), key=lambda i: timing.times[i])[(repeats - 1) // 2]
    total, part = timing.times[index], parts[index]
    hs = part.get(HYPER_SYNTHESIS, 0.0)
    seconds = {name: part.get(name, 0.0) for name in NETWORKS[:3]}
    seconds[HYPER_SYNTHESIS] = hs
    seconds["entropy decoding (rANS, tables)"] = part.get("prior.decompress", 0.0) - hs
    seconds["model fingerprint check"] = part.get("fingerprint", 0.0)
    seconds["rest (sampler, correction, parsing)"] = total - sum(seconds.values())
    return {"total_s": total, "timing": timing.to_json(), "seconds": seconds,
            "share": {name: s / total for name, s in seconds.items()}}


def decode_flops(codec, data: bytes, breakdown: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Section ``flops``: FLOPs per network in one decode over its time (from ``breakdown``), and as a
    fraction of the ``reference`` FLOP/s (:func:`corrdiff.bench.measure.reference_flops`)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        counted = profile_decode(codec, data, reading=lambda: float(counter.get_total_flops()))
    names = list(networks(codec))
    rows = []
    for name in names + ["networks"]:
        parts = names if name == "networks" else [name]
        flop = sum(counted.get(n, 0.0) for n in parts)
        seconds = sum(breakdown["seconds"][n] for n in parts)
        achieved = flop / seconds if seconds > 0 else float("nan")
        rows.append({"part": name, "flop": flop, "seconds": seconds, "flops": achieved,
                     "of_matmul": achieved / reference["matmul"]["flops"],
                     "of_conv1x1": achieved / reference["conv1x1"]["flops"]})
    return {"rows": rows, "total_flop": float(counter.get_total_flops()), "reference": reference}
