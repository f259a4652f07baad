"""Training losses: rate, distortion, perceptual, diffusion (one file each)."""

from corrdiff.losses.diffusion import diffusion_loss
from corrdiff.losses.distortion import build_distortion
from corrdiff.losses.perceptual import build_perceptual
from corrdiff.losses.rate import bits_per_pixel, bits_per_pixel_each

__all__ = ["bits_per_pixel", "bits_per_pixel_each", "build_distortion", "build_perceptual", "diffusion_loss"]
