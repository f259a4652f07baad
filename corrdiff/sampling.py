"""The sampling pipeline that encoder and decoder share (Ma, Yang, Liu, ICML 2024, Algorithm 1)::

    y_hat --D--> x0_e            end-to-end (privileged) decoder, clipped
    y_hat --C--> c               conditioning pyramid, computed once per image
    x_T ~ N(0, I) from the seed
    for t in the sampler's N timesteps:
        x0_d  = score_net(x_t, t, c[, x0_e])  (as an x0 estimate, clipped to [-1, 1])
        gamma = choose_gamma(i, x0_d, x0_e)   encoder: argmin over coded gammas; decoder: read from the file
        x0_c  = clip(x0_d + G(gamma) (x0_e - x0_d))        eq. (1); G: the step's gamma map
        x_t   = sampler.step(x0_c, t, x_t)
    output x0_c of the last step

Both sides call :func:`sample` with the same arguments, so their trajectories agree to the bit: the latent,
the gamma chooser, and the replay record of what the file fixes (:class:`corrdiff.replay.Replay`: mode, size,
sampler with its recorded parameters, steps, seed, rate), which each side builds once.

Memory. With P pixels (padded), the peak is that of one sampling step::

    peak ~ fixed + max(S * P,  K * P + tile cost)

* S: one score-network call plus what the loop keeps (x_t, x0_e, the conditioning projected
  to the U-Net's levels; the encoder also holds the image and x). For the ``small`` preset
  (the packaged model) S = 328 bytes of live tensors per pixel decoding, 352 encoding;
  the process RSS adds allocator slack (measured 335-350 B/px in all at 3840x2160).
* K * P + tile cost: before the loop, the encoder, the end-to-end decoder and the
  conditioning network run on tiles (of ``model.tile_size`` and :data:`TILE_PIXELS`; they have
  no global operation, see :mod:`corrdiff.modules.tiling`), so their activations cost a constant
  (~0.3 GiB at 1024-pixel tiles) over what is kept (K = 57 B/px).
* fixed: libraries and weights, 0.5-0.6 GiB RSS after loading (``corrdiff bench``'s "RSS
  loaded"), up to ~0.9 GiB with the allocator's slack: take 0.9 GiB as the bound.

So 3840x2160 (8.3 Mpx) is bounded by ~3.6 GiB and measured 3.4 GiB peak RSS (``corrdiff bench``,
docs/benchmarks.md; 8.4 GiB before tiling and the rest). The U-Net's GroupNorm makes its own
activations global, so they are not tiled.

How an image is computed, tiles and memory layout, is part of the decoding procedure, not a setting:
a convolution sums in another order on tiles of another shape and on another memory layout (PyTorch
convolves inputs of up to 20480 values with its native kernel and larger ones with oneDNN, which picks
its kernels by shape and layout), so a decoder that tiled or laid out differently from the encoder
would miss its reconstruction by float rounding (~1e-7 after 4 steps, growing with steps); the
halo is not the cause (each module's receptive radius is checked by tests/test_memory.py). Both are therefore fixed
functions of the image size, identical on every decoder (docs/bitstream.md, section 4):

* :data:`TILE_PIXELS` (1024): the end-to-end decoder and the conditioning network run on tiles of
  at most this many image pixels a side (plus a halo of their receptive radius) on a fixed grid
  (:func:`corrdiff.modules.tiling.split`) when the image is larger, so their memory is bounded by
  the tile, not the image; images that fit in one tile are computed whole. The encoder E runs on
  tiles of ``model.tile_size`` (a memory setting of the encoder alone: it may change y by float
  rounding, hence the file, but both sides sample from the y_hat that the file codes).
* :data:`CHANNELS_LAST_PIXELS` (2^20): images of at least this many (padded) pixels are
  reconstructed (end-to-end decoder, conditioning, score network) on channels-last tensors on a CPU:
  oneDNN then convolves them as they are instead of copying every input into its blocked layout,
  which cuts the peak of a sampling step by ~25% and the decode time by ~1/3 (measured at
  1920x1080). Smaller images keep the default format.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrdiff import bitstream
from corrdiff.correction import GammaSolver, gamma_map
from corrdiff.image_io import to_image_range
from corrdiff.model import CorrDiffModel
from corrdiff.modules.rate import RateCondition
from corrdiff.modules.samplers import seeded_noise
from corrdiff.modules.tiling import map_tiles
from corrdiff.modules.transforms import STRIDE
from corrdiff import reverse
from corrdiff.replay import (FileSampler, Replay, parse_sampler_spec, recorded_params,  # noqa: F401 (re-exported)
                             sampler_for_encoding, sampler_from_file)

GammaChooser = Callable[[int, Tensor, Tensor], Tensor]  # (step i, x0_d, x0_e) of the unpadded image -> gamma map


# ----------------------------------------------------------------------------- what runs before the loop
TILE_PIXELS = 1024  # side of the tiles of the end-to-end decoder and the conditioning network (fixed: see above)
CHANNELS_LAST_PIXELS = 1 << 20  # from this many padded pixels on, reconstruct channels-last on a CPU (fixed)


def tiled(model: CorrDiffModel, module: nn.Module, fn: Callable[[Tensor], Any], x: Tensor, cell: int,
          tile_pixels: int | None) -> Any:
    """``fn(x)`` for a convolutional ``module`` (``fn`` built on it), on tiles of ``tile_pixels`` a side.

    Tiles are squares of ``tile_pixels / 16`` latent cells with a halo of the module's
    ``receptive_radius`` (a module that declares none is never tiled; ``tile_pixels=None``: never
    tile); ``cell`` is the input's pixels per cell (16 for an image, 1 for a latent). The tile grid
    depends only on the input size, the model and ``tile_pixels`` (:data:`TILE_PIXELS` for what a
    decoder computes, so the same on every decoder).
    """
    radius = getattr(module, "receptive_radius", None)
    if tile_pixels is None or radius is None:
        return fn(x)
    align = model.multiple // STRIDE
    return map_tiles(fn, x, cell, max(align, tile_pixels // STRIDE), radius, align)


def decode_x0_e(model: CorrDiffModel, y_hat: Tensor) -> Tensor:
    """x0_e = clip(D(y_hat)) for sampling, in tiles (clipped in place, one copy less, without autograd)."""
    x0_e = tiled(model, model.decoder, model.decode_e2e, y_hat, 1, TILE_PIXELS)
    return x0_e.clamp(-1, 1) if torch.is_grad_enabled() else x0_e.clamp_(-1, 1)


def sampling_condition(model: CorrDiffModel, y_hat: Tensor,
                       rate: RateCondition | None = None) -> tuple[list[Tensor], bool]:
    """The conditioning for every sampling step, computed once: (features, projected).

    With a score network that has ``project_condition`` (the U-Net), the features are its
    per-level projections at the network's own resolution, which are what each step adds
    to its activations: the same values as projecting at every step, computed once, and
    ``patch_size^2`` times smaller than the full-resolution pyramid (for the ``small``
    preset 45 instead of 214 bytes per pixel). The conditioner and the projection are
    convolutional and pixel-local, so they run together on tiles: the full-resolution
    pyramid never exists for the whole image.
    """
    def condition(z: Tensor) -> list[Tensor]:
        return model.condition(z, rate)

    project = getattr(model.score_net, "project_condition", None)
    if project is None:
        return tiled(model, model.conditioner, condition, y_hat, 1, TILE_PIXELS), False
    return tiled(model, model.conditioner, lambda z: project(condition(z)), y_hat, 1, TILE_PIXELS), True


def uses_channels_last(model: CorrDiffModel, y_hat: Tensor) -> bool:
    """Whether this image is reconstructed in channels-last format (:data:`CHANNELS_LAST_PIXELS`)."""
    return y_hat.device.type == "cpu" and model.padded_pixels(y_hat) >= CHANNELS_LAST_PIXELS


# ----------------------------------------------------------------------------- the loop
def sample(
    model: CorrDiffModel,
    y_hat: Tensor,
    replay: Replay,
    choose_gamma: GammaChooser,
    on_step: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Run the (corrected) reverse process; returns the padded reconstruction in [-1, 1].

    ``y_hat``: the latent as D and C see it; ``replay``: what the file fixes (the mode, the image size, the
    sampler and its steps, the seed, the rate).
    ``choose_gamma(i, x0_d, x0_e)`` gives step i's gamma map for the unpadded image, shape
    (1, C or 1, H or 1, W or 1) (a spatial map is extended over the padding by edge
    replication). ``on_step(done, steps)``, if given, is called after each step (a progress bar).

    Memory: x0_e and the conditioning are computed once, in tiles on large images; across the
    steps only x_t, x0_e and the projected conditioning are kept (each step's estimates are freed
    as soon as they are used), so the peak is that of one score-network call plus these. Values are
    those of the straightforward loop: the in-place clips compute the same numbers without a copy.
    """
    # One memory format for everything below, chosen from the size: a convolution rounds differently
    # on channels-last input, and the encoder's y_hat inherits the image's format (channels-last
    # for an image made from an (H, W, 3) array) while the decoder's comes contiguous.
    fmt = torch.channels_last if uses_channels_last(model, y_hat) else torch.contiguous_format
    y_hat = y_hat.contiguous(memory_format=fmt)
    x0_e = decode_x0_e(model, y_hat)
    if not replay.mode.samples:
        return x0_e
    cond, projected = sampling_condition(model, y_hat, replay.rate)
    cond = [c.contiguous(memory_format=fmt) for c in cond]
    generator = torch.Generator().manual_seed(replay.seed)
    x_t = seeded_noise(tuple(x0_e.shape), generator, x0_e).contiguous(memory_format=fmt)
    h, w = replay.hw
    sampler, steps = replay.sampler.sampler, replay.steps
    x0_c: Tensor | None = None
    for i, t in enumerate(sampler.set_timesteps(steps)):
        x0_c = None  # the previous step's estimate is in x_t now: free it while the network runs

        def gamma_of(x0_d: Tensor, i: int = i) -> Tensor:
            return _pad_map(choose_gamma(i, x0_d[..., :h, :w], x0_e[..., :h, :w]).to(x0_d), x0_d.shape[-2:])

        x0_c, x_t = reverse.corrected_step(model, sampler, x_t, t, cond, x0_e, gamma_of, generator, projected)
        if on_step is not None:
            on_step(i + 1, steps)
    assert x0_c is not None  # steps >= 1 outside e2e mode
    return x0_c


