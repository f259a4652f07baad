"""``import corrdiff`` is cheap: no torch, Lightning or wandb until a model is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import corrdiff

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "pytorch_lightning", "wandb", "compressai", "torchvision", "lpips")

PROBE = textwrap.dedent(
    """
    import json, sys
    import corrdiff
    import corrdiff.bitstream, corrdiff.errors, corrdiff.metric_names, corrdiff.presets
    import corrdiff.cli  # the command line: each command imports torch when it runs
    corrdiff.BitstreamError, corrdiff.ModelMismatchError, corrdiff.registry.SAMPLERS  # eager names stay cheap
    heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
    print(json.dumps({"heavy": heavy, "all": sorted(corrdiff.__all__)}))
    """
).replace("HEAVY", repr(HEAVY))


@pytest.fixture(scope="module")
def probe() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_does_not_load_heavy_dependencies(probe):
    assert probe["heavy"] == []


def test_public_names(probe):
    for name in ("CorrDiffCodec", "load_model", "save_model", "BitstreamError", "ModelMismatchError", "registry"):
        assert name in probe["all"]
    assert set(dir(corrdiff)) == set(corrdiff.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        corrdiff.nope  # noqa: B018


def test_lazy_names_resolve():
    from corrdiff.codec import CorrDiffCodec
    from corrdiff.model import CorrDiffModel
    from corrdiff.model_io import load_model

    assert corrdiff.CorrDiffCodec is CorrDiffCodec
    assert corrdiff.CorrDiffModel is CorrDiffModel
    assert corrdiff.load_model is load_model


def test_registry_prints_all_registries(capsys):
    print(corrdiff.registry)
    out = capsys.readouterr().out
    for kind in ("encoder", "decoder", "prior", "conditioner", "score_net", "schedule", "sampler"):
        assert f"  {kind} " in out
    assert out.count("\n") >= 8


def _imports_from_corrdiff() -> dict[tuple[str, str], list[str]]:
    """``(module, name)`` of every ``from corrdiff.X import name`` in the repository's Python files, with where."""
    import ast

    found: dict[tuple[str, str], list[str]] = {}
    for folder in ("corrdiff", "tests", "experiments", "benchmarks", "tools"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("corrdiff."):
                    for alias in node.names:
                        found.setdefault((node.module, alias.name), []).append(str(path.relative_to(REPO)))
    return found


def test_every_name_the_repository_imports_from_corrdiff_exists():
    """Moving code between modules keeps the import paths that the package, tests, experiments, benchmarks
    and tools use (``from corrdiff.metrics import psnr`` after ``metrics`` became a package)."""
    import importlib.util

    imports = _imports_from_corrdiff()
    assert ("corrdiff.metrics", "MetricSuite") in imports and ("corrdiff.model_io", "load_model") in imports
    broken = []
    for (module, name), where in sorted(imports.items()):
        if importlib.util.find_spec(module) is None:
            broken.append(f"{module} (no such module; {where[0]})")
        elif not hasattr(importlib.import_module(module), name) and importlib.util.find_spec(f"{module}.{name}") is None:
            broken.append(f"{module}.{name} ({', '.join(where)})")
    assert not broken, broken


LEAN_COMPRESSAI = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("ignore")
    import corrdiff
    import corrdiff.compressai_parts  # before torch: compressai imported lean
    deferred = ("zoo", "registry", "latent_codecs", "models", "transforms", "datasets", "losses", "optimizers")
    for name in deferred:  # what tools that walk sys.modules read (pytest's hypothesis plugin): runs nothing
        module = sys.modules["compressai." + name]
        module.__dict__, module.__file__, dir(module)
    assert "torch_geometric" not in sys.modules
    latent_codecs = sys.modules["compressai.latent_codecs"]
    assert not hasattr(latent_codecs, "no_such_name")  # a first use out of the package's order
    from compressai.zoo import bmshj2018_factorized
    from compressai.models import Cheng2020Anchor
    from compressai.registry import register_transform
    print("ok")
    """
)


def test_compressais_deferred_subpackages_run_in_its_own_order():
    """corrdiff imports compressai without its unused subpackages (corrdiff/compressai_parts.py); reading them
    runs nothing, and a first use in any order works (their import cycles resolve only in compressai's order)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([sys.executable, "-c", LEAN_COMPRESSAI], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
