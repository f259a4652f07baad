"""Bounded memory for the convolutional parts: run a local map on overlapping tiles and stitch.

The encoder E, the end-to-end decoder D and the conditioning network C are stacks of
convolutions and per-pixel operations (GDN is a 1x1 convolution over channels): no
global statistic, so each output depends only on the inputs within a fixed *receptive
radius* around it. Measured in latent cells (one cell = one latent pixel = 16 x 16 image
pixels), the radius is small (2 cells for the ``gdn`` transforms and the pyramid
conditioner; each module declares its own as ``receptive_radius``). Running such a map on
a tile extended by a halo of at least that radius on every side gives, inside the tile,
the outputs of the whole-image computation: same inputs, same weights, same arithmetic.
Only the summation order inside a convolution may differ with the tile's shape (PyTorch chooses
between its native kernel and oneDNN by input size, and oneDNN its kernels by shape), so tiled
outputs equal untiled ones to float32 rounding (measured ~1e-6 relative), not always to the bit.

Memory: a map's intermediate activations exist for one tile at a time, so its peak is
bounded by the tile size (plus the stitched outputs), not by the image size.
Determinism: the tile grid is a pure function of the input's size, the tile size and
the halo; what a decoder computes is tiled with a fixed tile size
(:data:`corrdiff.sampling.TILE_PIXELS`), so every decoder computes the same bits as the
encoder on the same machine. An input that fits in one tile is passed to the map whole:
small images take exactly the untiled path.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable, Sequence, TypeVar

import torch
from torch import Tensor

Out = TypeVar("Out", Tensor, Sequence[Tensor])


def split(cells: int, tile: int, align: int = 1) -> list[tuple[int, int]]:
    """Cut ``range(cells)`` into as few pieces of at most ``tile`` cells as possible, of near-equal size.

    Every piece but the last has a length that is a multiple of ``align`` (``tile`` is rounded
    down to one, but not below ``align``), so piece boundaries stay on an ``align`` grid.
    """
    tile = max(align, tile // align * align)
    count = -(-cells // tile)
    per = -(-cells // count)  # ceil(cells / count) <= tile
    size = -(-per // align) * align  # rounded up to the grid, still <= tile
    return [(a, min(a + size, cells)) for a in range(0, cells, size)]


def map_tiles(
    fn: Callable[[Tensor], Out],
    x: Tensor,
    cell: int,
    tile: int | None,
    halo: int,
    align: int = 1,
) -> Out:
    """``fn(x)`` computed on overlapping tiles of at most ``tile`` x ``tile`` cells, stitched.

    Args:
        fn: a translation-equivariant map (in whole cells) whose outputs depend only on inputs
            within ``halo`` cells; returns one tensor or a list of tensors, each with a fixed
            number of pixels per cell (e.g. the decoder: 16; a pyramid level: 16 / 2^l).
        x: (N, C, H, W) with H and W multiples of ``cell``, the input's pixels per cell
            (16 for an image, 1 for a latent).
        tile: tile size in cells (``None``: one tile, i.e. ``fn(x)``).
        halo: cells added on every side of a tile (clipped at the image border, where the
            untiled map sees the same border).
        align: tile origins and halos are multiples of this many cells (for outputs with less
            than one pixel per cell, e.g. a U-Net level at stride 32).

    Peak memory: that of ``fn`` on one (tile + 2 halo)-cell square, plus the stitched outputs.
    """
    cells_h, cells_w = x.shape[-2] // cell, x.shape[-1] // cell
    if x.shape[-2] != cells_h * cell or x.shape[-1] != cells_w * cell:
        raise ValueError(f"input of size {tuple(x.shape[-2:])} is not a whole number of {cell}-pixel cells")
    if tile is None or (cells_h <= tile and cells_w <= tile):
        return fn(x)
    if halo % align:
        halo += align - halo % align
    rows, cols = split(cells_h, tile, align), split(cells_w, tile, align)
    single = False
    outputs: list[Tensor] | None = None
    ratios: list[Fraction] = []
    for a, b in rows:
        a0, b1 = max(0, a - halo), min(cells_h, b + halo)
        for c, d in cols:
            c0, d1 = max(0, c - halo), min(cells_w, d + halo)
            result = fn(x[..., a0 * cell : b1 * cell, c0 * cell : d1 * cell])
            single = isinstance(result, Tensor)
            parts = [result] if single else list(result)
            if outputs is None:
                ratios = [Fraction(p.shape[-2], b1 - a0) for p in parts]
                for p, r in zip(parts, ratios):
                    if Fraction(p.shape[-1], d1 - c0) != r or (r * cells_h).denominator != 1 or (r * cells_w).denominator != 1:
                        raise ValueError(f"an output of shape {tuple(p.shape)} has no whole number of pixels per cell")
                outputs = [
                    torch.empty(
                        *p.shape[:-2], int(r * cells_h), int(r * cells_w), dtype=p.dtype, device=p.device,
                        memory_format=_memory_format(p),
                    )
                    for p, r in zip(parts, ratios)
                ]
            for out, part, r in zip(outputs, parts, ratios):
                out[..., int(r * a) : int(r * b), int(r * c) : int(r * d)] = part[
                    ..., int(r * (a - a0)) : int(r * (b - a0)), int(r * (c - c0)) : int(r * (d - c0))
                ]
            del result, parts
    assert outputs is not None
    return outputs[0] if single else outputs  # type: ignore[return-value]


def _memory_format(t: Tensor) -> torch.memory_format:
    """The tile output's layout, for the stitched output (channels-last in, channels-last out)."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


__all__ = ["map_tiles", "split"]
