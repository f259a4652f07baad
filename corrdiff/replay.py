"""The replay record: everything a file fixes about its decode, built once on each side (docs/architecture.md).

The encoder builds it from its options (:meth:`Replay.for_encoding`), the decoder from the parsed file
(:meth:`Replay.from_file`); the sampling loop (:func:`corrdiff.sampling.sample`), the size search's header
estimate (:func:`corrdiff.rate_search.header_bytes`) and the file's header (:meth:`Replay.header`) all read the
same record, so no side derives the mode, the sampler or the rate twice:

* the decode mode (:class:`~corrdiff.bitstream.DecodeMode`: whether it samples and whether it corrects);
* the image size and whether it is gray;
* the sampler with its recorded parameters (:class:`FileSampler`: name, float32 values, the built sampler) and
  the number of steps; the seed;
* the rate condition (a variable-rate or base-codec model's quality; None for a fixed-rate model).

A later format adds its fields here (e.g. the numerics the encoder used). The file records the sampler as its
registry name plus the values of the parameters the sampler declares in ``recorded_params`` (float32):
:func:`sampler_for_encoding` builds the sampler the file will name, :func:`sampler_from_file` rebuilds it on
the decoder's side.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from corrdiff import bitstream
from corrdiff.errors import BitstreamError
from corrdiff.model import CorrDiffModel
from corrdiff.modules.rate import RateCondition
from corrdiff.registry import SAMPLERS, ContractError

@dataclass(frozen=True)
class FileSampler:
    """A built sampler with what the file records of it: its name and its recorded parameters' values."""

    name: str
    params: tuple[float, ...]  # float32 values, in the order of the sampler's ``recorded_params``
    sampler: Any


def recorded_params(name: str, schedule: nn.Module) -> tuple[str, ...]:
    """The parameters that sampler ``name`` declares the file must record (its ``recorded_params``): the
    class's, or for a sampler registered as a factory function, those of one it builds with its defaults."""
    recorded = getattr(SAMPLERS.get(name), "recorded_params", None)
    if recorded is None:
        recorded = getattr(SAMPLERS.build(name, schedule=schedule), "recorded_params", None)
    if recorded is None:
        raise ContractError(f"sampler {name!r} declares no recorded_params (the parameters a file records)")
    return tuple(recorded)


def _recorded_value(name: str, param: str, value: Any) -> float:
    """``value`` as the file stores it (float32); ValueError for what a file cannot hold."""
    try:
        stored = bitstream.to_float32(value)
    except (OverflowError, TypeError, ValueError):
        stored = math.nan
    if not math.isfinite(stored):
        raise ValueError(f"sampler {name!r}: {param} = {value!r} is not a finite float32, which the file records")
    return stored


def _build(name: str, params: Mapping[str, Any], schedule: nn.Module, steps: int | None) -> FileSampler:
    """Build sampler ``name`` with ``params`` and read back its recorded values (float32-rounded)."""
    sampler = SAMPLERS.build({"name": name, **params}, schedule=schedule)
    recorded = recorded_params(name, schedule)
    missing = [p for p in recorded if not hasattr(sampler, p)]
    if missing or len(recorded) > bitstream.MAX_SAMPLER_PARAMS:
        raise ContractError(f"sampler {name!r} must expose each of its recorded_params {list(recorded)} as an "
                            f"attribute (missing {missing}) and record at most {bitstream.MAX_SAMPLER_PARAMS}")
    if steps is not None:
        sampler.set_timesteps(steps)
    return FileSampler(name, tuple(_recorded_value(name, p, getattr(sampler, p)) for p in recorded), sampler)


def sampler_for_encoding(spec: Mapping[str, Any], schedule: nn.Module, steps: int | None) -> FileSampler:
    """The sampler of ``spec`` as the file records it, built from the recorded (float32) values so that the
    encoder samples exactly as the decoder will; its defaults are recorded too (ddpm: eta = 1). ValueError,
    before any work, for an option the file cannot record and for bad steps or parameter values."""
    name, options = str(spec["name"]), {k: v for k, v in spec.items() if k != "name"}
    recorded = recorded_params(name, schedule)
    extra = set(options) - set(recorded)
    if extra:
        raise ValueError(f"sampler {name!r} for compression takes only {sorted(recorded)} (what the file records), "
                         f"got {sorted(extra)}")
    rounded = {key: _recorded_value(name, key, value) for key, value in options.items()}
    built = _build(name, rounded, schedule, steps)  # given values rounded first: one build in the usual case
    if any(getattr(built.sampler, p) != v for p, v in zip(recorded, built.params)):  # a default float32 rounds
        built = _build(name, dict(zip(recorded, built.params)), schedule, steps)
    return built


def parse_sampler_spec(text: str) -> dict[str, Any]:
    """``"NAME[,key=value...]"`` (the command line's ``--sampler``, docs/architecture.md) -> ``{"name": NAME,
    key: float(value), ...}``, e.g. ``"ddim,eta=0.5"``. ValueError for a malformed spec; the name and the
    parameters are checked against the registry by :func:`sampler_for_encoding`."""
    name, *pairs = (item.strip() for item in text.split(","))
    if not name or "=" in name:
        raise ValueError(f"a sampler is NAME[,key=value...], e.g. ddim or ddim,eta=0.5; got {text!r}")
    spec: dict[str, Any] = {"name": name}
    for pair in pairs:
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not key or key in spec:
            raise ValueError(f"sampler {name!r}: expected distinct key=value parameters, got {pair!r} in {text!r}")
        try:
            spec[key] = float(value)
        except ValueError:
            raise ValueError(f"sampler {name!r}: {key} = {value!r} is not a number") from None
    return spec


