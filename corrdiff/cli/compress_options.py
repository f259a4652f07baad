"""``corrdiff compress``'s options that become the encoder's arguments (``--gamma``, ``--sharpen``,
``--sampler``/``--eta``, ``--quality``/``--bpp``/``--size``), checked before any image: names and values
before the model loads, their fit with the model's own settings once it is loaded (:class:`UsageError`)."""

from __future__ import annotations

import argparse
import json

from corrdiff.cli.errors import UsageError

# --sharpen's gamma maps: on the held-out crops, rho = 3 with these maps reached hf-ratio 0.263 at 28.39 dB against
# 28.45 dB at 0.245 with a scalar gamma, and they keep flat regions clean (docs/gamma.md)
SHARPEN_GRANULARITY = "tile-128-linear"


def gamma_options(pairs: list[str], sharpen: float | None) -> dict:
    """``--gamma KEY=VALUE`` pairs (values read as JSON numbers where they are numbers; ``candidates`` as a
    comma-separated list) and ``--sharpen RHO`` as overrides of the model's CorrectionConfig."""
    from corrdiff.correction import CorrectionConfig

    options: dict = {}
    if sharpen is not None:
        options.update(solver="gradient", perceptual={"name": "hf"}, rho=sharpen, granularity=SHARPEN_GRANULARITY)
        try:
            CorrectionConfig().replace(options)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--sharpen {sharpen:g}: {exc}; RHO is the sharpness weight, e.g. 1 (mild) to 3 "
                             "(strong)") from None
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--gamma {pair!r}: expected KEY=VALUE, e.g. granularity=auto")
        if key == "candidates":
            options[key] = [v for v in value.split(",") if v]
        elif key == "perceptual":
            options[key] = {"name": value}
        else:
            try:
                options[key] = json.loads(value)
            except json.JSONDecodeError:
                options[key] = value
    try:
        # names and values checked before the model loads; whether they fit together with the model's own
        # settings (e.g. rho > 0 with its solver) is checked once it is loaded (check_gamma)
        CorrectionConfig().replace({"solver": "gradient", **options})
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--gamma: {exc}") from None
    return options


def check_gamma(codec, options: dict) -> None:
    """UsageError unless the --gamma options fit the loaded model's own correction settings."""
    if codec is None or not options:
        return
    try:
        codec.correction.replace(options)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--gamma: {exc} (this model's settings: {codec.correction.stored()})") from None


def check_rate(codec, args: argparse.Namespace) -> None:
    """UsageError, before any image, for --quality/--bpp/--size with a fixed-rate model or a quality out of range."""
    given = [f"--{name}" for name in ("quality", "bpp", "size") if getattr(args, name) is not None]
    if codec is None or not given:
        return
    if codec.quality_range is None:
        raise UsageError(f"{given[0]} needs a variable-rate model (e.g. --model variable); {args.model} codes at one "
                         "fixed rate")
    if args.quality is not None:
        try:
            codec.rate_condition(args.quality)
        except ValueError as exc:
            raise UsageError(f"--quality: {exc}") from None


def sampler_option(codec, args: argparse.Namespace) -> dict | None:
    """The sampler that --sampler / --eta ask for (None: the model's)."""
    if args.sampler is None and args.eta is None:
        return None
    sampler = dict(args.sampler or codec.config["sampler"])
    if args.eta is not None:
        if args.sampler is not None and args.sampler.get("eta", args.eta) != args.eta:
            raise UsageError(f"--eta {args.eta} contradicts --sampler ...,eta={args.sampler['eta']}; give one")
        sampler["eta"] = args.eta
    return sampler