# ----------------------------------------------------------------------------- where each step's gamma comes from
def no_correction(i: int, x0_d: Tensor, x0_e: Tensor) -> Tensor:
    """The :data:`GammaChooser` of the uncorrected modes: gamma = 0 (plain diffusion)."""
    return torch.zeros(1, 1, 1, 1)


class EncoderGammas:
    """The encoder's :data:`GammaChooser`: each step's coded (quantised) choice of eq. (5), used as coded and
    kept in ``coded`` for the file; ``auto`` chooses its granularity at the last step only."""

    def __init__(self, solver: GammaSolver, x: Tensor, steps: int):
        self.solver, self.x, self.steps = solver, x, steps
        self.coded: list[bitstream.GammaStep] = []

    def __call__(self, i: int, x0_d: Tensor, x0_e: Tensor) -> Tensor:
        choice = self.solver.choose(self.x, x0_d, x0_e, final=i == self.steps - 1)
        self.coded.append(choice.coded)
        return choice.map


def file_gammas(bs: bitstream.Bitstream, scale: float = 1.0) -> GammaChooser:
    """The decoder's :data:`GammaChooser`: step i's map as the file codes it, times the decode-time ``scale``."""

    def choose(i: int, x0_d: Tensor, x0_e: Tensor) -> Tensor:
        return gamma_map(bs.gamma_steps[i], bs.height, bs.width, scale).to(x0_d.device)

    return choose


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; the module's own mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def to_image(x: Tensor, hw: tuple[int, int], gray: bool = False) -> Tensor:
    """The padded [-1, 1] reconstruction -> the (1, 3, H, W) image in [0, 1] on the CPU; a gray image gets
    R = G = B = the mean of the three."""
    image = to_image_range(x[..., : hw[0], : hw[1]].float()).clamp(0, 1).cpu()
    if gray:
        image = image.mean(1, keepdim=True).expand_as(image)
    return image.contiguous()


