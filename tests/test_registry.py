"""The component registries: third-party registration, lookup errors, entry points, build()."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import textwrap

import pytest
import torch

import corrdiff
from corrdiff import registry
from corrdiff.registry import SAMPLERS, SCHEDULES, Registry, UnknownComponentError

from conftest import make_codec, random_image


@pytest.fixture
def cleanup():
    """Unregister every (registry, name) added by a test, restoring what was there before."""
    added: list[tuple[Registry, str, object]] = []

    def track(reg: Registry, name: str) -> None:
        added.append((reg, name, reg._entries.get(name)))

    yield track
    for reg, name, previous in reversed(added):
        if previous is None:
            reg._entries.pop(name, None)
        else:
            reg._entries[name] = previous


def test_custom_schedule_registered_outside_package_is_built_by_name(cleanup):
    from corrdiff.modules.schedules import LinearSchedule

    cleanup(SCHEDULES, "test_short_linear")

    @SCHEDULES.register("test_short_linear")
    class ShortLinear(LinearSchedule):
        def __init__(self, num_timesteps: int = 50):
            super().__init__(num_timesteps=num_timesteps, beta_start=1e-3, beta_end=0.2)

    assert ShortLinear.registry_name == "test_short_linear"
    assert "test_short_linear" in SCHEDULES and SCHEDULES["test_short_linear"] is ShortLinear

    codec = make_codec(0, schedule={"name": "test_short_linear", "num_timesteps": 40}, steps=4)
    assert isinstance(codec.schedule, ShortLinear)
    assert codec.schedule.num_timesteps == 40
    assert codec.config["schedule"] == {"name": "test_short_linear", "num_timesteps": 40}
    # the custom component is really used: its timesteps drive the sampler
    assert codec.make_sampler().set_timesteps(4) == [39, 29, 19, 9]

    image = random_image(16, 32)
    result = codec.encode(image)
    assert torch.equal(codec.decompress(result.data), result.reconstruction)


def test_custom_sampler_registered_outside_package_round_trips(cleanup):
    from corrdiff.modules.samplers import DDIMSampler

    cleanup(SAMPLERS, "test_counting_ddim")
    calls = []

    @SAMPLERS.register("test_counting_ddim")
    class CountingDDIM(DDIMSampler):
        def step(self, x0, t, x_t, generator=None):
            calls.append(t)
            return super().step(x0, t, x_t, generator)

    codec = make_codec(0, sampler={"name": "test_counting_ddim"}, steps=3)
    result = codec.encode(random_image(16, 16))
    assert corrdiff.bitstream.unpack(result.data).sampler == "test_counting_ddim"
    assert len(calls) == 3
    assert torch.equal(codec.decompress(result.data), result.reconstruction)
    assert len(calls) == 6


def test_a_sampler_with_its_own_recorded_parameter_needs_no_change_elsewhere(cleanup):
    """Issue 14: a sampler with one extra parameter is one class; the file records that parameter (float32)
    in the sampler's declared order, and the decoder rebuilds the sampler from it."""
    from corrdiff.modules.samplers import DDIMSampler

    cleanup(SAMPLERS, "test_shrinking_ddim")

    @SAMPLERS.register("test_shrinking_ddim")
    class ShrinkingDDIM(DDIMSampler):
        """DDIM stepping from a shrunk x0 estimate (a throw-away example)."""

        recorded_params = ("eta", "shrink")

        def __init__(self, schedule, eta: float = 0.0, shrink: float = 1.0):
            super().__init__(schedule, eta)
            if not 0.0 < shrink <= 1.0:
                raise ValueError(f"shrink must lie in (0, 1], got {shrink}")
            self.shrink = shrink

        def step(self, x0, t, x_t, generator=None):
            return super().step(x0 * self.shrink, t, x_t, generator)

    codec = make_codec(0, steps=3)
    image = random_image(16, 16)
    result = codec.encode(image, sampler={"name": "test_shrinking_ddim", "shrink": 0.7})
    header = corrdiff.bitstream.unpack(result.data)
    assert (header.sampler, header.sampler_params) == ("test_shrinking_ddim", (0.0, corrdiff.bitstream.to_float32(0.7)))
    assert torch.equal(codec.decompress(result.data), result.reconstruction)  # the encoder used the float32 value
    # the decoder really reads the parameter from the file: another value, another image
    other = dataclasses.replace(header, sampler_params=(0.0, 0.5))
    assert not torch.equal(codec.decompress(corrdiff.bitstream.pack(other)), result.reconstruction)
    for params, message in [((0.0, 2.0), "shrink must lie in"), ((0.0,), "records 1 parameters"),
                            ((0.0, 0.5, 1.0), "records 3 parameters")]:
        with pytest.raises(corrdiff.BitstreamError, match=message):
            codec.decompress(corrdiff.bitstream.pack(dataclasses.replace(header, sampler_params=params)))