def sampler_from_file(bs: bitstream.Bitstream, schedule: nn.Module) -> FileSampler:
    """The sampler a file records, rebuilt here (BitstreamError if it is unknown here or its values are invalid)."""
    if bs.steps == 0:
        raise BitstreamError(f"file was encoded in mode {bs.mode!r}; it has no sampling steps to decode")
    if bs.sampler not in SAMPLERS:
        raise BitstreamError(f"file needs sampler {bs.sampler!r}, which is not registered here")
    try:
        recorded = recorded_params(bs.sampler, schedule)
        if len(recorded) != len(bs.sampler_params):
            raise BitstreamError(f"file records {len(bs.sampler_params)} parameters for sampler {bs.sampler!r}, "
                                 f"which records {len(recorded)} ({', '.join(recorded) or 'none'})")
        return _build(bs.sampler, dict(zip(recorded, bs.sampler_params)), schedule, bs.steps)
    except (ValueError, TypeError) as exc:
        raise BitstreamError(f"file's sampler parameters are invalid ({exc})") from None


def file_rate(model: CorrDiffModel, bs: bitstream.Bitstream) -> RateCondition | None:
    """The rate a file was coded at (its quality record); BitstreamError unless the record is there exactly
    when ``model`` codes at several rates (a variable-rate or base-codec model), with a quality in its range."""
    if model.quality_range is not None and bs.quality is None:
        raise BitstreamError("the file has no quality record, which this variable-rate model needs")
    try:
        return model.rate_condition(bs.quality, model.device)
    except ValueError as exc:
        raise BitstreamError(f"the file's quality record does not fit this model: {exc}") from None


@dataclass(frozen=True)
class Replay:
    """What a file fixes about its decode (see the module doc). ``sampler`` is None only when decoding a file
    in a mode that does not sample; ``steps`` is 0 then."""

    mode: bitstream.DecodeMode
    height: int
    width: int
    steps: int
    seed: int
    sampler: FileSampler | None
    rate: RateCondition | None
    gray: bool = False

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width

    @classmethod
    def for_encoding(cls, model: CorrDiffModel, height: int, width: int, mode: str = "corrected",
                     steps: int | None = None, sampler: Mapping[str, Any] | None = None, seed: int = 0,
                     quality: float | None = None, gray: bool = False) -> Replay:
        """The record of an encode with these options (ValueError, before any work, for a bad mode, sampler,
        steps, seed or quality); the sampler is built once, here."""
        kind = bitstream.decode_mode(mode)
        steps = int(steps if steps is not None else model.config["steps"]) if kind.samples else 0
        chosen = sampler_for_encoding(sampler or model.config["sampler"], model.schedule,
                                      steps if kind.samples else None)
        if not 0 <= seed < 2**32:
            raise ValueError(f"seed must lie in [0, 2^32), got {seed}")
        return cls(kind, height, width, steps, seed, chosen, model.rate_condition(quality, model.device), gray)

    @classmethod
    def from_file(cls, model: CorrDiffModel, bs: bitstream.Bitstream, mode: str | None = None) -> Replay:
        """The record of a parsed file, decoded as ``mode`` (default: the file's own; a ``corrected`` decode of a
        file without gammas is a BitstreamError), with its rate checked against ``model``."""
        kind = bitstream.decode_mode(mode or bs.mode)
        if kind.corrects and not bitstream.decode_mode(bs.mode).corrects:
            raise BitstreamError(f"file was encoded in mode {bs.mode!r}; it carries no gammas to decode {kind.name!r}")
        sampler = sampler_from_file(bs, model.schedule) if kind.samples else None
        return cls(kind, bs.height, bs.width, bs.steps, bs.seed, sampler, file_rate(model, bs), bs.gray)

    def with_rate(self, rate: RateCondition | None) -> Replay:
        """The same record at another rate (the size search tries several; nothing is rebuilt)."""
        return dataclasses.replace(self, rate=rate)

    def header(self, fingerprint: bytes, gamma_steps: tuple[bitstream.GammaStep, ...],
               streams: tuple[bytes, ...]) -> bitstream.Bitstream:
        """The file's header for this record (encoding side: the sampler is the one it samples with)."""
        assert self.sampler is not None
        return bitstream.Bitstream(
            fingerprint=fingerprint, height=self.height, width=self.width, mode=self.mode.name,
            sampler=self.sampler.name, steps=self.steps, sampler_params=self.sampler.params, seed=self.seed,
            gamma_steps=gamma_steps, streams=streams, gray=self.gray,
            quality=None if self.rate is None else float(self.rate.quality[0]))


__all__ = ["FileSampler", "Replay", "file_rate", "parse_sampler_spec", "recorded_params", "sampler_for_encoding",
           "sampler_from_file"]
