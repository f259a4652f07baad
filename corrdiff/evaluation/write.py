"""The files of an evaluation: ``per_image.csv``, one CompressAI-schema JSON per method, ``index.json``;
and the plain-text tables printed at the end (:func:`format_table`, :func:`format_stage_table`)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from corrdiff.evaluation.aggregate import Method
from corrdiff.files import atomic_write
from corrdiff.image_io import OutputGuard, encode_png
from corrdiff.metric_names import ALL_METRICS

#: CSV columns before the metrics, and after them
CSV_HEAD = ("method", "point", "image", "width", "height", "bytes", "bpp")
CSV_TAIL = ("encoding_time", "decoding_time", "quality", "target_bpp", "decode_mismatch", "status")
TABLE_METRICS = ("bpp", *ALL_METRICS)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_csv(path: Path, methods: dict[str, Method], metric_cols: list[str], failed: dict[str, str],
              unavailable: dict[str, str]) -> None:
    """One row per method, RD point and image, then one per failed image."""
    columns = [*CSV_HEAD, *metric_cols, *CSV_TAIL, "unavailable"]
    unavailable_names = ";".join(unavailable)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for method in methods.values():
        for point in method.points.values():
            for r in point.rows:
                writer.writerow({c: _fmt(r.get(c)) for c in columns} | {"unavailable": unavailable_names})
    for image, reason in failed.items():
        writer.writerow({"image": image, "status": f"failed: {reason}", "unavailable": unavailable_names})
    atomic_write(path, buf.getvalue().encode())


def write_json(guard: OutputGuard, path: Path, content: dict[str, Any]) -> None:
    """``content`` as strict, indented JSON at ``path`` (checked by ``guard``, written atomically)."""
    atomic_write(guard.check(path), (json.dumps(content, indent=2, allow_nan=False) + "\n").encode())


def format_table(summaries: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one line per method and RD point."""
    present = [k for k in TABLE_METRICS if any(k in s["results"] for s in summaries.values())]
    head = f"{'method':28} {'point':22} " + " ".join(f"{k:>11}" for k in present)
    lines = [head, "-" * len(head)]
    for summary in summaries.values():
        for i, point in enumerate(summary["points"]):
            cells = []
            for k in present:
                v = summary["results"].get(k, [None] * len(summary["points"]))[i]
                cells.append(f"{'n/a':>11}" if v is None else f"{v:11.4f}")
            lines.append(f"{summary['name'][:28]:28} {point[:22]:22} " + " ".join(cells))
    return "\n".join(lines)


def format_stage_table(seconds: dict[str, float]) -> str:
    """The seconds per stage (``index.json``'s ``stage_seconds``) as a plain-text table, the total last."""
    lines = [f"{'stage':28} {'seconds':>11}", "-" * 40]
    lines += [f"{stage:28} {value:11.2f}" for stage, value in seconds.items() if stage != "total"]
    lines.append(f"{'total (wall clock)':28} {seconds['total']:11.2f}")
    if seconds.get("baselines"):
        lines.append("(the baselines are coded beside the other stages: the stages may add up to more than the total)")
    return "\n".join(lines)


def save_reconstruction(guard: OutputGuard, out: Path, method: str, point: str, image_name: str,
                        decoded: np.ndarray) -> None:
    """``out/reconstructions/METHOD/POINT/IMAGE.png`` (sub-folders of the image name joined by ``__``)."""
    folder = out / "reconstructions" / method / point.replace(":", "-")
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(image_name).with_suffix("").as_posix().replace("/", "__") + ".png"
    atomic_write(guard.check(folder / name), encode_png(decoded))