def test_samplers_registered_as_factories_and_bad_recorded_values(cleanup):
    """A sampler registered as a factory function declares its recorded parameters on what it builds; a
    recorded value that a file cannot hold (not a finite float32) is refused at encode time, before any work."""
    from corrdiff.modules.samplers import DDIMSampler

    cleanup(SAMPLERS, "test_factory_ddim")
    SAMPLERS.register("test_factory_ddim")(lambda schedule, eta=0.25: DDIMSampler(schedule, eta))
    codec = make_codec(0, steps=2)
    result = codec.encode(random_image(16, 16), sampler={"name": "test_factory_ddim"})
    assert corrdiff.bitstream.unpack(result.data).sampler_params == (0.25,)
    assert torch.equal(codec.decompress(result.data), result.reconstruction)

    cleanup(SAMPLERS, "test_huge_eta")

    @SAMPLERS.register("test_huge_eta")
    class HugeEta(DDIMSampler):
        def __init__(self, schedule, eta: float = 0.0):
            super().__init__(schedule, 0.0)
            self.eta = eta  # unchecked by this (broken) plug-in

    for eta in (1e39, math.inf, math.nan):
        with pytest.raises(ValueError, match="not a finite float32"):
            codec.encode(random_image(16, 16), sampler={"name": "test_huge_eta", "eta": eta})


def test_unknown_name_lists_registered_names():
    with pytest.raises(UnknownComponentError) as info:
        SCHEDULES.get("no_such_schedule")
    message = str(info.value)
    assert "no_such_schedule" in message
    for name in ("linear", "cosine"):
        assert name in message
    assert isinstance(info.value, KeyError)
    assert not message.startswith("'")  # not KeyError's quoted repr

    with pytest.raises(UnknownComponentError, match="ddim, ddim_quadratic, ddpm"):
        make_codec(0, sampler={"name": "euler"})


def test_duplicate_registration_refused_unless_override():
    things = Registry("thing", "factories without a contract")

    def first(**kw):
        return "first"

    def second(**kw):
        return "second"

    things.register("test_dup")(first)
    things.register("test_dup")(first)  # re-registering the same factory is harmless
    with pytest.raises(ValueError, match="already registered.*override=True"):
        things.register("test_dup")(second)
    assert things.build("test_dup") == "first"
    things.register("test_dup", override=True)(second)
    assert things.build({"name": "test_dup"}) == "second"


def test_builtin_names_cannot_be_silently_replaced():
    from corrdiff.modules.schedules import LinearSchedule

    with pytest.raises(ValueError, match="already registered"):
        SCHEDULES.register("linear")(lambda **kw: None)
    assert SCHEDULES["linear"] is LinearSchedule


def test_registry_module_repr_lists_every_kind(capsys):
    print(corrdiff.registry)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0] == "corrdiff registries:"
    expected_kinds = {"encoder", "decoder", "prior", "conditioner", "score_net", "schedule", "sampler", "base",
                      "discriminator"}
    assert set(registry.ALL) == expected_kinds
    for kind, reg in registry.ALL.items():
        line = next(line for line in lines if line.split()[0] == kind)
        for name in reg:
            assert name in line
    for name in ("gdn", "residual", "mean_scale_hyperprior", "factorized", "pyramid", "unet", "ddim", "ddpm", "patch"):
        assert name in out
    assert repr(SAMPLERS).startswith("Registry(sampler:") and "ddim" in repr(SAMPLERS)


def test_registries_behave_as_mappings():
    assert list(SAMPLERS) == sorted(SAMPLERS)
    assert len(SAMPLERS) >= 2
    assert dict(SAMPLERS.items())["ddim"] is SAMPLERS.get("ddim")
    assert "nope" not in SAMPLERS


