"""The start-up policy of a training run, read once: the codec config it builds, the weights it starts from
(``init_from``, with ``init_skip`` components left fresh and ``init_parts`` read from other files) and the
components it does not train (``freeze``). docs/training.md describes the options;
:class:`~corrdiff.training.lit.CodecTraining` documents its arguments.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from corrdiff.errors import ModelLoadError
from corrdiff.model_io import FORMAT, PACKAGED, load_codec_state, load_model, read_checkpoint, under_prefix
from corrdiff.presets import preset as get_preset

COMPONENTS = ("encoder", "decoder", "prior", "conditioner", "score_net")
#: what ``freeze`` may name besides the components: a variable-rate model's gain tables (docs/variable_rate.md),
#: so that a phase trains its rate modulation on a codec that stays the one it was given
FREEZABLE = (*COMPONENTS, "gains")


def resolve_codec_config(
    preset: str | None, codec: dict[str, Any] | None, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A preset's config (or ``base``, e.g. a model file's) with ``codec``'s entries merged over it.

    Nested dicts are merged key by key when they name the same component (or name none), so
    ``codec: {score_net: {prediction: x0}}`` changes one option of the base's score network.
    """
    config = get_preset(preset) if preset else copy.deepcopy(base or {})
    for key, value in (codec or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict) and value.get("name", config[key].get("name")) == config[key].get("name"):
            config[key] = {**config[key], **value}
        else:
            config[key] = copy.deepcopy(value)
    return config


@dataclass(frozen=True)
class StartPolicy:
    """Where a run's weights come from and which of its components train (checked when built)."""

    init_from: str | None = None
    init_skip: tuple[str, ...] = ()
    init_parts: dict[str, str] = field(default_factory=dict)
    freeze: tuple[str, ...] = ()

    @classmethod
    def of(cls, init_from: str | None, init_skip: list[str] | None, init_parts: dict[str, str] | None,
           freeze: list[str] | None) -> StartPolicy:
        """ValueError for an unknown component name, or ``init_parts`` without ``init_from``."""
        policy = cls(init_from, tuple(init_skip or ()), dict(init_parts or {}), tuple(freeze or ()))
        unknown = sorted(((set(policy.init_skip) | set(policy.init_parts)) - set(COMPONENTS))
                         | (set(policy.freeze) - set(FREEZABLE)))
        if unknown:
            raise ValueError(f"init_skip/init_parts/freeze name unknown components {unknown}; "
                             f"known: {', '.join(COMPONENTS)} (and freeze: gains)")
        if policy.init_parts and not init_from:
            raise ValueError("init_parts replaces components of init_from: give init_from too")
        return policy

    def read(self) -> dict[str, Any] | None:
        """``init_from``'s codec config, codec weights and EMA weights (None without ``init_from``)."""
        return read_init(self.init_from) if self.init_from else None

    def codec_config(self, preset: str | None, codec: dict[str, Any] | None, codec_config: dict[str, Any] | None,
                     start: dict[str, Any] | None) -> dict[str, Any]:
        """The run's codec config: a checkpoint's own (``codec_config``, when restoring), else ``codec`` merged
        over ``init_from``'s config (no preset given) or over the preset (``tiny`` when nothing is given)."""
        if codec_config:
            return copy.deepcopy(codec_config)
        if start is not None and preset is None:
            return resolve_codec_config(None, codec, base=start["codec_config"])
        return resolve_codec_config(preset or (None if codec else "tiny"), codec)

    def load(self, codec: nn.Module, ema: nn.Module, start: dict[str, Any]) -> None:
        """Load ``init_from``'s weights into ``codec`` (and its score network's EMA), except the ``init_skip``
        components (kept as initialised) and the ``init_parts`` ones (read from their own files)."""
        path, config = self.init_from, codec.config
        skipped = tuple(f"{name}." for name in self.init_skip)
        state = {k: v for k, v in start["codec_state"].items() if not k.startswith(skipped)}
        state.update({k: v for k, v in codec.state_dict().items() if k.startswith(skipped)})
        if not any(k.startswith("rate_control.") for k in state):  # a fixed-rate start of a variable-rate model:
            state.update({k: v for k, v in codec.state_dict().items() if k.startswith("rate_control.")})  # fresh gains
        for component in COMPONENTS:  # same shapes are not enough: another prediction target fits too
            if component not in self.init_skip and component not in self.init_parts:
                check_same_component(component, start["codec_config"], config, path)
        for component, part_path in self.init_parts.items():
            prefix = f"{component}."
            part = read_init(part_path)
            check_same_component(component, part["codec_config"], config, part_path)
            state = {k: v for k, v in state.items() if not k.startswith(prefix)}
            state.update({k: v for k, v in part["codec_state"].items() if k.startswith(prefix)})
            if component == "score_net":
                start = {**start, "ema_state": part["ema_state"]}
        try:
            load_codec_state(codec, state)
            # (a skipped score network is fresh: the EMA starts from it at the first update)
            if "score_net" in self.init_skip:
                return
            if start["ema_state"] is None:  # a model file: its score network already holds the EMA weights
                ema.module.load_state_dict(codec.score_net.state_dict())
                ema.n_averaged.fill_(1)  # an average to continue, not to overwrite at the first update
            else:
                ema.load_state_dict(start["ema_state"])
        except (ModelLoadError, RuntimeError) as exc:
            raise ModelLoadError(f"{path}: init_from does not fit this config: {exc}") from None

    def set_trainable(self, codec: nn.Module, trains_decoder: bool) -> None:
        """The phase's requires_grad flags: D trains in the phases that train it, frozen parts never (they are
        then invisible to DDP and the optimiser; call before DDP wraps the module)."""
        if codec.decoder is not None:  # (a base codec has no D)
            codec.decoder.requires_grad_(trains_decoder)
        for name in self.freeze:
            if name == "gains":
                if codec.rate_control is None:
                    raise ValueError("freeze: gains are a variable-rate model's (this model has no rate entry)")
                for table in (codec.rate_control.log_gain, codec.rate_control.log_inverse_gain):
                    table.requires_grad_(False)
                continue
            if getattr(codec, name) is None:
                raise ValueError(f"freeze: this model has no {name} (its base codec replaces it)")
            getattr(codec, name).requires_grad_(False)