def _pad_map(gamma: Tensor, size: torch.Size) -> Tensor:
    """A gamma map of the unpadded image extended to the padded ``size`` (edge replication)."""
    h, w = gamma.shape[-2:]
    if (h, w) == (1, 1) or (h, w) == tuple(size):
        return gamma
    return F.pad(gamma, (0, size[-1] - w, 0, size[-2] - h), mode="replicate")


# ----------------------------------------------------------------------------- the decode as exportable pieces
class DecodePrelude(nn.Module):
    """What a decoder computes once, before its steps, as a module of its own (``torch.export`` takes it):
    y_hat -> (x0_e, *conditioning), the conditioning as :func:`sampling_condition` gives it (projected when the
    score network projects). The entropy decoding before it is bytes and stays in Python
    (:func:`corrdiff.decoding.read`)."""

    def __init__(self, model: CorrDiffModel, rate: RateCondition | None = None):
        super().__init__()
        self.model, self.rate = model, rate

    def forward(self, y_hat: Tensor) -> tuple[Tensor, ...]:
        cond, _ = sampling_condition(self.model, y_hat, self.rate)
        return (decode_x0_e(self.model, y_hat), *cond)


class ReverseStepModule(nn.Module):
    """One corrected reverse step at a fixed timestep ``t`` of ``sampler`` (:func:`corrdiff.reverse.corrected_step`)
    as a module (``torch.export`` takes it; one graph per timestep): (x_t, x0_e, gamma map, *conditioning) ->
    (x0_c, x_prev). Deterministic samplers only (eta = 0: no noise is drawn inside the step)."""

    def __init__(self, model: CorrDiffModel, sampler: Any, t: int, projected: bool = True):
        super().__init__()
        if getattr(sampler, "eta", 0.0) != 0.0:
            raise ValueError("an exported step draws no noise: use a deterministic sampler (eta = 0)")
        # the step's two alpha_bar values as Python constants (a traced graph cannot read them from the schedule)
        fixed = copy.copy(sampler)
        fixed.alpha_bar = {k: sampler.alpha_bar(k) for k in (int(t), sampler.previous(int(t)))}.__getitem__
        self.model, self.sampler, self.t, self.projected = model, fixed, int(t), projected

    def forward(self, x_t: Tensor, x0_e: Tensor, gamma: Tensor, *cond: Tensor) -> tuple[Tensor, Tensor]:
        return reverse.corrected_step(self.model, self.sampler, x_t, self.t, list(cond), x0_e, lambda x0_d: gamma,
                                      None, self.projected)
