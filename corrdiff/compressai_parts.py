"""The parts of compressai that corrdiff uses, imported without the rest (seconds of start-up).

``import compressai`` runs its package ``__init__``, which imports every subpackage: the point-cloud
datasets and transforms import torch_geometric (which imports torch._dynamo and prints a
``torch.jit.script`` FutureWarning) and scipy.signal. That was most of the 7 s that
``corrdiff compress`` spent before coding (docs/benchmarks.md, start-up). corrdiff needs only the entropy models and
the layers.

So, when compressai is not imported yet, this module imports the package itself, with its unused
subpackages set up as lazy modules (:class:`importlib.util.LazyLoader`) beforehand: each is still
the real module and runs on first use (an attribute access or an ``import`` of it), so code that
uses them later (``from compressai.zoo import ...``) works unchanged. When compressai was imported
before corrdiff, nothing is changed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from types import ModuleType

#: compressai subpackages corrdiff never uses while compressing or decoding
UNUSED_SUBPACKAGES = ("datasets", "latent_codecs", "losses", "models", "optimizers", "registry", "transforms", "zoo")


def _lazy_module(spec: importlib.machinery.ModuleSpec) -> ModuleType:
    """The module of ``spec``, in sys.modules but not executed until first used."""
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def import_compressai_lean() -> None:
    """Import the compressai package with its unused subpackages deferred (see the module doc).

    The package's ``from compressai import datasets, ...`` finds them already set as
    attributes and so does not run them.
    """
    if "compressai" in sys.modules:
        return
    spec = importlib.util.find_spec("compressai")  # finds, does not import
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return  # not installed: the import below says so
    package = importlib.util.module_from_spec(spec)
    for sub in UNUSED_SUBPACKAGES:
        sub_spec = importlib.machinery.PathFinder.find_spec(f"compressai.{sub}", spec.submodule_search_locations)
        if sub_spec is not None and sub_spec.loader is not None:
            setattr(package, sub, _lazy_module(sub_spec))
    sys.modules["compressai"] = package
    try:
        spec.loader.exec_module(package)
    except BaseException:
        for name in [n for n in sys.modules if n == "compressai" or n.startswith("compressai.")]:
            del sys.modules[name]
        raise


import_compressai_lean()

from compressai.entropy_models import EntropyBottleneck, GaussianConditional  # noqa: E402
from compressai.layers import (  # noqa: E402
    GDN,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    subpel_conv3x3,
)

__all__ = ["EntropyBottleneck", "GaussianConditional", "GDN", "ResidualBlock", "ResidualBlockUpsample",
           "ResidualBlockWithStride", "subpel_conv3x3"]
