"""Named registries of swappable components.

A component is chosen in a config by name plus keyword arguments::

    encoder: {name: gdn, channels: 64, latent_channels: 96}

and built with :func:`build`. Third-party code registers its own components with
the decorator, from anywhere::

    from corrdiff.registry import SCORE_NETS

    @SCORE_NETS.register("my_unet")
    class MyUNet(torch.nn.Module): ...

or, without being imported by the user, through the Python entry-point group
``corrdiff.components`` (a module that is imported the first time a lookup misses).

This module imports no torch: the built-in components are imported lazily the
first time a registry is read, which keeps ``import corrdiff`` cheap.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

ENTRY_POINT_GROUP = "corrdiff.components"

_BUILTIN_MODULES = (
    "corrdiff.modules.transforms",
    "corrdiff.modules.priors",
    "corrdiff.modules.context_prior",
    "corrdiff.modules.channel_prior",
    "corrdiff.modules.conditioning",
    "corrdiff.modules.score_net",
    "corrdiff.modules.schedules",
    "corrdiff.modules.samplers",
    "corrdiff.modules.discriminators",
    "corrdiff.modules.avif_base",
)
_builtins_loaded = False
_entry_points_loaded = False


class UnknownComponentError(KeyError):
    """A registry lookup named a component that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def load_entry_points() -> list[str]:
    """Import every module advertised in the ``corrdiff.components`` entry-point group.

    Returns the names of the entry points loaded. Called automatically the first
    time a lookup misses; safe to call again.
    """
    global _entry_points_loaded
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    loaded = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()
        loaded.append(entry_point.name)
    return loaded


@dataclass(frozen=True)
class Contract:
    """What the codec calls on a component of one kind: its typed interface.

    ``methods`` must be callables of the component (checked on the class when a class is
    registered, so a plug-in from another package fails at registration, and again on the built
    object; ``__call__`` can only be checked there, since every class is callable); ``attributes`` must exist on the built object (they are often set in
    ``__init__``). ``optional`` documents what the codec reads when present (by ``getattr``,
    with the default it states).
    """

    methods: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    optional: str = ""
    class_attributes: tuple[str, ...] = ()  # declared on the class itself, so checked at registration too

    def missing(self, component: Any, built: bool) -> list[str]:
        names = [m for m in self.methods if not callable(getattr(component, m, None))]
        names += [a for a in self.class_attributes if not hasattr(component, a)]
        if built:
            names += [a for a in self.attributes if not hasattr(component, a)]
        return names


class ContractError(TypeError):
    """A component does not provide what its registry's :class:`Contract` requires."""


class Registry(Mapping[str, Callable[..., Any]]):
    """A name -> factory (usually a class) table for one kind of component, with its :class:`Contract`."""

    def __init__(self, kind: str, description: str, contract: Contract = Contract()):
        self.kind = kind
        self.description = description
        self.contract = contract
        self._entries: dict[str, Callable[..., Any]] = {}

    def _check(self, name: str, component: Any, built: bool) -> None:
        missing = self.contract.missing(component, built)
        if missing:
            what = "builds an object that lacks" if built else "lacks"
            attributes = list(self.contract.class_attributes + self.contract.attributes)
            raise ContractError(f"{self.kind} {name!r} {what} {', '.join(missing)}: a {self.kind} must provide "
                                f"methods {list(self.contract.methods)} and attributes {attributes}")

    def register(self, name: str, *, override: bool = False) -> Callable[[Callable], Callable]:
        """Decorator registering a class or factory under ``name``.

        Registering a taken name is an error unless ``override=True``.
        """

        def decorator(factory: Callable) -> Callable:
            if not override and name in self._entries and self._entries[name] is not factory:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered ({self._entries[name]!r}); "
                    "pass override=True to replace it"
                )
            if isinstance(factory, type):
                self._check(name, factory, built=False)
            self._entries[name] = factory
            factory.registry_name = name
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., Any]:  # type: ignore[override]
        _load_builtins()
        if name not in self._entries and not _entry_points_loaded:
            load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._entries)) or '(none)'}"
            ) from None

    def build(self, spec: Mapping[str, Any] | str, **extra: Any) -> Any:
        """Build a component from ``{"name": ..., **kwargs}`` (or a bare name).

        ``extra`` keyword arguments are wiring supplied by the caller (e.g. the
        latent width) and must not clash with the spec's own arguments.
        """
        name, kwargs = split_spec(spec)
        clash = set(kwargs) & set(extra)
        if clash:
            raise ValueError(f"{self.kind} {name!r}: {sorted(clash)} are set by corrdiff, not by the config")
        component = self.get(name)(**kwargs, **extra)
        self._check(name, component, built=True)
        return component

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        _load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        _load_builtins()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        _load_builtins()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self)})"


