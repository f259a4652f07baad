"""CorrDiffCodec: the CorrDiff model with its coding pipelines, for real compression.

Data flow (Ma, Yang, Liu, ICML 2024; docs/architecture.md)::

    x --E--> y --prior--> streams (z, y)  ... bitstream ...  streams --prior--> y_hat
    y_hat --> the corrected reverse process of corrdiff.sampling --> x0_c of the last step

The network and its config are :class:`corrdiff.model.CorrDiffModel`; this class adds what goes into a file
(:meth:`CorrDiffCodec.encode`) and what comes out of one (:meth:`CorrDiffCodec.decompress`):
the two sides are :mod:`corrdiff.encoding` and :mod:`corrdiff.decoding` (with the checks a decoder makes
of a file's latent and output), the sampling loop that both run is :mod:`corrdiff.sampling` (with the memory
model), the byte layout is :mod:`corrdiff.bitstream`.

Public images are float tensors in [0, 1] of shape (1, 3, H, W) (as in compressai);
internally the model works in [-1, 1]. Any size: the image is padded (edge replication)
to a multiple of the stride and cropped back.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from corrdiff import bitstream, decoding, encoding
from corrdiff.correction import check_gamma_scale, quantize_gamma
from corrdiff.decoding import MAX_DECODE_PIXELS
from corrdiff.encoding import EncodeResult, OnStep
from corrdiff.gamma_distances import PerceptualDistances
from corrdiff.model import CorrDiffModel, fingerprint_of
from corrdiff.image_io import as_image_tensor
from corrdiff.rate_search import Target, encode_to_target
from corrdiff.replay import Replay, sampler_for_encoding


class CorrDiffCodec(CorrDiffModel):
    """CorrDiff codec: :class:`~corrdiff.model.CorrDiffModel` (same arguments, weights and fingerprint) with
    the public coding methods."""

    max_decode_pixels: int = MAX_DECODE_PIXELS  # read() refuses larger images (decode-memory bound, corrdiff.decoding)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        sampler_for_encoding(self.config["sampler"], self.schedule, None)  # fail early on a bad spec
        # the gamma solver's perceptual distances: tools of the encoder kept out of the module tree, so that
        # they never enter state_dict() or the fingerprint that decoders check (set one to use your own)
        self.perceptual_distances = PerceptualDistances()

    # ------------------------------------------------------------------ compression
    def encode(
        self,
        image: Tensor,
        steps: int | None = None,
        seed: int = 0,
        mode: str = "corrected",
        sampler: Mapping[str, Any] | None = None,
        gamma: Mapping[str, Any] | None = None,
        on_step: OnStep | None = None,
        quality: float | None = None,
        bpp: float | None = None,
        max_bytes: int | None = None,
    ) -> EncodeResult:
        """Compress an image; also return the encoder-side reconstruction.

        ``image``: a (1, 3, H, W) or (3, H, W) float tensor in [0, 1], a uint8 tensor, an (H, W, 3)
        numpy array or a PIL image (:func:`corrdiff.image_io.as_image_tensor`); a float image
        outside [0, 1] raises ValueError. An image whose three channels are equal is coded as
        gray: the file says so and the decoder returns R = G = B.

        ``sampler``: ``{"name": ..., **recorded parameters}`` (default: the model's); the file records the
        name and the parameters the sampler declares (``recorded_params``, e.g. ddim's eta).
        ``gamma``: overrides of the model's :class:`~corrdiff.correction.CorrectionConfig` for this
        encode, e.g. ``{"granularity": "auto"}`` (rate-distortion choice among scalar,
        channel and tile maps) or ``{"solver": "gradient", "rho": 0.1, "perceptual": {"name": "hf"}}``
        (trade fidelity for sharpness, weight-free). ``on_step(done, steps)`` is called after each
        sampling step. ``quality``: the rate of a variable-rate model, anywhere in :attr:`quality_range`
        (default: its ``default_quality``); a fixed-rate model takes none (ValueError). ``bpp`` or
        ``max_bytes`` instead: the quality nearest that bpp, or the largest whose file fits that many bytes
        (:mod:`corrdiff.rate_search`; :class:`~corrdiff.rate_search.RateTargetError` when none fits).
        """
        image = as_image_tensor(image)
        h, w = image.shape[-2:]
        targeted = bpp is not None or max_bytes is not None
        if targeted and quality is not None:
            raise ValueError("give one of quality, bpp and max_bytes")
        target = Target(max_bytes=max_bytes, bpp=bpp) if targeted else None  # checked before any work
        replay = Replay.for_encoding(self, h, w, mode, steps, sampler, seed, quality, encoding.is_gray(image))

        def encode(record: Replay) -> EncodeResult:
            return encoding.encode(self, image, record, gamma, on_step, self.perceptual_distances)

        return encode(replay) if target is None else encode_to_target(self, image, target, replay, encode)

    def compress(self, image: Tensor, **kwargs: Any) -> bytes:
        """Compress an image (anything :meth:`encode` takes) to the bytes of a ``.cdf`` file."""
        return self.encode(image, **kwargs).data

    def read(self, data: bytes | bitstream.Bitstream) -> tuple[bitstream.Bitstream, Tensor]:
        """Parse a file and decode its streams: (header, y_hat), after the checks of :func:`corrdiff.decoding.read`
        (size bound, model fingerprint, stream lengths, mode, sampler, rate)."""
        header = data if isinstance(data, bitstream.Bitstream) else bitstream.unpack(data)
        return header, decoding.read(self, header, self.max_decode_pixels)[1]

    def decompress(
        self, data: bytes | bitstream.Bitstream, mode: str | None = None, gamma_scale: float = 1.0, on_step: OnStep | None = None,
    ) -> Tensor:
        """Decode a ``.cdf`` file (its bytes, or its header parsed by :func:`corrdiff.bitstream.unpack`) to a
        (1, 3, H, W) image in [0, 1].

        Args:
            mode: decode a ``corrected`` file as ``diffusion`` (gamma = 0) or ``e2e`` (x0_e only)
                for ablations; default: the file's own mode.
            gamma_scale: s in [0, 1] multiplies the received gammas (s = 1 reproduces the encoder's
                reconstruction exactly; s = 0 is plain diffusion; in between trades fidelity
                for the diffusion model's texture). ValueError outside [0, 1] or NaN.
            on_step: called as ``on_step(done, steps)`` after each sampling step (a progress bar).
        """
        return decoding.decode(self, data, mode, gamma_scale, on_step, self.max_decode_pixels)

    def decompress_avif(
        self, data: bytes, strength: float = 1.0, steps: int | None = None, seed: int = 0,
        quality: float | None = None, on_step: OnStep | None = None,
    ) -> Tensor:
        """Decode a standard AVIF file (not written by corrdiff) with this AVIF-base model: a diffusion decode
        drawn over the file's own AVIF decode, ``strength`` in [0, 1] of the way from it (1: diffusion only,
        0: the AVIF decode); ``quality``: the AVIF quality the network is told (default: estimated from the
        file). :func:`corrdiff.decoding.decode_avif_file` has the details. Returns (1, 3, H, W) in [0, 1]."""
        return decoding.decode_avif_file(self, data, strength, steps, seed, quality, on_step, self.max_decode_pixels)


__all__ = ["CorrDiffCodec", "EncodeResult", "MAX_DECODE_PIXELS", "check_gamma_scale", "fingerprint_of",
           "quantize_gamma"]
