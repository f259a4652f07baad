"""Conditional score network: a U-Net denoiser f_theta(x_t, t, c[, x0_e]) predicting eps, x0 or v.

ADM-style (Dhariwal & Nichol, "Diffusion models beat GANs", NeurIPS 2021): residual
blocks with GroupNorm and adaptive scale-shift from the timestep embedding
(h = norm(h) * (1 + s) + b), optional self-attention at chosen levels, skip
connections between the halves. The conditioning pyramid (one feature map per
level, see :mod:`corrdiff.modules.conditioning`) is added to the activations at the
start of each level through a 1x1 projection. ``patch_size`` > 1 folds p x p pixels
into channels first (pixel-unshuffle), cutting full-resolution work by p^2.

Conditioning on the end-to-end reconstruction (``e2e_input``; our addition, docs/training.md): x0_e = D(y_hat)
is a deterministic function of the latent, so feeding it to the network keeps this a diffusion model
conditioned on y_hat, but hands it the decoder's already good estimate at full resolution instead of
making it decode the latent again through the pyramid alone:

* ``concat``: the input is [x_t, x0_e] (6 channels before the pixel-unshuffle).
* ``residual``: as ``concat``, and the network predicts the difference to x0_e,
  x0_theta = x0_e + f_theta(x_t, t, c, x0_e) (``prediction: x0`` only). The output layer starts at
  zero, so an untrained network already samples x0_e, and training only has to add the detail.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrdiff.modules.parametrisations import PREDICTIONS
from corrdiff.registry import SCORE_NETS

E2E_INPUTS = ("none", "concat", "residual")


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels)


class ResBlock(nn.Module):
    """GN-SiLU-conv, scale-shift by the time embedding, GN-SiLU-dropout-conv, residual."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.in_layers = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.out_norm = _norm(cout)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1))
        nn.init.zeros_(self.out_layers[-1].weight)
        nn.init.zeros_(self.out_layers[-1].bias)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        # Without autograd (sampling), the elementwise steps overwrite the temporaries they read
        # instead of allocating new ones: the same operations in the same order, so the same bits,
        # with two full-size tensors fewer alive at once (the peak of a sampling step is here).
        inplace = not torch.is_grad_enabled()
        norm, _, conv = self.in_layers
        h = conv(F.silu(norm(x), inplace=inplace))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_norm(h)
        h = h.mul_(1 + scale).add_(shift) if inplace else h * (1 + scale) + shift
        _, dropout, conv = self.out_layers
        h = conv(dropout(F.silu(h, inplace=inplace)))
        return h.add_(self.skip(x)) if inplace else self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over spatial positions (scaled dot product), residual."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class _Level(nn.Module):
    def __init__(self, blocks: list[ResBlock], attention: bool, channels: int, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(Attention(channels, heads) for _ in blocks) if attention else None


@SCORE_NETS.register("unet")
class UNet(nn.Module):
    """Conditional U-Net; see the module docstring.

    Args:
        cond_channels: widths of the conditioning pyramid, one per level (wired by the codec).
        base_channels: width of level 0; level l has ``base_channels * channel_mult[l]``.
        channel_mult: width multipliers, one per level (level l works at stride 2^l * patch_size).
        num_res_blocks: residual blocks per level in the down half (one more in the up half).
        attention_levels: levels with self-attention (keep them coarse: cost is quadratic in pixels).
        prediction: ``"eps"`` (noise), ``"x0"`` (clean image) or ``"v"`` (Salimans & Ho 2022).
        patch_size: pixel-unshuffle factor at the input (1 = none).
        e2e_input: ``"none"``, ``"concat"`` or ``"residual"``: whether and how the network sees the
            end-to-end reconstruction x0_e (see the module docstring).
    """

    def __init__(
        self,
        cond_channels: tuple[int, ...],
        base_channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2, 4),
        num_res_blocks: int = 2,
        attention_levels: tuple[int, ...] = (),
        heads: int = 4,
        dropout: float = 0.0,
        prediction: str = "eps",
        patch_size: int = 1,
        e2e_input: str = "none",
    ):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if e2e_input not in E2E_INPUTS:
            raise ValueError(f"e2e_input must be one of {E2E_INPUTS}, got {e2e_input!r}")
        if e2e_input == "residual" and prediction != "x0":
            raise ValueError("e2e_input 'residual' predicts x0 - x0_e: it needs prediction 'x0'")
        if len(cond_channels) != len(channel_mult):
            raise ValueError(
                f"the conditioner gives {len(cond_channels)} levels but the U-Net has {len(channel_mult)} "
                "(channel_mult); make them equal"
            )
        self.prediction = prediction
        self.e2e_input = e2e_input
        self.patch_size = patch_size
        self.channel_mult = tuple(channel_mult)
        emb_dim = 4 * base_channels
        self.base_channels = base_channels
        self.time_embed = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        widths = [base_channels * m for m in channel_mult]
        in_channels = 3 if e2e_input == "none" else 6
        self.conv_in = nn.Conv2d(in_channels * patch_size**2, widths[0], 3, padding=1)
        entry_widths = [widths[0], *widths[:-1]]  # channels of h where level l starts
        self.cond_proj = nn.ModuleList(nn.Conv2d(cc, w, 1) for cc, w in zip(cond_channels, entry_widths))

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, ch = [widths[0]], widths[0]
        for level, width in enumerate(widths):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, width, emb_dim, dropout))
                ch = width
                skips.append(ch)
            self.down.append(_Level(blocks, level in attention_levels, width, heads))
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), ResBlock(ch, ch, emb_dim, dropout)])
        self.mid_attn = Attention(ch, heads) if attention_levels else nn.Identity()

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(ch + skips.pop(), widths[level], emb_dim, dropout))
                ch = widths[level]
            self.up.append(_Level(blocks, level in attention_levels, ch, heads))
            if level > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, 3 * patch_size**2, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def uses_e2e(self) -> bool:
        """Whether :meth:`forward` needs the end-to-end reconstruction ``x0_e``."""
        return self.e2e_input != "none"

    @property
    def multiple(self) -> int:
        """Input height/width must be divisible by this."""
        return self.patch_size * 2 ** (len(self.channel_mult) - 1)

    def project_condition(self, cond: list[Tensor]) -> list[Tensor]:
        """What is added to the activations at the start of each level: 1x1 projections of the pyramid.

        Level l of the pyramid has stride 2^l, the U-Net's level l stride 2^l * patch_size, so with
        patch_size > 1 each feature is first resampled (bilinear, by exactly 1/patch_size) to the
        level's size. The result depends on the conditioning only, not on x_t or t: a sampler
        computes it once per image and passes it with ``projected=True`` at every step (same values
        as projecting inside :meth:`forward`, and ``patch_size^2`` times fewer pixels to keep).
        Pixel-local (1x1 convolutions, resampling within patch_size x patch_size blocks), so it
        can run on tiles of the pyramid.
        """
        p = self.patch_size
        return [self._project(level, c, (c.shape[-2] // p, c.shape[-1] // p)) for level, c in enumerate(cond)]

    def _project(self, level: int, feature: Tensor, size: tuple[int, int]) -> Tensor:
        return self.cond_proj[level](_fit(feature, size))

    def forward(
        self, x_t: Tensor, t: Tensor, cond: list[Tensor], projected: bool = False, x0_e: Tensor | None = None
    ) -> Tensor:
        """eps, x0 or v estimate for x_t at timesteps t; ``cond`` is the conditioner's pyramid, or with
        ``projected=True`` its :meth:`project_condition` (identical output); ``x0_e`` the end-to-end
        reconstruction (in [-1, 1], x_t's shape), required when :attr:`uses_e2e`."""
        emb = self.time_embed(timestep_embedding(t, self.base_channels))
        inputs = x_t
        if self.uses_e2e:
            if x0_e is None or x0_e.shape != x_t.shape:
                raise ValueError(f"this score network (e2e_input {self.e2e_input!r}) needs x0_e of x_t's shape "
                                 f"{tuple(x_t.shape)}, got {None if x0_e is None else tuple(x0_e.shape)}")
            inputs = torch.cat([x_t, x0_e.to(x_t.dtype)], dim=1)
        h = self.conv_in(F.pixel_unshuffle(inputs, self.patch_size) if self.patch_size > 1 else inputs)
        del inputs
        hs = [h]
        for level, stage in enumerate(self.down):
            if level > 0:
                h = self.downsample[level - 1](h)
                hs.append(h)
            if projected:
                if cond[level].shape[-2:] != h.shape[-2:]:
                    raise ValueError(f"projected condition of level {level} has size {tuple(cond[level].shape[-2:])}, "
                                     f"the activations {tuple(h.shape[-2:])}")
                h = h + cond[level]
            else:
                h = h + self._project(level, cond[level], h.shape[-2:])
            for i, block in enumerate(stage.blocks):
                h = block(h, emb)
                if stage.attn is not None:
                    h = stage.attn[i](h)
                hs.append(h)
        # hs order: conv_in, level-0 blocks, (downsample, level blocks)...; the up half pops in reverse
        h = self.mid[0](h, emb)
        h = self.mid_attn(h)
        h = self.mid[1](h, emb)
        for i, stage in enumerate(self.up):
            for j, block in enumerate(stage.blocks):
                h = torch.cat([h, hs.pop()], dim=1)  # rebinding h frees its halves during the block
                h = block(h, emb)
                if stage.attn is not None:
                    h = stage.attn[j](h)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.out(h)
        if self.patch_size > 1:
            out = F.pixel_shuffle(out, self.patch_size)
        if self.e2e_input == "residual":
            out = out + x0_e.to(out.dtype)
        return out


def _fit(feature: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample a conditioning feature to a level's spatial size (only differs with patch_size > 1)."""
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
