"""Analysis (encoder E) and end-to-end synthesis (decoder D) transforms, stride 16.

::

    x (3, H, W) --E--> y (M, H/16, W/16)          y_hat --D--> x0_e (3, H, W)

Two families, each registered as an encoder and a decoder:

* ``gdn``: Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression
  with a scale hyperprior", ICLR 2018: four 5x5 stride-2 convolutions with GDN
  (inverse GDN in the decoder).
* ``residual``: Cheng, Sun, Takeuchi, Katto, "Learned image compression with
  discretized Gaussian mixture likelihoods and attention modules", CVPR 2020
  (without attention): residual blocks with stride, sub-pixel upsampling.

Both are built from compressai's layers; widths are configurable.

Each transform declares ``receptive_radius``: an output cell (one latent pixel, i.e. a
16 x 16 block of image pixels) depends only on the input cells within that Chebyshev
distance. The codec runs the transforms on overlapping tiles with that halo to bound
their memory on large images (:mod:`corrdiff.modules.tiling`); tests check the radius
by the support of the gradient.
"""

from __future__ import annotations

from torch import nn

from corrdiff.compressai_parts import GDN, ResidualBlock, ResidualBlockUpsample, ResidualBlockWithStride, subpel_conv3x3
from corrdiff.registry import DECODERS, ENCODERS

STRIDE = 16


def _conv(cin: int, cout: int) -> nn.Module:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _deconv(cin: int, cout: int) -> nn.Module:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class _Transform(nn.Sequential):
    """A stack of layers with its input/output widths recorded for wiring."""

    stride = STRIDE
    receptive_radius: int | None = None  # in latent cells; None: not known, never tiled

    def __init_subclass__(cls, **kwargs):
        # a subclass states its own reach (it may add global layers): it never inherits a radius
        super().__init_subclass__(**kwargs)
        cls.receptive_radius = cls.__dict__.get("receptive_radius")

    def __init__(self, layers: list[nn.Module], in_channels: int, out_channels: int):
        super().__init__(*layers)
        self.in_channels = in_channels
        self.out_channels = out_channels


@ENCODERS.register("gdn")
class GDNEncoder(_Transform):
    """g_a of Ballé et al. 2018: (conv 5x5/2, GDN) x 3, conv 5x5/2."""

    receptive_radius = 2  # 5x5/2 kernels reach 2 + 4 + 8 + 16 = 30 image pixels: < 2 cells

    def __init__(self, channels: int = 128, latent_channels: int = 192):
        n, m = channels, latent_channels
        super().__init__(
            [_conv(3, n), GDN(n), _conv(n, n), GDN(n), _conv(n, n), GDN(n), _conv(n, m)], 3, m
        )


@DECODERS.register("gdn")
class GDNDecoder(_Transform):
    """g_s of Ballé et al. 2018: (deconv 5x5/2, IGDN) x 3, deconv 5x5/2."""

    receptive_radius = 2  # each 5x5/2 deconvolution reaches one input pixel: 1 + 1/2 + 1/4 + 1/8 cells

    def __init__(self, channels: int = 128, latent_channels: int = 192):
        n, m = channels, latent_channels
        super().__init__(
            [
                _deconv(m, n), GDN(n, inverse=True),
                _deconv(n, n), GDN(n, inverse=True),
                _deconv(n, n), GDN(n, inverse=True),
                _deconv(n, 3),
            ],
            m,
            3,
        )


@ENCODERS.register("residual")
class ResidualEncoder(_Transform):
    """g_a of Cheng et al. 2020 (no attention): residual blocks with stride 2."""

    receptive_radius = 4  # 3x3 convolutions in every block: 4 cells; checked by tests/test_memory.py

    def __init__(self, channels: int = 128, latent_channels: int = 192):
        n, m = channels, latent_channels
        super().__init__(
            [
                ResidualBlockWithStride(3, n, stride=2), ResidualBlock(n, n),
                ResidualBlockWithStride(n, n, stride=2), ResidualBlock(n, n),
                ResidualBlockWithStride(n, n, stride=2), ResidualBlock(n, n),
                nn.Conv2d(n, m, 3, stride=2, padding=1),
            ],
            3,
            m,
        )


@DECODERS.register("residual")
class ResidualDecoder(_Transform):
    """g_s of Cheng et al. 2020 (no attention): residual blocks, sub-pixel upsampling."""

    receptive_radius = 7  # 3x3 convolutions at 1/16, 1/8, 1/4, 1/2 and full scale: 7 cells; checked by tests/test_memory.py

    def __init__(self, channels: int = 128, latent_channels: int = 192):
        n, m = channels, latent_channels
        super().__init__(
            [
                ResidualBlock(m, n), ResidualBlockUpsample(n, n, 2),
                ResidualBlock(n, n), ResidualBlockUpsample(n, n, 2),
                ResidualBlock(n, n), ResidualBlockUpsample(n, n, 2),
                ResidualBlock(n, n), subpel_conv3x3(n, 3, 2),
            ],
            m,
            3,
        )


def check_stride(module: nn.Module) -> None:
    """Refuse a transform whose declared stride is not the codec's (16)."""
    stride = getattr(module, "stride", STRIDE)
    if stride != STRIDE:
        raise ValueError(f"{type(module).__name__} has stride {stride}; corrdiff's latent stride is {STRIDE}")


__all__ = ["GDNEncoder", "GDNDecoder", "ResidualEncoder", "ResidualDecoder", "STRIDE", "check_stride"]