def check_same_component(component: str, theirs: dict[str, Any], ours: dict[str, Any], path: str) -> None:
    """ModelLoadError unless ``path``'s config of ``component`` equals this run's (weights of an eps
    score network would load into a v one of the same shapes, and mean nothing there)."""
    if theirs.get(component) != ours.get(component):
        raise ModelLoadError(
            f"{path}: init_from does not fit this config: its {component} is {theirs.get(component)}, this run's "
            f"{ours.get(component)} (list {component} in init_skip to start it afresh)")


def read_init(path: str) -> dict[str, Any]:
    """``init_from``'s codec config, codec weights and EMA weights (None for a model file)."""
    if path in PACKAGED or is_model_file(path):
        model = load_model(path)
        return {"codec_config": model.config, "codec_state": model.state_dict(), "ema_state": None}
    checkpoint = read_checkpoint(path)
    if "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise ModelLoadError(f"init_from: {path}: not a Lightning checkpoint of corrdiff's ScoreTraining")
    state = checkpoint["state_dict"]
    return {
        "codec_config": checkpoint["hyper_parameters"]["codec_config"],
        "codec_state": under_prefix(state, "codec."),
        "ema_state": under_prefix(state, "ema."),
    }


def is_model_file(path: str) -> bool:
    """A corrdiff model file (``save_model``), as opposed to a Lightning checkpoint."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable here: read_checkpoint gives the clear error
        return False
    return isinstance(payload, dict) and payload.get("format") == FORMAT


__all__ = ["COMPONENTS", "FREEZABLE", "StartPolicy", "check_same_component", "is_model_file", "read_init", "resolve_codec_config"]
