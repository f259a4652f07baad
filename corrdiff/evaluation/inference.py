"""Loading the models of an evaluation, and coding one image with every method (real files, metrics)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from corrdiff import baselines as classical
from corrdiff.evaluation.plan import Plan
from corrdiff.image_io import to_tensor, to_uint8


@dataclass
class Model:
    """One CorrDiff model of the evaluation (one RD point of every CorrDiff method)."""

    label: str
    codec: Any
    source: str


def model_label(source: Any, index: int, count: int) -> str:
    """A model file's stem (a packaged name as is); ``model`` / ``model<i>`` for in-memory codecs."""
    if isinstance(source, (str, Path)):
        return Path(str(source)).stem if Path(str(source)).suffix else str(source)
    return f"model{index}" if count > 1 else "model"


def load_models(models: Sequence[Any], device: str, plan: Plan) -> list[Model]:
    """Each model once, labelled by its file's stem (made unique); option values checked against it."""
    from corrdiff.codec import CorrDiffCodec
    from corrdiff.model_io import load_model
    from corrdiff.sampling import sampler_for_encoding

    loaded: list[Model] = []
    for i, source in enumerate(models):
        codec = source if isinstance(source, CorrDiffCodec) else load_model(source, map_location=device)
        origin = "in-memory codec" if isinstance(source, CorrDiffCodec) else str(source)
        loaded.append(Model(model_label(source, i, len(models)), codec, origin))
    for m in loaded:
        # reject bad option values before any work, not once per image (an unknown sampler: the registry's error)
        samples = plan.same_file or plan.modes != ["e2e"]
        if plan.sampler is not None or (plan.steps is not None and samples):
            options = f"--steps {plan.steps}" if plan.sampler is None else f"--sampler {plan.sampler}"
            try:
                sampler_for_encoding(plan.sampler or m.codec.config["sampler"], m.codec.schedule,
                                     plan.steps if samples else None)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{options}: {exc}") from None
    labels = [m.label for m in loaded]
    if len(set(labels)) != len(labels):  # two files with the same stem
        for i, m in enumerate(loaded):
            m.label = f"{m.label}#{i}"
    return loaded


Staged = list[tuple[str, str, dict[str, Any], np.ndarray]]  # (method, point, CSV row, decoded image)


def evaluate_image(rgb: np.ndarray, image_name: str, loaded: list[Model], plan: Plan, suite) -> Staged:
    """Every method's rows for one image: each model in each mode (real files), then the baselines."""
    h, w = rgb.shape[:2]
    pixels = h * w
    x = to_tensor(rgb)
    staged: Staged = []

    def row(method: str, point: str, data_len: int, decoded: np.ndarray, **extra: Any) -> None:
        r = {"method": method, "point": point, "image": image_name, "width": w, "height": h,
             "bytes": data_len, "bpp": 8.0 * data_len / pixels, **suite.score(rgb, decoded), **extra,
             "status": "ok"}
        staged.append((method, point, r, decoded))

    targets: list[tuple[str, float]] = []  # (model label, bpp of its file that the baselines match)
    for model in loaded:
        codec = model.codec
        shared = None
        if plan.same_file:
            start = time.perf_counter()
            shared = codec.encode(x, steps=plan.steps, seed=plan.seed, mode="corrected", sampler=plan.sampler)
            shared_time = time.perf_counter() - start
        for mode in plan.modes:
            if plan.same_file:
                result, enc_time = shared, (shared_time if mode == "corrected" else None)
            else:
                start = time.perf_counter()
                result = codec.encode(x, steps=plan.steps, seed=plan.seed, mode=mode, sampler=plan.sampler)
                enc_time = time.perf_counter() - start
            start = time.perf_counter()
            decoded = to_uint8(codec.decompress(result.data, mode=mode))
            dec_time = time.perf_counter() - start
            mismatch = None
            if not plan.same_file or mode == "corrected":
                # the decoder must reproduce the encoder's own reconstruction
                mismatch = int(np.abs(to_uint8(result.reconstruction).astype(int) - decoded).max())
            row(f"corrdiff-{mode}", model.label, len(result.data), decoded, encoding_time=enc_time,
                decoding_time=dec_time, decode_mismatch=mismatch)
            if mode == plan.matched_mode:  # with same_file, every mode's file is the 'corrected' one
                targets.append((model.label, 8.0 * len(result.data) / pixels))
    for fmt in plan.baselines:
        for q in plan.qualities:
            start = time.perf_counter()
            res = classical.encode(rgb, fmt, q)
            row(fmt, f"q{q}", len(res.data), res.decoded, quality=q, encoding_time=time.perf_counter() - start)
        if plan.matched:
            for label, target in targets:
                res = classical.encode_at_bpp(rgb, fmt, target)
                row(f"{fmt}-matched", label, len(res.data), res.decoded, quality=res.quality, target_bpp=target)
    return staged
