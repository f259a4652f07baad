"""The encoder's perceptual distances for the gamma solver (eq. (5) with ``rho > 0``, docs/gamma.md): one per
spec and device, each built once (LPIPS loads weights) and then kept.

A plain object on the encoder's side, not an ``nn.Module`` and not part of the training losses: a codec holding
one does not register the networks, so they never enter its state_dict() or the fingerprint that decoders
check. The distances themselves are :func:`corrdiff.losses.perceptual.build_perceptual`'s.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import torch

from corrdiff.losses.perceptual import Distance, build_perceptual


class PerceptualDistances:
    """The distances a codec's encoder uses, keyed by spec (canonical JSON) and device."""

    def __init__(self) -> None:
        self._built: dict[tuple[str, str], Distance] = {}
        self._given: dict[str, Distance] = {}

    def get(self, spec: Mapping[str, Any] | str, device: torch.device | str = "cpu") -> Distance:
        """The distance of ``spec`` on ``device``: the one :meth:`set` gave for the spec, else built by
        :func:`build_perceptual` on that device the first time it is asked for there."""
        key = json.dumps(spec, sort_keys=True)
        if key in self._given:
            return self._given[key]
        place = (key, str(torch.device(device)))
        if place not in self._built:
            self._built[place] = build_perceptual(spec).to(device)
        return self._built[place]

    def set(self, spec: Mapping[str, Any] | str, distance: Distance | None) -> None:
        """Use ``distance`` (any callable ``(x_hat, x) -> per-image distance``) wherever ``spec`` is asked for, on
        every device; None forgets it (the next :meth:`get` builds the spec's own)."""
        key = json.dumps(spec, sort_keys=True)
        if distance is None:
            self._given.pop(key, None)
        else:
            self._given[key] = distance


__all__ = ["PerceptualDistances"]
