"""The records a training step passes around: named, weighted loss terms, the shared intermediates, and
the (loss, optimiser) pairs of networks other than the codec (e.g. a discriminator).

A phase's ``compute_terms`` fills one :class:`StepTerms`; subclasses add their own terms to it (and
read the intermediates instead of recomputing them), the base module sums, logs and steps it. A term
is ``value`` times ``weight``: the unweighted value is logged as ``train/<name>``, so runs with other
weights stay comparable, and the weight comes from the module's hyper-parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from corrdiff.modules.rate import RateCondition


@dataclass
class Intermediates:
    """Tensors of one training step that several terms use (all in [-1, 1] image space).

    ``x``: the batch; ``y_hat``: the quantised latent; ``x0_e``: the end-to-end decode (with its graph,
    unclipped; None where the phase had no use for it); ``cond``: the conditioning features; ``t``,
    ``x_t``, ``x0_d``: the diffusion loss's
    timesteps, noisy input and the score network's clean estimate; ``x0_c``: the corrected estimate
    (only when a term needed it); ``rate``: each image's quality (variable-rate models, else None);
    ``extra``: what a phase's ``compute_terms`` hands to its ``extra_losses`` of the same step (e.g. the pair
    a discriminator judges), so that no value is kept on the module between the two hooks.
    """

    x: Tensor
    y_hat: Tensor
    x0_e: Tensor | None
    cond: list[Tensor]
    rate: RateCondition | None = None
    t: Tensor | None = None
    x_t: Tensor | None = None
    x0_d: Tensor | None = None
    x0_c: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepTerms:
    """Named loss terms of one step: ``total() = sum(weight * value)``."""

    values: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: Tensor, weight: float = 1.0) -> None:
        if name in self.values:
            raise ValueError(f"loss term {name!r} is already in this step's terms")
        self.values[name] = value
        self.weights[name] = float(weight)

    def total(self) -> Tensor:
        if not self.values:
            raise ValueError("a training step needs at least one loss term")
        return sum(self.weights[name] * value for name, value in self.values.items())  # type: ignore[return-value]


@dataclass
class OptimiserLoss:
    """One (loss, optimiser) pair of a step: ``optimizer_index`` into ``configure_optimizers``' list
    (0: the codec's); the gradient norm of the optimiser's first parameter group (the codec's main
    weights, not its aux quantiles) is clipped to ``clip`` (None: not clipped)."""

    name: str
    loss: Tensor
    optimizer_index: int
    clip: float | None = None


__all__ = ["Intermediates", "OptimiserLoss", "StepTerms"]
