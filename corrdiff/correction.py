"""The CorrDiff correction: transmitted gammas that pull each sampling step towards x0_e (docs/gamma.md).

At each step the diffusion model's clean-image estimate x0_d is moved towards the
end-to-end decoder's estimate x0_e::

    x0_c = x0_d + Gamma * (x0_e - x0_d)                                   (1)
    gamma = argmin_g  L(x, x0_d + G(g) * (x0_e - x0_d))                   (2)

where Gamma = G(g) is the gamma map: the transmitted gammas g spread over the image by a
:class:`Granularity`. Only the encoder can evaluate (2), since only it sees x. For
L = MSE, (2) is a linear least-squares problem (the projection of the residual onto the
correction direction, per region)::

    gamma = <x - x0_d, x0_e - x0_d> / ||x0_e - x0_d||^2                   (3)

with the sums over the pixels (and channels) a gamma covers (0 where the denominator
vanishes, i.e. x0_e == x0_d), and for the smooth tile map the normal equations
M g = r of the same problem (eq. 4 in :meth:`Granularity.closed_form`).

The paper (Ma, Yang, Liu, ICML 2024) sends one gamma per step for the whole image and
solves (2) by gradient descent, which admits other objectives: here MSE + rho * P with P
LPIPS or the weight-free high-frequency deficit of :mod:`corrdiff.losses.perceptual`.

Granularities (our extension, docs/gamma.md): ``scalar`` (the paper's), ``channel`` (one
gamma per RGB channel), ``tile-N`` (one per N x N cell of a grid, constant per cell) and
``tile-N-linear`` (bilinear between cell centres: no seams). ``auto`` lets the encoder
choose the candidate with the lowest D + lambda R (:class:`GammaSolver`), where R counts the
bits the step's gammas cost in the file, at the last step, where D is the decoded image's
own distortion; the steps before use the first candidate (scalar), so the trajectory is the
scalar one and an ``auto`` file never costs more in D + lambda R than the scalar file.

What is transmitted (docs/bitstream.md): scalar and channel gammas as float16; a tile
map as its float16 median plus each cell's difference from it, quantised with a step of
2^-(q+1) and entropy-coded (signed Exp-Golomb). The encoder quantises *before* using a
gamma, so the decoder, replaying the same seed, steps and gammas, reproduces the
encoder's trajectory exactly.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from corrdiff import bitstream

FLOAT16_MAX = 65504.0
SOLVERS = ("closed_form", "gradient")
INTERPOLATIONS = ("nearest", "linear")
# candidates of ``granularity: auto`` (all with every quantiser of TILE_QUANTS for the tiles)
AUTO_CANDIDATES = ("scalar", "channel", "tile-256", "tile-128", "tile-64")
TILE_QUANTS = (2, 4, 6)  # residual steps 2^-(q+1): 1/8, 1/32, 1/128
# lambda of D + lambda R in the auto choice, in units of L (eq. 2; its MSE is on the [-1, 1] scale, 4x
# the [0, 1] one) per bit per pixel: 4 x 4e-3, the slope of the shipped ladder's rate-distortion curve
# at lambda = 1 ([0, 1] MSE per bpp, docs/gamma.md), so that a gamma bit is worth what a latent bit is
DEFAULT_RATE_WEIGHT = 1.6e-2
MAX_LINEAR_CELLS = 4096  # linear tile maps solve a dense cells x cells system (eq. 4): 4096 cells = 128 MiB of float64
_TILE_SPEC = re.compile(r"tile-(\d+)(-linear)?")


# ============================================================================ where a gamma applies
@dataclass(frozen=True)
class Granularity:
    """How a step's gammas cover the image: one number, one per channel, or a grid of cells.

    Attributes:
        kind: ``scalar``, ``channel`` or ``tile``.
        cell: tile side in pixels (a power of two in [16, 2048]); 0 otherwise.
        interpolation: tile maps only: ``nearest`` (constant per cell) or ``linear``
            (bilinear between cell centres, constant beyond the outer centres).
    """

    kind: str
    cell: int = 0
    interpolation: str = "nearest"

    def __post_init__(self) -> None:
        if self.kind not in bitstream.GAMMA_KINDS:
            raise ValueError(f"gamma granularity kind must be one of {bitstream.GAMMA_KINDS}, got {self.kind!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"tile interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.kind == "tile" and self.cell not in bitstream.TILE_CELLS:
            raise ValueError(f"gamma granularity: tile cell must be one of {bitstream.TILE_CELLS} pixels, got {self.cell}")
        if self.kind != "tile" and (self.cell or self.interpolation != "nearest"):
            raise ValueError(f"only tile granularities have a cell size and an interpolation, not {self.kind!r}")

    @classmethod
    def parse(cls, spec: str) -> Granularity:
        """``scalar``, ``channel``, ``tile-N`` or ``tile-N-linear`` (N in pixels)."""
        if spec in ("scalar", "channel"):
            return cls(spec)
        match = _TILE_SPEC.fullmatch(str(spec))
        if match is None:
            raise ValueError(f"gamma granularity must be scalar, channel, tile-N or tile-N-linear, got {spec!r}")
        return cls("tile", int(match[1]), "linear" if match[2] else "nearest")

    @property
    def spec(self) -> str:
        if self.kind != "tile":
            return self.kind
        return f"tile-{self.cell}" + ("-linear" if self.interpolation == "linear" else "")

    def grid(self, height: int, width: int) -> tuple[int, int, int]:
        """(channels, rows, cols) of the gamma array for an image of this size."""
        if self.kind == "tile":
            return 1, -(-height // self.cell), -(-width // self.cell)
        return (3 if self.kind == "channel" else 1), 1, 1

    def count(self, height: int, width: int) -> int:
        """Gammas per step."""
        channels, rows, cols = self.grid(height, width)
        return channels * rows * cols

    def bases(self, height: int, width: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """Row and column interpolation matrices U (rows, H) and V (cols, W): Gamma = U^T g V."""
        return (_basis(height, self.cell, self.interpolation).to(device),
                _basis(width, self.cell, self.interpolation).to(device))

    def expand(self, gamma: Tensor, height: int, width: int) -> Tensor:
        """The gamma map G(g) of eq. (1): (B, K) gammas -> (B, C or 1, H or 1, W or 1), broadcastable.

        Tiles: interpolated along the rows, then the columns, by gathering each pixel's (one or two)
        cells, with a fixed order of operations: the same values wherever it runs on the same
        device, and memory of the map's size (the dense :meth:`bases` are only for the encoder).
        """
        b = gamma.shape[0]
        if self.kind != "tile":
            return gamma.reshape(b, -1, 1, 1)
        _, rows, cols = self.grid(height, width)
        grid = gamma.reshape(b, rows, cols).float()
        grid = _interpolate(grid, 1, height, self.cell, self.interpolation)
        return _interpolate(grid, 2, width, self.cell, self.interpolation)[:, None]

    def adjoint(self, field_: Tensor) -> Tensor:
        """G^T: sums of a (B, C, H, W) field over what each gamma covers -> (B, K)."""
        b = field_.shape[0]
        if self.kind == "scalar":
            return field_.sum((1, 2, 3)).reshape(b, 1)
        if self.kind == "channel":
            return field_.sum((2, 3))
        u, v = self.bases(*field_.shape[-2:], device=field_.device)
        return torch.einsum("nchw,ah,bw->nab", field_, u.to(field_.dtype), v.to(field_.dtype)).reshape(b, -1)

    def closed_form(self, x: Tensor, x0_d: Tensor, x0_e: Tensor) -> Tensor:
        """MSE-optimal gammas, (B, K) float32: eq. (3) per region, or for ``linear`` tiles

            M g = r,  M_kl = sum_p u_k(p) u_l(p) |d(p)|^2,  r_k = sum_p u_k(p) <d(p), x(p) - x0_d(p)>   (4)

        with d = x0_e - x0_d and u_k the bilinear basis functions (M is sparse, each cell meeting
        its 8 neighbours, but solved as a dense system: at most :data:`MAX_LINEAR_CELLS` cells;
        a tiny ridge makes cells without any correction direction 0).
        """
        x, x0_d, x0_e = x.float(), x0_d.float(), x0_e.float()
        direction = x0_e - x0_d
        num = self.adjoint((x - x0_d) * direction)
        if not (self.kind == "tile" and self.interpolation == "linear"):
            den = self.adjoint(direction * direction)
            return torch.where(den > 1e-12, num / den.clamp_min(1e-12), torch.zeros_like(num))
        u, v = (m.double() for m in self.bases(*x.shape[-2:], device=x.device))
        if u.shape[0] * v.shape[0] > MAX_LINEAR_CELLS:
            raise ValueError(f"{self.spec} has {u.shape[0] * v.shape[0]} cells on a {x.shape[-2]}x{x.shape[-1]} image; "
                             f"linear maps allow {MAX_LINEAR_CELLS}: use larger cells or the nearest map")
        weight = direction.double().pow(2).sum(1)  # (B, H, W)
        half = torch.einsum("ach,nhw->nacw", torch.einsum("ah,ch->ach", u, u), weight)  # one product over h
        gram = torch.einsum("nacw,bdw->nabcd", half, torch.einsum("bw,dw->bdw", v, v))  # one product over w
        k = u.shape[0] * v.shape[0]
        gram = gram.reshape(-1, k, k)
        ridge = 1e-9 * gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
        gram = gram + ridge[:, None, None] * torch.eye(k, dtype=gram.dtype, device=gram.device)
        return torch.linalg.solve(gram, num.double()).float()


def _neighbours(length: int, cell: int, interpolation: str) -> tuple[Tensor, Tensor, Tensor]:
    """For each of ``length`` pixels: the cell to its left, the cell to its right and the weight of the
    right one (float32; 0 for nearest). Cell a's centre is at pixel (a + 1/2) cell - 1/2; beyond the
    outer centres the map is constant."""
    n = -(-length // cell)
    pixel = torch.arange(length)
    if interpolation == "nearest" or n == 1:
        left = pixel // cell
        return left, left, torch.zeros(length)
    position = ((pixel.double() + 0.5) / cell - 0.5).clamp(0, n - 1)
    left = position.floor().clamp(max=n - 2).long()
    return left, left + 1, (position - left).float()


def _interpolate(grid: Tensor, dim: int, length: int, cell: int, interpolation: str) -> Tensor:
    """Cell values along ``dim`` of ``grid`` -> ``length`` pixel values (eq. 1's map, one axis)."""
    left, right, frac = (t.to(grid.device) for t in _neighbours(length, cell, interpolation))
    near = grid.index_select(dim, left)
    if interpolation == "nearest":
        return near
    shape = [1] * grid.dim()
    shape[dim] = length
    frac = frac.reshape(shape)
    return near * (1 - frac) + grid.index_select(dim, right) * frac


@functools.lru_cache(maxsize=8)
def _basis(length: int, cell: int, interpolation: str) -> Tensor:
    """(cells, length) matrix of the same 1-D interpolation (float32, CPU): the encoder's closed form
    and adjoint use it; the map itself is built by :func:`_interpolate`."""
    left, right, frac = _neighbours(length, cell, interpolation)
    basis = torch.zeros(-(-length // cell), length)
    pixel = torch.arange(length)
    basis.index_put_((left, pixel), 1 - frac, accumulate=True)
    basis.index_put_((right, pixel), frac, accumulate=True)
    return basis


def _as_granularity(granularity: int | str | Granularity) -> Granularity:
    if isinstance(granularity, Granularity):
        return granularity
    if isinstance(granularity, int):  # the number of groups of the first format: 1 or 3
        return Granularity("scalar" if granularity == 1 else "channel")
    return Granularity.parse(granularity)


SCALAR = Granularity("scalar")


# ============================================================================ eq. (1)-(3)
def apply_correction(x0_d: Tensor, x0_e: Tensor, gamma: Tensor) -> Tensor:
    """Eq. (1). ``gamma``: a gamma map (4-D, broadcastable) or (B, G) scalar/channel gammas."""
    if gamma.dim() == 2:
        gamma = gamma[:, :, None, None]
    return x0_d + gamma * (x0_e - x0_d)


def closed_form_gamma(x: Tensor, x0_d: Tensor, x0_e: Tensor, granularity: int | str | Granularity = 1) -> Tensor:
    """Eq. (3) for a granularity (or 1 / 3 groups: scalar / channel); shape (B, K), float32."""
    return _as_granularity(granularity).closed_form(x, x0_d, x0_e)


def gradient_gamma(
    x: Tensor,
    x0_d: Tensor,
    x0_e: Tensor,
    granularity: int | str | Granularity = 1,
    rho: float = 0.0,
    perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
    iterations: int = 20,
) -> Tensor:
    """Eq. (2) by L-BFGS from gamma = 0 with objective MSE(x, x0_c) + rho * P(x0_c, x); (B, K)."""
    if rho > 0 and perceptual is None:
        raise ValueError("rho > 0 needs a perceptual distance")
    gran = _as_granularity(granularity)
    x, x0_d, x0_e = x.detach().float(), x0_d.detach().float(), x0_e.detach().float()
    h, w = x.shape[-2:]
    gamma = torch.zeros(x.shape[0], gran.count(h, w), dtype=torch.float32, device=x.device, requires_grad=True)
    with warnings.catch_warnings():  # its first use imports torch._dynamo, which warns of torch.jit.script's end
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        optimiser = torch.optim.LBFGS([gamma], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        optimiser.zero_grad()
        x0_c = apply_correction(x0_d, x0_e, gran.expand(gamma, h, w))
        # sum over images: each image's gamma only affects its own term
        loss = correction_objective(x0_c, x, rho, perceptual).sum()
        loss.backward()
        return loss

    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        optimiser.step(objective)
    return gamma.detach()


def correction_objective(
    x0_c: Tensor, x: Tensor, rho: float = 0.0, perceptual: Callable[[Tensor, Tensor], Tensor] | None = None
) -> Tensor:
    """L of eq. (2) per image, (B,): MSE + rho * P(x0_c, x), both on images in [-1, 1] (the paper's scale)."""
    loss = (x0_c - x).pow(2).mean(dim=(1, 2, 3))
    if rho > 0:
        loss = loss + rho * perceptual(x0_c, x)
    return loss


# ============================================================================ transmission
def check_gamma_scale(gamma_scale: float) -> None:
    """ValueError unless 0 <= gamma_scale <= 1 (NaN included): the decode-time scale of the gammas."""
    if not 0.0 <= gamma_scale <= 1.0:
        raise ValueError(f"gamma scale must lie in [0, 1] (1 = as encoded, 0 = diffusion only), got {gamma_scale}")


def quantize_gamma(gamma: Tensor) -> Tensor:
    """A float16 gamma as transmitted: clamped to its finite range, NaN -> 0; float32 holding float16 values."""
    gamma = torch.nan_to_num(gamma.float(), nan=0.0, posinf=FLOAT16_MAX, neginf=-FLOAT16_MAX)
    return gamma.clamp(-FLOAT16_MAX, FLOAT16_MAX).half().float()


def code_step(granularity: Granularity, gamma: Tensor, quant: int = 0) -> bitstream.GammaStep:
    """One step's gammas (K,) as the file carries them (scalar and channel: float16; tiles: a float16
    base, the cells' median, and their differences from it quantised with step 2^-(quant+1), within
    +-bitstream.MAX_RESIDUAL)."""
    gamma = gamma.detach().float().cpu().reshape(-1)
    if granularity.kind != "tile":
        return bitstream.GammaStep(granularity.kind, values=tuple(quantize_gamma(gamma).tolist()))
    base = quantize_gamma(torch.nan_to_num(gamma).median())  # not the mean: one extreme cell must not move it
    limit = bitstream.MAX_RESIDUAL
    residuals = ((torch.nan_to_num(gamma) - base) * 2.0 ** (quant + 1)).round().clamp(-limit, limit)
    return bitstream.GammaStep(
        "tile", cell=granularity.cell, linear=granularity.interpolation == "linear", quant=quant,
        values=(float(base),), residuals=tuple(int(r) for r in residuals.tolist()),
    )


def step_granularity(step: bitstream.GammaStep) -> Granularity:
    if step.kind != "tile":
        return Granularity(step.kind)
    return Granularity("tile", step.cell, "linear" if step.linear else "nearest")


def step_gammas(step: bitstream.GammaStep) -> Tensor:
    """The gammas (1, K) a coded step stands for: exactly what the encoder used (float32)."""
    if step.kind != "tile":
        return torch.tensor(step.values, dtype=torch.float32)[None]
    residuals = torch.tensor(step.residuals, dtype=torch.float32) * 2.0 ** -(step.quant + 1)  # exact: power of 2
    return (torch.tensor(step.values[0], dtype=torch.float32) + residuals)[None]


def gamma_map(step: bitstream.GammaStep, height: int, width: int, scale: float = 1.0) -> Tensor:
    """The (1, C or 1, H or 1, W or 1) gamma map of one coded step (times ``scale``, the decode-time knob)."""
    gamma = step_gammas(step)
    if scale != 1.0:
        gamma = gamma * scale
    return step_granularity(step).expand(gamma, height, width)


# ============================================================================ the encoder's choice
@dataclass
class CorrectionConfig:
    """How the encoder chooses the gammas.

    Attributes:
        solver: ``closed_form`` (eq. 3/4, MSE objective) or ``gradient`` (L-BFGS on eq. 2).
        granularity: ``scalar`` (paper), ``channel``, ``tile-N``, ``tile-N-linear``, or ``auto``:
            the per-step rate-distortion choice among :attr:`candidates`.
        rho: weight of the term P in the gradient solver's objective, MSE + rho * P.
        perceptual: spec of P (see :mod:`corrdiff.losses.perceptual`): ``lpips`` (needs weights)
            or ``hf`` (weight-free: the high-frequency energy missing against the original).
        iterations: L-BFGS iterations of the gradient solver.
        rate_weight: lambda of the auto choice's D + lambda R (D = L of eq. 2 on the [-1, 1] scale, R
            in bits per pixel); encode-time only.
        candidates: granularities ``auto`` chooses from; encode-time only.

    The model file stores the fields that are not encode-time only (:meth:`stored`), as the
    encoder's defaults; ``codec.encode(gamma={...})`` and ``corrdiff compress --gamma`` override them.
    """

    solver: str = "closed_form"
    granularity: str = "scalar"
    rho: float = 0.0
    perceptual: dict[str, Any] = field(default_factory=lambda: {"name": "lpips", "net": "alex"})
    iterations: int = 20
    rate_weight: float = field(default=DEFAULT_RATE_WEIGHT, metadata={"encode_time": True})
    candidates: tuple[str, ...] = field(default=AUTO_CANDIDATES, metadata={"encode_time": True})

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"gamma solver must be one of {SOLVERS}, got {self.solver!r}")
        self.candidates = tuple(self.candidates)
        for spec in self.candidates if self.granularity == "auto" else (self.granularity,):
            Granularity.parse(spec)
        if self.granularity == "auto" and (not self.candidates or self.candidates[0] != "scalar"):
            raise ValueError(f"granularity: auto needs 'scalar' as its first candidate (the steps before the last "
                             f"use it), got {list(self.candidates)}")
        if not (self.rho >= 0 and math.isfinite(self.rho)):
            raise ValueError(f"rho must be a finite number >= 0, got {self.rho}")
        if self.rho > 0 and self.solver != "gradient":
            raise ValueError("a perceptual term (rho > 0) needs solver: gradient; the closed form is MSE-only")
        if not (isinstance(self.iterations, int) and self.iterations >= 1):
            raise ValueError(f"iterations must be an integer >= 1, got {self.iterations!r}")
        if not (self.rate_weight >= 0 and math.isfinite(self.rate_weight)):
            raise ValueError(f"rate_weight must be a finite number >= 0, got {self.rate_weight}")

    def stored(self) -> dict[str, Any]:
        """The fields a model file keeps (its encoder defaults; part of the model's fingerprint)."""
        keep = {f.name for f in fields(self) if not f.metadata.get("encode_time")}
        return {k: v for k, v in asdict(self).items() if k in keep}

    def replace(self, overrides: dict[str, Any] | None) -> CorrectionConfig:
        """A copy with some fields overridden (unknown names: ValueError)."""
        unknown = set(overrides or {}) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown gamma option(s) {sorted(unknown)}; known: {[f.name for f in fields(self)]}")
        return CorrectionConfig(**{**asdict(self), **(overrides or {})})

    @property
    def granularities(self) -> tuple[Granularity, ...]:
        """What the encoder tries at each step: one granularity, or the candidates of ``auto``."""
        specs = self.candidates if self.granularity == "auto" else (self.granularity,)
        return tuple(Granularity.parse(s) for s in specs)


@dataclass
class StepChoice:
    """One step's chosen gammas: as coded in the file, as a map, and the cost that won."""

    coded: bitstream.GammaStep
    map: Tensor
    cost: float


class GammaSolver:
    """Chooses one step's gammas from (x, x0_d, x0_e) according to a :class:`CorrectionConfig`.

    Every candidate granularity (and, for tiles, every quantiser of :data:`TILE_QUANTS`) is
    solved on the same x0_d and x0_e, coded as the file would carry it, and scored as

        cost = L(x, clip(x0_c)) + rate_weight * bits / pixels                (5)

    with L the objective of eq. (2); the lowest cost wins. The candidates share the step's
    network evaluation, so the choice costs a few image-sized operations per candidate, not
    sampling runs. ``auto`` chooses at the last step only (``final``): a choice at an earlier
    step changes the trajectory, and a lower cost there does not imply a lower one for the
    decoded image (measured: it can be higher), while at the last step x0_c *is* the decoded
    image, so the scalar candidate bounds the result. A single granularity is used at every step.
    """

    def __init__(self, config: CorrectionConfig, perceptual: Callable[[Tensor, Tensor], Tensor] | None = None):
        self.config = config
        self.perceptual = perceptual

    def solve(self, granularity: Granularity, x: Tensor, x0_d: Tensor, x0_e: Tensor) -> Tensor:
        """Unquantised optimal gammas (B, K) of eq. (2) for one granularity."""
        cfg = self.config
        if cfg.solver == "closed_form":
            return granularity.closed_form(x, x0_d, x0_e)
        return gradient_gamma(x, x0_d, x0_e, granularity, cfg.rho, self.perceptual, cfg.iterations)

    def __call__(self, x: Tensor, x0_d: Tensor, x0_e: Tensor) -> Tensor:
        """(B, K) float16-representable gammas of the configured scalar or channel granularity (a batch;
        tile maps and ``auto`` are coded per image by :meth:`choose`)."""
        granularity = self.config.granularities[0]
        if self.config.granularity == "auto" or granularity.kind == "tile":
            raise ValueError("GammaSolver(...)(x, x0_d, x0_e) is for scalar and channel gammas; use choose() for "
                             f"{self.config.granularity!r}")
        return quantize_gamma(self.solve(granularity, x, x0_d, x0_e))

    def choose(self, x: Tensor, x0_d: Tensor, x0_e: Tensor, final: bool = True) -> StepChoice:
        """The best coded candidate of eq. (5) for one image (batch of 1); before the ``final`` step
        ``auto`` keeps its first candidate."""
        h, w = x.shape[-2:]
        candidates = self.config.granularities if final else self.config.granularities[:1]
        best: StepChoice | None = None
        for granularity in candidates:
            raw = self.solve(granularity, x, x0_d, x0_e)[0]
            quants = TILE_QUANTS if granularity.kind == "tile" else (0,)
            for quant in quants:
                coded = code_step(granularity, raw, quant)
                # the map exactly as the decoder builds it (on the CPU, then moved), so that the one that
                # wins is the one both sides apply
                gmap = gamma_map(coded, h, w).to(device=x0_d.device, dtype=x0_d.dtype)
                if len(candidates) == 1 and len(quants) == 1:
                    return StepChoice(coded, gmap, math.nan)
                x0_c = apply_correction(x0_d, x0_e, gmap).clamp(-1, 1)
                loss = float(correction_objective(x0_c.float(), x.float(), self.config.rho, self.perceptual)[0])
                cost = loss + self.config.rate_weight * bitstream.step_bits(coded) / (h * w)
                if best is None or cost < best.cost:
                    best = StepChoice(coded, gmap, cost)
        assert best is not None
        return best


__all__ = [
    "AUTO_CANDIDATES", "CorrectionConfig", "GammaSolver", "Granularity", "StepChoice", "apply_correction",
    "closed_form_gamma", "code_step", "correction_objective", "gamma_map", "gradient_gamma", "quantize_gamma",
    "step_gammas",
]
