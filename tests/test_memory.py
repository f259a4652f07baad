"""Bounded memory on large images (issue 7): tiling of the convolutional parts, the sampling loop.

* the tiler: tiles cover the image, a single tile is the untiled computation itself, tiled
  outputs equal untiled ones (to float rounding) for every registered transform and the
  conditioner, and every module's declared receptive radius is its real one (gradient support);
* the codec with tiling and channels-last sampling forced on small images: the decoder still
  reproduces the encoder's reconstruction bit for bit, the result equals the untiled one to
  float rounding (so no seam can show), and small images take exactly the old path;
* the encoder's memory settings (its tile size, a channels-last image) never change what a decoder
  computes: a decoder with the defaults reproduces the reconstruction bit for bit;
* exact rewrites: projected conditioning and in-place inference blocks give the same bits;
* the memory bound itself, as peak bytes of live tensors per pixel (what the sampler keeps plus
  one score-network call), measured with a dispatch mode on the packaged model.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import corrdiff
from corrdiff import sampling
from corrdiff.metrics import to_tensor
from corrdiff.modules import tiling
from corrdiff.modules.conditioning import PyramidConditioner
from corrdiff.modules.score_net import ResBlock, UNet
from corrdiff.modules.tiling import map_tiles, split
from corrdiff.registry import DECODERS, ENCODERS

from conftest import make_codec, random_image


# --------------------------------------------------------------------------- the tiler
@pytest.mark.parametrize("cells, tile, align", [(1, 4, 1), (7, 3, 1), (64, 64, 1), (65, 64, 1), (135, 64, 1), (12, 5, 2), (10, 1, 2)])
def test_split_covers_the_range_with_aligned_pieces_of_at_most_a_tile(cells, tile, align):
    pieces = split(cells, tile, align)
    assert pieces[0][0] == 0 and pieces[-1][1] == cells
    assert all(b == c for (_, b), (c, _) in zip(pieces, pieces[1:]))
    assert all(b - a <= max(tile, align) for a, b in pieces)
    assert all(a % align == 0 for a, _ in pieces)
    assert len(pieces) == -(-cells // max(align, tile // align * align))  # as few as possible


def test_one_tile_is_the_untiled_call():
    x = torch.randn(1, 2, 5, 7)
    seen = []
    out = map_tiles(lambda t: seen.append(t) or t * 2, x, cell=1, tile=7, halo=3)
    assert len(seen) == 1 and seen[0] is x and torch.equal(out, x * 2)
    assert map_tiles(lambda t: t + 1, x, cell=1, tile=None, halo=3).shape == x.shape


def test_tiles_stitch_outputs_at_several_scales():
    """A local map with outputs at 16, 1 and 1/2 pixels per cell (aligned tiles): exact stitching."""
    x = torch.randn(1, 3, 12, 10)

    def fn(t):  # pixel-local: outputs depend on their own cell only
        return [t.repeat_interleave(16, -1).repeat_interleave(16, -2), t * 3, torch.nn.functional.avg_pool2d(t, 2)]

    expected = fn(x)
    got = map_tiles(fn, x, cell=1, tile=4, halo=0, align=2)
    assert all(torch.equal(g, e) for g, e in zip(got, expected))
    with pytest.raises(ValueError, match="whole number of 16-pixel cells"):
        map_tiles(fn, torch.randn(1, 3, 20, 32), cell=16, tile=1, halo=0)


def _receptive_radius(module, in_channels: int, cell: int, cells: int) -> int:
    """Chebyshev distance (cells) from the centre output cell to the farthest input cell it depends on
    (capped at cells // 2: callers pass cells > 2 * the declared radius + 2 so the cap cannot hide it)."""
    torch.manual_seed(0)
    x = torch.randn(1, in_channels, cells * cell, cells * cell, requires_grad=True)
    outputs = module(x)
    c = cells // 2
    radius = 0
    for out in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
        k = out.shape[-1] // cells
        (grad,) = torch.autograd.grad(out[..., c * k : (c + 1) * k, c * k : (c + 1) * k].sum(), x, retain_graph=True)
        support = grad.abs().sum((0, 1)).nonzero() // cell
        radius = max(radius, int((support - c).abs().max()))
    return radius


# (registry, name, input channels, input pixels per latent cell) of every registered transform
TRANSFORMS = [(ENCODERS, name, 3, 16) for name in sorted(ENCODERS)] + [(DECODERS, name, 4, 1) for name in sorted(DECODERS)]
TRANSFORM_IDS = [f"{'encoder' if reg is ENCODERS else 'decoder'}-{name}" for reg, name, _, _ in TRANSFORMS]


@pytest.mark.parametrize("registry, name, in_channels, cell", TRANSFORMS, ids=TRANSFORM_IDS)
def test_declared_receptive_radius_of_transforms(registry, name, in_channels, cell):
    transform = registry.build({"name": name, "channels": 8}, latent_channels=4)
    assert transform.receptive_radius is not None
    assert _receptive_radius(transform, in_channels, cell, 2 * transform.receptive_radius + 3) <= transform.receptive_radius


@pytest.mark.parametrize("levels", [1, 3, 5])
def test_declared_receptive_radius_of_the_conditioner(levels):
    conditioner = PyramidConditioner(4, channels=(4,) * levels, width=8)
    assert _receptive_radius(conditioner, 4, 1, 2 * conditioner.receptive_radius + 3) <= conditioner.receptive_radius


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> bool:
    """Equal to float32 rounding, relative to the magnitude of the values."""
    return float((a - b).abs().max()) <= rtol * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("registry, name, in_channels, cell", TRANSFORMS, ids=TRANSFORM_IDS)
def test_tiled_transform_equals_untiled(registry, name, in_channels, cell):
    torch.manual_seed(1)
    transform = registry.build({"name": name, "channels": 8}, latent_channels=4).eval()
    x = torch.randn(1, in_channels, 11 * cell, 17 * cell)
    x = x.mul(4).round() if cell == 1 else x.clamp(-1, 1)  # a quantised latent, or an image in [-1, 1]
    with torch.no_grad():
        assert _close(map_tiles(transform, x, cell, tile=4, halo=transform.receptive_radius), transform(x))


def test_tiled_conditioning_with_projection_equals_untiled():
    """The sampling-time conditioning (pyramid, resampled and projected for a U-Net with patch size 2)."""
    torch.manual_seed(2)
    conditioner = PyramidConditioner(4, channels=(4, 8, 8), width=8).eval()
    unet = UNet(cond_channels=(4, 8, 8), base_channels=8, channel_mult=(1, 2, 2), patch_size=2).eval()
    y = torch.randn(1, 4, 10, 14).mul(3).round()

    def fn(z):
        return unet.project_condition(conditioner(z))

    with torch.no_grad():
        expected = fn(y)
        tiled = map_tiles(fn, y, 1, tile=4, halo=conditioner.receptive_radius, align=1)
    assert [t.shape for t in tiled] == [e.shape for e in expected] == [(1, 8, 80, 112), (1, 8, 40, 56), (1, 16, 20, 28)]
    assert all(_close(t, e) for t, e in zip(tiled, expected))


# --------------------------------------------------------------------------- exact rewrites
def test_projected_conditioning_gives_the_same_bits():
    codec = make_codec(3, score_net={"name": "unet", "base_channels": 16, "channel_mult": [1, 2, 2], "patch_size": 2})
    y_hat = torch.randn(1, 32, 4, 6).mul(3).round()
    x_t = torch.randn(1, 3, 64, 96)
    t = torch.tensor([500])
    with torch.no_grad():
        cond = codec.condition(y_hat)
        projected, is_projected = sampling.sampling_condition(codec, y_hat)
        assert is_projected
        assert torch.equal(codec.denoise(x_t, t, cond), codec.denoise(x_t, t, projected, projected=True))
    with pytest.raises(ValueError, match="projected condition of level 0"):
        with torch.no_grad():
            codec.denoise(x_t[..., :32, :], t, projected, projected=True)


def test_in_place_inference_block_gives_the_same_bits_as_the_autograd_path():
    torch.manual_seed(4)
    block = ResBlock(16, 8, emb_dim=12).eval()
    torch.nn.init.normal_(block.out_layers[-1].weight)  # zero-initialised: make it take part
    x, emb = torch.randn(2, 16, 9, 11), torch.randn(2, 12)
    with torch.no_grad():
        inference = block(x, emb)
    training = block(x, emb)
    assert training.requires_grad and torch.equal(training.detach(), inference)
    training.sum().backward()  # the autograd path still differentiates
    assert block.in_layers[-1].weight.grad is not None


# --------------------------------------------------------------------------- the codec
# The packaged (trained) model: a randomly initialised score network outputs zeros (its last layer
# starts at zero), which would hide every difference in the sampling loop.
@pytest.fixture
def forced(monkeypatch):
    """A context in which the codec computes on tiles of 2 cells (32 pixels) and channels-last, whatever
    the image size: the decoding procedure's constants changed, on both sides (a test seam, not a setting)."""

    @contextlib.contextmanager
    def context(codec):
        with monkeypatch.context() as patch:
            patch.setattr(sampling, "TILE_PIXELS", 32)
            patch.setattr(sampling, "CHANNELS_LAST_PIXELS", 1)
            patch.setattr(codec, "tile_size", 32)
            yield codec

    return context


def _count_tiles(monkeypatch) -> list[int]:
    """Record, per tiled map the codec runs, how many tiles it took."""
    calls: list[int] = []
    original = tiling.map_tiles

    def spy(fn, x, cell, tile, halo, align=1):
        count = [0]

        def counted(t):
            count[0] += 1
            return fn(t)

        out = original(counted, x, cell, tile, halo, align)
        calls.append(count[0])
        return out

    monkeypatch.setattr(sampling, "map_tiles", spy)
    return calls


def test_decoder_reproduces_the_encoder_with_tiling_and_channels_last(default_codec, forced, monkeypatch):
    calls = _count_tiles(monkeypatch)
    image = random_image(67, 131, seed=5)
    with forced(default_codec) as codec:
        result = codec.encode(image)
        assert calls == [15, 15, 15]  # encoder, decoder, conditioner: 5 x 9 cells in tiles of 2 (3 x 5)
        decoded = codec.decompress(result.data)
    assert torch.equal(decoded, result.reconstruction)
    assert decoded.is_contiguous() and result.reconstruction.is_contiguous()


@pytest.fixture(scope="module")
def lively_codec():
    """A ``tiny`` codec whose score network's zero-initialised output layers are randomised, so that the
    conditioning and x_t reach its output (a fresh one outputs zeros, which hides sampling differences)."""
    codec = make_codec(5)
    torch.manual_seed(5)
    for module in codec.score_net.modules():
        if isinstance(module, torch.nn.Conv2d) and not module.weight.any():
            torch.nn.init.normal_(module.weight, std=0.05)
    return codec


# What an encoding machine may set to save memory or time; none may change what a decoder computes.
# channels_last_pixels was a codec setting (channels-last sampling from that size on) until the layout
# became a fixed function of the image size: setting it must stay without effect.
ENCODER_SETTINGS = {
    "tiles-of-64": ({"tile_size": 64}, False),
    "untiled": ({"tile_size": None}, False),
    "channels-last": ({"tile_size": 64, "channels_last_pixels": 1}, True),
}


@pytest.mark.parametrize("mode", ["corrected", "diffusion", "e2e"])
@pytest.mark.parametrize("setting", ENCODER_SETTINGS)
def test_encoder_memory_settings_do_not_change_the_decode(lively_codec, monkeypatch, setting, mode):
    """Encoded with tiles of 64 pixels (the encoder used to tile D and C with them too), untiled, or from a
    channels-last image: a decoder with the default settings reproduces the reconstruction bit for bit."""
    attributes, channels_last = ENCODER_SETTINGS[setting]
    image = random_image(160, 224, seed=9)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    with monkeypatch.context() as patch:
        for name, value in attributes.items():
            patch.setattr(lively_codec, name, value, raising=False)
        result = lively_codec.encode(image, steps=4, mode=mode)
    assert lively_codec.tile_size == corrdiff.CorrDiffCodec.tile_size
    assert torch.equal(lively_codec.decompress(result.data), result.reconstruction)


def _boundary_bands(height: int, width: int, tile_cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of the rows and columns within 2 pixels of a tile boundary."""
    rows, cols = torch.zeros(height, dtype=torch.bool), torch.zeros(width, dtype=torch.bool)
    for mask, size in ((rows, height), (cols, width)):
        for start, _ in split(-(-size // 16), tile_cells)[1:]:
            mask[max(0, 16 * start - 2) : 16 * start + 2] = True
    return rows, cols


@pytest.mark.parametrize("mode", ["corrected", "diffusion", "e2e"])
def test_tiled_results_equal_untiled_ones_without_seams(default_codec, forced, mode):
    """One file decoded plain and tiled + channels-last: the difference is float rounding.

    Measured: corrected (the file's own mode) <= 2e-7 of the [0, 1] range, plain diffusion
    (no correction pulling towards x0_e, 8 steps amplify) <= 2e-4, i.e. 1/20 of an 8-bit step;
    nothing is visible, and the difference is no larger near tile boundaries than elsewhere.
    """
    image = random_image(120, 200, seed=6)
    data = default_codec.encode(image).data
    plain = default_codec.decompress(data, mode=mode)
    with forced(default_codec) as codec:
        tiled = codec.decompress(data, mode=mode)
    diff = (tiled - plain).abs()[0].mean(0)
    assert float(diff.max()) < {"corrected": 1e-6, "diffusion": 1e-3, "e2e": 1e-6}[mode]
    rows, cols = _boundary_bands(120, 200, 2)
    overall = float(diff.mean())
    assert float(diff[rows].mean()) <= 2 * overall + 1e-9
    assert float(diff[:, cols].mean()) <= 2 * overall + 1e-9


def test_small_images_take_exactly_the_untiled_path(default_codec, monkeypatch):
    """Below the tile size and the channels-last threshold nothing changes: same bytes, same image."""
    image = random_image(67, 131, seed=7)
    calls = _count_tiles(monkeypatch)
    result = default_codec.encode(image)
    assert calls == [1, 1, 1]
    monkeypatch.setattr(sampling, "TILE_PIXELS", None)
    monkeypatch.setattr(default_codec, "tile_size", None)
    untouched = default_codec.encode(image)
    assert untouched.data == result.data
    assert torch.equal(untouched.reconstruction, result.reconstruction)


def test_channels_last_image_round_trips_exactly(default_codec):
    """An image made from an (H, W, 3) array is channels-last; at a multiple of 16 nothing pads it
    contiguous, and the encoder used to sample from a channels-last latent (other rounding than
    the decoder's contiguous one): its reconstruction differed from the decoded image."""
    rgb = (random_image(64, 96, seed=8)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    image = to_tensor(rgb)
    assert image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous()
    result = default_codec.encode(image)
    assert torch.equal(default_codec.decompress(result.data), result.reconstruction)


# --------------------------------------------------------------------------- the bound
class _PeakLiveBytes(TorchDispatchMode):
    """Peak total size of the live tensor storages seen by operators (like CUDA's max_memory_allocated),
    the model's own parameters and buffers excepted."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        self.peak = 0

    def _track(self, value):
        if isinstance(value, torch.Tensor) and value.device.type == "cpu":
            storage = value.untyped_storage()
            key = storage.data_ptr()
            if storage.nbytes() >= 4096 and key not in self.live and key not in self.weights:
                self.live[key] = (StorageWeakRef(storage), storage.nbytes())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # forget freed storages first: an output may reuse a freed storage's address, and must count
        self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
        for value in tree_flatten((args, kwargs, out))[0]:
            self._track(value)
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


@pytest.mark.slow
def test_memory_is_bounded_per_pixel_with_the_conv_parts_in_tiles(monkeypatch):
    """The packaged model, 512 x 768 in tiles of 128 pixels: the peak of live tensors is one
    sampling step's, ~328 bytes per pixel decoding and ~352 encoding (which also holds the
    image and x), see corrdiff.sampling.TILE_PIXELS. Untiled, the conditioner's full-resolution
    trunk peaked at ~680 bytes per pixel, before any sampling step."""
    codec = corrdiff.load_model("default")
    codec.tile_size = 128
    monkeypatch.setattr(sampling, "TILE_PIXELS", 128)
    image = torch.rand(1, 3, 512, 768, generator=torch.Generator().manual_seed(0))
    pixels = 512 * 768
    with _PeakLiveBytes(codec) as encoding:
        data = codec.encode(image, steps=2).data
    with _PeakLiveBytes(codec) as decoding:
        codec.decompress(data)
    assert encoding.peak < 370 * pixels, encoding.peak / pixels
    assert decoding.peak < 345 * pixels, decoding.peak / pixels
