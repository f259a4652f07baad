"""The reference image's features computed once, not once per reconstruction it is compared with.

A distance network (LPIPS, DISTS) runs its backbone on both images of every pair. ``corrdiff eval`` scores
many reconstructions of one image, so half of those backbone passes recompute the same original's features.
:func:`reuse_features` puts a :class:`RecentInputs` in front of the backbone: an input equal (value by
value) to one of the last two is answered with the features computed for it, which are exactly what
the backbone would compute again. The scores do not change; the backbone runs N + 1 times for N
reconstructions of one image instead of 2N.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from corrdiff.metrics.dists_network import DISTS


class RecentInputs:
    """``fn(x)``, answered from memory for an ``x`` equal to one of the last ``size`` distinct inputs.

    :meth:`settle` forgets the inputs that were not asked for again once another one was: between
    two scorings only the reference's features stay in memory, not those of the last reconstruction.
    """

    def __init__(self, fn: Callable[[Tensor], Any], size: int = 2):
        self.fn, self.size = fn, size
        self.entries: list[list[Any]] = []  # [input, output, times asked again], least recently used first
        self.calls = 0  # calls of fn (the backbone passes run)

    def __call__(self, x: Tensor) -> Any:
        for i, entry in enumerate(self.entries):
            if _same(entry[0], x):
                entry[2] += 1
                self.entries.append(self.entries.pop(i))
                return entry[1]
        self.calls += 1
        out = self.fn(x)
        self.entries.append([x.detach().clone(), out, 0])  # a copy: the caller may change x in place
        del self.entries[:-self.size]
        return out

    def clear(self) -> None:
        """Forget everything (the reference's features too: they may be large)."""
        self.entries = []

    def settle(self) -> None:
        """Keep only the inputs asked for more than once, if any was (else keep all: it may be the next)."""
        if any(entry[2] for entry in self.entries):
            self.entries = [entry for entry in self.entries if entry[2]]


def _same(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors hold the same values (same shape, dtype and device)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and bool(a.equal(b))


def reuse_features(net: nn.Module) -> RecentInputs | None:
    """Put a :class:`RecentInputs` in front of the backbone of ``net`` and return it: the backbone of
    :class:`corrdiff.losses.perceptual.LPIPS` (its ``lpips`` model's ``net``) or the feature pyramid of
    :class:`corrdiff.metrics.dists_network.DISTS`. None (and ``net`` unchanged) for other networks."""
    if isinstance(net, DISTS):
        owner, name = net, "features"
    elif isinstance(getattr(getattr(net, "model", None), "net", None), nn.Module):
        owner, name = net.model.net, "forward"
    else:
        return None
    memo = RecentInputs(getattr(owner, name))
    object.__setattr__(owner, name, memo)  # an instance attribute, found before the class's method
    return memo