def _fake_entry_points(tmp_path, monkeypatch, module_name: str, body: str):
    (tmp_path / f"{module_name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(name="fakeplugin", value=module_name, group=registry.ENTRY_POINT_GROUP)
    seen_groups = []

    def entry_points(**kwargs):
        seen_groups.append(kwargs.get("group"))
        return [ep] if kwargs.get("group") == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return seen_groups


PLUGIN = """
    from corrdiff.modules.schedules import CosineSchedule
    from corrdiff.registry import SCHEDULES

    @SCHEDULES.register("{name}")
    class PluginSchedule(CosineSchedule):
        pass
"""


def test_load_entry_points_imports_advertised_modules(tmp_path, monkeypatch, cleanup):
    cleanup(SCHEDULES, "test_plugin_schedule")
    seen = _fake_entry_points(tmp_path, monkeypatch, "corrdiff_test_plugin_a", PLUGIN.format(name="test_plugin_schedule"))
    assert registry.load_entry_points() == ["fakeplugin"]
    assert seen == [registry.ENTRY_POINT_GROUP]
    assert "test_plugin_schedule" in SCHEDULES
    assert SCHEDULES.build("test_plugin_schedule").num_timesteps == 1000


def test_lookup_miss_loads_entry_points_automatically(tmp_path, monkeypatch, cleanup):
    cleanup(SCHEDULES, "test_plugin_lazy")
    _fake_entry_points(tmp_path, monkeypatch, "corrdiff_test_plugin_b", PLUGIN.format(name="test_plugin_lazy"))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    assert "test_plugin_lazy" not in SCHEDULES
    schedule = SCHEDULES.get("test_plugin_lazy")  # miss -> entry points loaded -> found
    assert schedule.__name__ == "PluginSchedule"
    assert registry._entry_points_loaded


def test_build_rejects_spec_without_name():
    with pytest.raises(ValueError, match="'name'"):
        SCHEDULES.build({"num_timesteps": 10})
    with pytest.raises(ValueError, match="'name'"):
        SCHEDULES.build(["linear"])  # type: ignore[arg-type]
    assert registry.split_spec("linear") == ("linear", {})
    spec = {"name": "linear", "num_timesteps": 10}
    assert registry.split_spec(spec) == ("linear", {"num_timesteps": 10})
    assert spec == {"name": "linear", "num_timesteps": 10}  # not mutated


def test_build_rejects_clashing_wired_kwargs():
    schedule = SCHEDULES.build("linear")
    with pytest.raises(ValueError, match=r"\['schedule'\].*set by corrdiff"):
        SAMPLERS.build({"name": "ddim", "schedule": "x"}, schedule=schedule)
    # through the codec config: the latent width is wired, not configured per component
    with pytest.raises(ValueError, match="latent_channels"):
        make_codec(0, encoder={"name": "gdn", "channels": 8, "latent_channels": 16})


def test_a_component_that_breaks_its_contract_fails_at_registration(cleanup):
    """Issue 14: a plug-in sampler without ``step`` is refused when it registers, not deep in a decode."""
    from corrdiff.registry import CONDITIONERS, ContractError

    cleanup(SAMPLERS, "test_no_step")
    with pytest.raises(ContractError, match=r"sampler 'test_no_step' lacks step, recorded_params"):
        @SAMPLERS.register("test_no_step")
        class NoStep:
            def set_timesteps(self, n): ...
            def alpha_bar(self, t): ...

    assert "test_no_step" not in SAMPLERS
    # what a class cannot show before it is built (attributes set in __init__, factories) is checked on build
    cleanup(CONDITIONERS, "test_no_channels")
    CONDITIONERS.register("test_no_channels")(lambda **kw: torch.nn.Identity())
    with pytest.raises(ContractError, match="builds an object that lacks out_channels"):
        CONDITIONERS.build({"name": "test_no_channels"}, latent_channels=8)


def test_every_builtin_component_keeps_its_contract():
    from corrdiff.registry import ALL

    for registry in ALL.values():
        for name in registry:
            factory = registry[name]
            if isinstance(factory, type):
                assert registry.contract.missing(factory, built=False) == [], (registry.kind, name)