def split_spec(spec: Mapping[str, Any] | str) -> tuple[str, dict[str, Any]]:
    """``{"name": n, **kw}`` or ``"n"`` -> ``(n, kw)``."""
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"a component spec is a name or a mapping with a 'name' key, got {spec!r}")
    kwargs = dict(spec)
    return str(kwargs.pop("name")), kwargs


_TRANSFORM = Contract(("__call__",), optional="receptive_radius (None: never tiled), a stride of 16 (checked)")
ENCODERS = Registry("encoder", "analysis transforms x -> y (stride 16)", _TRANSFORM)
DECODERS = Registry("decoder", "end-to-end synthesis transforms y_hat -> x0_e (stride 16)", _TRANSFORM)
PRIORS = Registry("prior", "entropy models for y (and side information z)", Contract(
    ("__call__", "compress", "decompress", "update", "aux_loss", "entropy_tables_ready"), ("streams",),
    optional="stream_symbols(latent_hw) (None: stream lengths are not bounded before decoding)"))
CONDITIONERS = Registry("conditioner", "conditioning networks y_hat -> score-network features", Contract(
    ("__call__",), ("out_channels",), optional="receptive_radius"))
SCORE_NETS = Registry("score_net", "conditional denoisers (x_t, t, features) -> eps or x0", Contract(
    ("__call__",), optional="prediction ('eps'), multiple (1), uses_e2e (False), project_condition"))
SCHEDULES = Registry("schedule", "noise schedules giving alpha_bar_t", Contract(
    ("add_noise", "alpha_bar_at", "snr"), ("num_timesteps", "alpha_bar")))
SAMPLERS = Registry("sampler", "reverse-process samplers exposing each step's x0 estimate", Contract(
    ("set_timesteps", "alpha_bar", "step"), class_attributes=("recorded_params",),
    optional="each name in recorded_params is a number attribute that a file records (corrdiff.sampling)"))

BASES = Registry("base", "base codecs whose bytes both sides decode exactly to x0_e (the learned base is the default)",
                 Contract(("code", "read", "check_quality", "condition_input"),
                          ("streams", "quality_range", "default_quality", "condition_channels")))

DISCRIMINATORS = Registry("discriminator", "training-only critics (sample, condition[, t]) -> (patch logits, features)",
                          Contract(("__call__",), class_attributes=("uses_timestep",),
                                   optional="built with condition_channels (wiring) by the adversarial training"))

ALL = {r.kind: r for r in (ENCODERS, DECODERS, PRIORS, CONDITIONERS, SCORE_NETS, SCHEDULES, SAMPLERS,
                           BASES, DISCRIMINATORS)}


class _RegistryModule(types.ModuleType):
    """Makes ``print(corrdiff.registry)`` list every registry and its names."""

    def __repr__(self) -> str:
        lines = ["corrdiff registries:"]
        for kind, registry in ALL.items():
            lines.append(f"  {kind:<12} {', '.join(registry)}  ({registry.description})")
        return "\n".join(lines)


sys.modules[__name__].__class__ = _RegistryModule
