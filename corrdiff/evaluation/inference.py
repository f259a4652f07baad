"""Loading the models of an evaluation, and coding one image with every method (real files, metrics)."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from corrdiff import baselines as classical
from corrdiff.evaluation.plan import Plan, method_key, rate_label
from corrdiff.evaluation.timing import StageTimes
from corrdiff.image_io import to_tensor, to_uint8


@dataclass
class Model:
    """One RD point of the CorrDiff methods: a fixed-rate model, or a variable-rate model at one quality.

    ``curve`` is None for fixed-rate models (together they form one curve per mode, ``corrdiff-<mode>``, as a
    ladder of separately trained models does) and a variable-rate model's label for each of its qualities (its
    own curve per mode, ``corrdiff-<curve>-<mode>``).
    """

    label: str
    codec: Any
    source: str
    quality: float | None = None
    curve: str | None = None

    def method(self, mode: str) -> str:
        """The key of this point's method in ``mode``."""
        return method_key(self.curve, mode)


def curves(loaded: Sequence[Model]) -> list[str | None]:
    """The CorrDiff curves of an evaluation in order of appearance: None (the fixed-rate models) and each
    variable-rate model's label."""
    return list(dict.fromkeys(m.curve for m in loaded))


def rate_points(label: str, codec: Any, source: str, qualities: Sequence[float] | None) -> list[Model]:
    """The points of one model: itself for a fixed-rate model; each of ``qualities`` (default: the model's
    default quality) for a variable-rate one, labelled ``<label>@q<Q>`` (ValueError for one out of range)."""
    if codec.quality_range is None:
        return [Model(label, codec, source)]
    points = []
    for q in qualities or [codec.default_quality]:
        try:
            codec.rate_condition(q)
        except ValueError as exc:
            raise ValueError(f"--quality {q:g}: {label}: {exc}") from None
        points.append(Model(f"{label}@{rate_label(q)}", codec, source, float(q), label))
    return points


def model_label(source: Any, index: int, count: int) -> str:
    """A model file's stem (a packaged name as is); ``model`` / ``model<i>`` for in-memory codecs."""
    if isinstance(source, (str, Path)):
        return Path(str(source)).stem if Path(str(source)).suffix else str(source)
    return f"model{index}" if count > 1 else "model"


def load_models(models: Sequence[Any], device: str, plan: Plan) -> list[Model]:
    """Each model once, labelled by its file's stem (made unique), as its RD points (:func:`rate_points`: a
    variable-rate model at each of ``plan.rate_qualities``); option values checked against it."""
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
    if plan.rate_qualities and all(m.codec.quality_range is None for m in loaded):
        raise ValueError("--quality needs a variable-rate model (e.g. --model variable); "
                         f"{', '.join(labels)} code(s) at one fixed rate each")
    return [point for m in loaded for point in rate_points(m.label, m.codec, m.source, plan.rate_qualities)]


Staged = list[tuple[str, str, dict[str, Any], np.ndarray]]  # (method, point, CSV row, decoded image)
Coded = tuple[str, str, int, np.ndarray, dict[str, Any]]  # (method, point, file bytes, decoded image, CSV extras)


def digest(image: np.ndarray) -> tuple[tuple[int, ...], bytes]:
    """A key of an image's values: its shape and a hash of its bytes."""
    return image.shape, hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()


class Scores:
    """The per-image metrics and FID features of one image's reconstructions, each distinct reconstruction
    computed once (a bpp-matched baseline may land on a fixed quality, two targets on one quality)."""

    def __init__(self, suite, reference: np.ndarray, stages: StageTimes):
        self.suite, self.reference, self.stages = suite, reference, stages
        self._metrics: dict[Any, dict[str, float]] = {}
        self._features: dict[Any, Any] = {}

    def metrics(self, decoded: np.ndarray) -> dict[str, float]:
        """Every per-image metric of ``decoded`` against the reference."""
        key = digest(decoded)
        if key not in self._metrics:
            with self.stages.timed("metrics"):
                self._metrics[key] = self.suite.score(self.reference, decoded)
        return dict(self._metrics[key])

    def features(self, image: np.ndarray):
        """The FID patch features of ``image`` (the reference or a reconstruction)."""
        key = digest(image)
        if key not in self._features:
            with self.stages.timed("metrics"):
                self._features[key] = self.suite.patch_fid.features(image)
        return self._features[key]


class Inline:
    """An executor that runs each task at once in the calling thread (no worker threads)."""

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """``fn(*args, **kwargs)`` now, as a finished Future (holding its exception if it raised one)."""
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - raised again by future.result(), as a pool's would be
            future.set_exception(exc)
        return future


