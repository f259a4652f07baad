"""The parts of compressai that corrdiff uses, imported without the rest (seconds of start-up).

``import compressai`` runs its package ``__init__``, which imports every subpackage: the point-cloud
datasets and transforms import torch_geometric (which imports torch._dynamo and prints a
``torch.jit.script`` FutureWarning) and scipy.signal. That was most of the 7 s that
``corrdiff compress`` spent before coding (docs/benchmarks.md, start-up). corrdiff needs only the entropy models and
the layers.

So, when compressai is not imported yet, this module imports the package itself with its unused
subpackages deferred: each is the real module object, in ``sys.modules`` and set on the package, whose code
runs on its first attribute use (``from compressai.zoo import ...`` works unchanged). compressai's subpackages
import each other in cycles that resolve only in the order its ``__init__`` imports them, so the first use of
one runs every deferred subpackage before it in that order, then it (a use during one's run runs the next ones
on demand, as Python's own imports would). Reading a module's metadata (``__file__``, ``__dict__``, ``dir()``:
what tools that walk ``sys.modules`` do) runs nothing. When compressai was imported before corrdiff, nothing is
changed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from types import ModuleType

#: compressai subpackages corrdiff never uses while compressing or decoding, in the order compressai's
#: ``__init__`` imports them
UNUSED_SUBPACKAGES = ("datasets", "latent_codecs", "losses", "models", "optimizers", "registry", "transforms", "zoo")

_deferred: list[ModuleType] = []  # in UNUSED_SUBPACKAGES order
_running: list[ModuleType] = []  # the deferred subpackages whose code is running now, outermost first


class _DeferredModule(ModuleType):
    """A subpackage whose code has not run yet: the first attribute it lacks runs it (see the module doc)."""

    def __getattr__(self, name: str):
        _run_deferred(self)
        return getattr(self, name)  # now a plain module: a missing name raises AttributeError as usual


def _run_deferred(upto: ModuleType) -> None:
    """Run ``upto``; on a first use (not one during another's run), every deferred subpackage before it too, in
    the package's order."""
    first = not _running
    for module in list(_deferred) if first else [upto]:
        if type(module) is _DeferredModule:
            module.__class__ = ModuleType  # before running: a use during its run sees a partial module, as usual
            _running.append(module)
            try:
                module.__spec__.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(module.__name__, None)
                raise
            finally:
                _running.pop()
        if module is upto:
            return


def _deferred_module(spec: importlib.machinery.ModuleSpec) -> ModuleType:
    """The module of ``spec``, in sys.modules, its code not run until first used."""
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _DeferredModule
    sys.modules[spec.name] = module
    _deferred.append(module)
    return module


def import_compressai_lean() -> None:
    """Import the compressai package with its unused subpackages deferred (see the module doc).

    The package's ``from compressai import datasets, ...`` finds them already set as
    attributes and so does not run them.
    """
    if "compressai" in sys.modules:
        return
    import torch  # noqa: F401 - first: torch's own import walks sys.modules, which must not find compressai half made

    spec = importlib.util.find_spec("compressai")  # finds, does not import
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return  # not installed: the import below says so
    package = importlib.util.module_from_spec(spec)
    for sub in UNUSED_SUBPACKAGES:
        sub_spec = importlib.machinery.PathFinder.find_spec(f"compressai.{sub}", spec.submodule_search_locations)
        if sub_spec is not None and sub_spec.loader is not None:
            setattr(package, sub, _deferred_module(sub_spec))
    sys.modules["compressai"] = package
    try:
        spec.loader.exec_module(package)
    except BaseException:
        for name in [n for n in sys.modules if n == "compressai" or n.startswith("compressai.")]:
            del sys.modules[name]
        _deferred.clear()
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