@contextmanager
def baseline_pool(plan: Plan) -> Iterator[Any]:
    """Worker threads for the baselines (Pillow's encoders and decoders release the GIL): at most
    ``plan.workers`` and one per codec; :class:`Inline` when that is one or fewer."""
    count = min(plan.workers, len(plan.baselines))
    if count <= 1:
        yield Inline()
        return
    pool = ThreadPoolExecutor(count, thread_name_prefix="corrdiff-eval-baseline")
    try:
        yield pool
    except BaseException:  # an interrupt or a failure: queued baselines are dropped, not waited for
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def encode_corrdiff(x, loaded: list[Model], plan: Plan, stages: StageTimes) -> list[tuple[Model, str, Any, float | None]]:
    """Every model's files of one image, as (model, mode, encode result, encoding seconds): one file per mode,
    or with ``same_file`` one 'corrected' file for every mode (its seconds on the 'corrected' row only)."""
    def encode(model: Model, mode: str):
        return stages.run("corrdiff encode", model.codec.encode, x, steps=plan.steps, seed=plan.seed, mode=mode,
                          sampler=plan.sampler, quality=model.quality)

    files = []
    for model in loaded:
        shared = encode(model, "corrected") if plan.same_file else None
        for mode in plan.modes:
            if shared is not None:
                files.append((model, mode, shared[0], shared[1] if mode == "corrected" else None))
            else:
                files.append((model, mode, *encode(model, mode)))
    return files


def decode_corrdiff(model: Model, mode: str, result, enc_time: float | None, plan: Plan, stages: StageTimes) -> Coded:
    """One file decoded in ``mode`` from its bytes, with ``decode_mismatch``: the largest difference to the
    encoder's own reconstruction (0 when the decoder reproduces it; checked where the file is this mode's)."""
    decoded, dec_time = stages.run("corrdiff decode", lambda: to_uint8(model.codec.decompress(result.data, mode=mode)))
    mismatch = None
    if not plan.same_file or mode == "corrected":
        mismatch = int(np.abs(to_uint8(result.reconstruction).astype(int) - decoded).max())
    return (model.method(mode), model.label, len(result.data), decoded,
            {"quality": model.quality, "encoding_time": enc_time, "decoding_time": dec_time,
             "decode_mismatch": mismatch})


def code_baseline(rgb: np.ndarray, fmt: str, qualities: list[int], targets: list[tuple[str, float]],
                  stages: StageTimes) -> list[Coded]:
    """One codec's files of one image: each fixed quality, then per (point, bpp) target the highest quality
    not above it. One :class:`~corrdiff.baselines.Encodes`: no quality is encoded twice."""
    start = time.perf_counter()
    encodes = classical.Encodes(rgb, fmt)
    coded: list[Coded] = []
    for q in qualities:
        res = encodes.result(q)
        coded.append((fmt, rate_label(q), len(res.data), res.decoded, {
            "quality": q, "encoding_time": encodes.encode_seconds[q], "decoding_time": encodes.decode_seconds[q]}))
    for label, target in targets:
        res = encodes.at_bpp(target)
        coded.append((f"{fmt}-matched", label, len(res.data), res.decoded, {"quality": res.quality, "target_bpp": target}))
    stages.add("baselines", time.perf_counter() - start)
    return coded


def evaluate_image(rgb: np.ndarray, image_name: str, loaded: list[Model], plan: Plan, scores: Scores,
                   stages: StageTimes, pool: Any) -> Staged:
    """Every method's rows for one image: each model in each mode (real files), then the baselines.

    The CorrDiff files are encoded first; the baselines, which match their sizes, are then coded in
    ``pool`` while the files are decoded and scored here. The rows and their order do not depend on ``pool``.
    """
    h, w = rgb.shape[:2]
    files = encode_corrdiff(to_tensor(rgb), loaded, plan, stages)
    # with same_file, every mode's file is the 'corrected' one
    targets = [(model.label, 8.0 * len(result.data) / (h * w)) for model, mode, result, _ in files
               if plan.matched and mode == plan.matched_mode]
    jobs = [pool.submit(code_baseline, rgb, fmt, plan.qualities, targets, stages) for fmt in plan.baselines]
    try:
        return _staged_rows(files, jobs, rgb, image_name, plan, scores, stages)
    except BaseException:  # this image failed or was interrupted: its baselines still queued are not needed
        for job in jobs:
            job.cancel()
        raise


def _staged_rows(files, jobs: list[Future], rgb: np.ndarray, image_name: str, plan: Plan, scores: Scores,
                 stages: StageTimes) -> Staged:
    """The rows of one image: its CorrDiff files decoded and scored, then each baseline's when it is done."""
    h, w = rgb.shape[:2]

    def rows(coded: list[Coded]) -> Staged:
        return [(method, point, {"method": method, "point": point, "image": image_name, "width": w, "height": h,
                                 "bytes": size, "bpp": 8.0 * size / (h * w), **scores.metrics(decoded), **extra,
                                 "status": "ok"}, decoded)
                for method, point, size, decoded, extra in coded]

    staged = rows([decode_corrdiff(*file, plan, stages) for file in files])
    for job in jobs:
        staged += rows(job.result())
    return staged
