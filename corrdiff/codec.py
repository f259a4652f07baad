"""CorrDiffCodec: the CorrDiff model as an nn.Module for training and real compression.

Data flow (Ma, Yang, Liu, ICML 2024; DESIGN.md section 1)::

    x --E--> y --prior--> streams (z, y)  ... bitstream ...  streams --prior--> y_hat
    y_hat --D--> x0_e                    end-to-end (privileged) decoder
    y_hat --C--> c                       conditioning pyramid, computed once per image
    x_T ~ N(0, I) from the seed
    for t in the sampler's N timesteps:
        x0_d  = score_net(x_t, t, c[, x0_e])  (as an x0 estimate, clipped to [-1, 1])
        gamma = argmin_g L(x, x0_d + G(g) (x0_e - x0_d)), coded   encoder only; sent
        x0_c  = clip(x0_d + G(gamma) (x0_e - x0_d))              G: the step's gamma map
        x_t   = sampler.step(x0_c, t, x_t)
    output x0_c of the last step

Public images are float tensors in [0, 1] of shape (1, 3, H, W) (as in compressai);
internally the model works in [-1, 1]. Any size: the image is padded (edge replication)
to a multiple of the stride and cropped back.

Memory (issue 7). With P pixels (padded), the peak is that of one sampling step::

    peak ~ fixed + max(S * P,  K * P + tile cost)

* S: one score-network call plus what the loop keeps (x_t, x0_e, the conditioning projected
  to the U-Net's levels; the encoder also holds the image and x). For the ``small`` preset
  (the packaged model) S = 328 bytes of live tensors per pixel decoding, 352 encoding;
  the process RSS adds allocator slack (measured 335-350 B/px in all at 3840x2160).
* K * P + tile cost: before the loop, the encoder, the end-to-end decoder and the
  conditioning network run on tiles of :attr:`CorrDiffCodec.tile_size` (they have no global
  operation, see :mod:`corrdiff.modules.tiling`), so their activations cost a constant
  (~0.3 GiB at the default 1024-pixel tiles) over what is kept (K = 57 B/px).
* fixed: libraries and weights, 0.5-0.6 GiB RSS after loading (``corrdiff bench``'s "RSS
  loaded"), up to ~0.9 GiB with the allocator's slack: take 0.9 GiB as the bound.

So 3840x2160 (8.3 Mpx) is bounded by ~3.6 GiB and measured 3.4 GiB peak RSS (``corrdiff bench``,
docs/benchmarks.md; 8.4 GiB before tiling and the rest). The U-Net's GroupNorm makes its own
activations global, so they are not tiled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrdiff import bitstream
from corrdiff.correction import CorrectionConfig, GammaSolver, apply_correction, gamma_map, quantize_gamma, step_gammas
from corrdiff.errors import BitstreamError, ModelMismatchError
from corrdiff.image_io import as_image_tensor
from corrdiff.modules.priors import max_stream_bytes
from corrdiff.modules.samplers import seeded_noise, x0_from_output
from corrdiff.modules.tiling import map_tiles
from corrdiff.modules.transforms import STRIDE, check_stride
from corrdiff.registry import CONDITIONERS, DECODERS, ENCODERS, PRIORS, SAMPLERS, SCHEDULES, SCORE_NETS

MODES = bitstream.MODES


@dataclass
class EncodeResult:
    """What :meth:`CorrDiffCodec.encode` returns: the file's bytes and the encoder's view."""

    data: bytes
    reconstruction: Tensor  # (1, 3, H, W) in [0, 1], identical to what decompress() returns
    gamma_steps: tuple[bitstream.GammaStep, ...]  # each step's gammas as sent (empty outside corrected mode)
    y_hat: Tensor

    @property
    def gammas(self) -> Tensor:
        """(steps, K) gammas actually used, when every step has the same number K (else ValueError)."""
        rows = [step_gammas(step)[0] for step in self.gamma_steps]
        if len({len(r) for r in rows}) > 1:
            raise ValueError("the steps have gamma maps of different sizes: read gamma_steps instead")
        return torch.stack(rows) if rows else torch.zeros(0, 1)

    @property
    def num_bytes(self) -> int:
        return len(self.data)

    def bpp(self) -> float:
        """8 * file bytes / pixels, header included."""
        h, w = self.reconstruction.shape[-2:]
        return 8.0 * len(self.data) / (h * w)


# Decode-size bound (docs/reliability.md): a .cdf header may name up to bitstream.MAX_PIXELS (2^28)
# pixels, but a 100-byte file must not make the decoder allocate memory for that many (about
# 350 bytes per pixel for the small preset, see the module docstring; ~1 KiB before tiling).
# read() refuses images above this: 16.8 Mpx, e.g. 4096x4096, 4K UHD or a 12 Mpx photo; about
# 6.5 GiB at the limit. Adjustable per codec
# (codec.max_decode_pixels) or, for the command line, with the environment variable below.
DECODE_PIXELS_ENV = "CORRDIFF_MAX_DECODE_PIXELS"
MAX_DECODE_PIXELS = int(os.environ[DECODE_PIXELS_ENV]) if os.environ.get(DECODE_PIXELS_ENV, "").isdigit() else 1 << 24


class CorrDiffCodec(nn.Module):
    """CorrDiff codec; components are built by registry name (see :mod:`corrdiff.registry`).

    Args:
        latent_channels: width M of y (wired into encoder, decoder, prior and conditioner).
        encoder, decoder, prior, conditioner, score_net, schedule: ``{"name": ..., **kwargs}`` specs.
        sampler: default sampler spec for compression (``{"name": "ddim", "eta": 0.0}``).
        steps: default number of sampling steps (8, as in the paper).
        correction: :class:`~corrdiff.correction.CorrectionConfig` fields.
    """

    max_decode_pixels: int = MAX_DECODE_PIXELS  # read() refuses larger images (decode-memory bound)
    # Encoder, end-to-end decoder and conditioning network run on tiles of at most this many image
    # pixels a side (plus a halo of their receptive radius) when the image is larger: their memory is
    # then bounded by the tile, not the image (see _sample and corrdiff.modules.tiling). None: never
    # tile. Images that fit in one tile are computed whole, exactly as without tiling; above that,
    # tiled results equal untiled ones to float rounding, and the decoder reproduces the encoder's
    # reconstruction bit for bit when both use the same tile_size (the default on both sides).
    tile_size: int | None = 1024
    # Images of at least this many (padded) pixels are reconstructed (end-to-end decoder, conditioning,
    # score network) on channels-last tensors on a CPU: oneDNN then convolves them as they are instead
    # of copying every input into its blocked layout, which cuts the peak of a sampling step by ~25%
    # and the decode time by ~1/3 (measured at 1920x1080). The values equal the default format's to
    # float rounding (another summation order), so smaller images keep the default format: their
    # reconstructions are unchanged. Derived from the latent's size on both sides. None: never.
    channels_last_pixels: int | None = 1 << 20

    def __init__(
        self,
        latent_channels: int = 192,
        encoder: Mapping[str, Any] | None = None,
        decoder: Mapping[str, Any] | None = None,
        prior: Mapping[str, Any] | None = None,
        conditioner: Mapping[str, Any] | None = None,
        score_net: Mapping[str, Any] | None = None,
        schedule: Mapping[str, Any] | None = None,
        sampler: Mapping[str, Any] | None = None,
        steps: int = 8,
        correction: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.config = {
            "latent_channels": latent_channels,
            "encoder": dict(encoder or {"name": "gdn"}),
            "decoder": dict(decoder or {"name": "gdn"}),
            "prior": dict(prior or {"name": "mean_scale_hyperprior"}),
            "conditioner": dict(conditioner or {"name": "pyramid"}),
            "score_net": dict(score_net or {"name": "unet"}),
            "schedule": dict(schedule or {"name": "linear"}),
            "sampler": dict(sampler or {"name": "ddim"}),
            "steps": steps,
            "correction": CorrectionConfig(**(correction or {})).stored(),
        }
        json.dumps(self.config)  # the config must be plain data: it is hashed and embedded in model files
        m = latent_channels
        self.encoder = ENCODERS.build(self.config["encoder"], latent_channels=m)
        self.decoder = DECODERS.build(self.config["decoder"], latent_channels=m)
        check_stride(self.encoder)
        check_stride(self.decoder)
        self.prior = PRIORS.build(self.config["prior"], latent_channels=m)
        self.conditioner = CONDITIONERS.build(self.config["conditioner"], latent_channels=m)
        self.score_net = SCORE_NETS.build(self.config["score_net"], cond_channels=tuple(self.conditioner.out_channels))
        self.schedule = SCHEDULES.build(self.config["schedule"])
        self.correction = CorrectionConfig(**self.config["correction"])
        self.make_sampler(self.config["sampler"])  # fail early on a bad sampler spec
        # the gamma solver's perceptual distances, by spec (canonical JSON), kept out of the module tree (a
        # plain dict, which nn.Module does not register): they are tools of the encoder, not part of the
        # model, so they must not enter state_dict() or the fingerprint that decoders check
        self._perceptual: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}

    # ------------------------------------------------------------------ pieces used by training
    @property
    def prediction(self) -> str:
        return getattr(self.score_net, "prediction", "eps")

    @property
    def multiple(self) -> int:
        """Height and width are padded to a multiple of this."""
        return math.lcm(STRIDE, getattr(self.score_net, "multiple", 1))

    def analyse(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """x in [-1, 1] -> (y_hat, likelihoods) with training-time quantisation (see priors).

        The prior runs in float32 even under autocast: likelihoods of rare symbols underflow
        in half precision, and the entropy model's parameters are numerically sensitive.
        """
        y = self.encoder(x)
        with torch.autocast(device_type=y.device.type, enabled=False):
            return self.prior(y.float())

    def condition(self, y_hat: Tensor) -> list[Tensor]:
        return self.conditioner(y_hat)

    def decode_e2e(self, y_hat: Tensor) -> Tensor:
        """x0_e = D(y_hat), unclipped (training losses see the raw output)."""
        return self.decoder(y_hat)

    @property
    def score_uses_e2e(self) -> bool:
        """Whether the score network takes the end-to-end reconstruction x0_e as an input."""
        return bool(getattr(self.score_net, "uses_e2e", False))

    def denoise(
        self, x_t: Tensor, t: Tensor, cond: list[Tensor], projected: bool = False, x0_e: Tensor | None = None
    ) -> Tensor:
        """Raw score-network output (eps, x0 or v, see :attr:`prediction`).

        ``projected``: ``cond`` is the score network's ``project_condition`` of the pyramid
        (see :meth:`sampling_condition`) rather than the pyramid itself; same output.
        ``x0_e``: the clipped end-to-end reconstruction, passed on when :attr:`score_uses_e2e`.
        """
        kwargs: dict[str, Any] = {"projected": True} if projected else {}
        if self.score_uses_e2e:
            kwargs["x0_e"] = x0_e
        return self.score_net(x_t, t, cond, **kwargs)

    def forward(self, x: Tensor) -> dict[str, Any]:
        """Training forward pass of the compression part: y_hat, likelihoods, x0_e (x in [-1, 1])."""
        y_hat, likelihoods = self.analyse(x)
        return {"y_hat": y_hat, "likelihoods": likelihoods, "x0_e": self.decode_e2e(y_hat)}

    def aux_loss(self) -> Tensor:
        return self.prior.aux_loss()

    def update(self, force: bool = False) -> bool:
        """Build the entropy coder's CDF tables from the current weights (before compressing)."""
        return self.prior.update(force=force)

    def make_sampler(self, spec: Mapping[str, Any] | str | None = None):
        return SAMPLERS.build(spec or self.config["sampler"], schedule=self.schedule)

    def set_perceptual(self, distance: Callable[[Tensor, Tensor], Tensor] | None) -> None:
        """Perceptual distance of the gradient gamma solver, standing for the model's own ``perceptual``
        spec (built from it when unset); an encode that overrides ``perceptual`` builds that one."""
        key = _spec_key(self.correction.perceptual)
        if distance is None:
            self._perceptual.pop(key, None)
        else:
            self._perceptual[key] = distance

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> bytes:
        """First 8 bytes of SHA-256 over the config (canonical JSON) and every saved tensor."""
        return fingerprint_of(self.config, self.state_dict())

    # ------------------------------------------------------------------ compression
    def _pad(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        return F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")

    def _latent_hw(self, height: int, width: int) -> tuple[int, int]:
        m = self.multiple
        return (-(-height // m) * m) // STRIDE, (-(-width // m) * m) // STRIDE

    def _tiled(self, module: nn.Module, fn: Callable[[Tensor], Any], x: Tensor, cell: int) -> Any:
        """``fn(x)`` for a convolutional ``module`` (``fn`` built on it), on tiles of :attr:`tile_size`.

        Tiles are squares of ``tile_size / 16`` latent cells with a halo of the module's
        ``receptive_radius`` (a module that declares none is never tiled); ``cell`` is the
        input's pixels per cell (16 for an image, 1 for a latent). The tile grid depends only
        on the input size and the codec, so encoder and decoder tile identically.
        """
        radius = getattr(module, "receptive_radius", None)
        if self.tile_size is None or radius is None:
            return fn(x)
        align = self.multiple // STRIDE
        tile = max(align, self.tile_size // STRIDE)
        return map_tiles(fn, x, cell, tile, radius, align)

    def analyse_for_coding(self, x_padded: Tensor) -> Tensor:
        """y = E(x) for compression (x in [-1, 1], padded to :attr:`multiple`), in tiles above tile_size."""
        return self._tiled(self.encoder, self.encoder, x_padded, STRIDE)

    def decode_x0_e(self, y_hat: Tensor) -> Tensor:
        """x0_e = clip(D(y_hat)) for sampling, in tiles above tile_size (clipped in place, one copy
        less, when no gradient is recorded)."""
        x0_e = self._tiled(self.decoder, self.decoder, y_hat, 1)
        return x0_e.clamp(-1, 1) if torch.is_grad_enabled() else x0_e.clamp_(-1, 1)

    def sampling_condition(self, y_hat: Tensor) -> tuple[list[Tensor], bool]:
        """The conditioning for every sampling step, computed once: (features, projected).

        With a score network that has ``project_condition`` (the U-Net), the features are its
        per-level projections at the network's own resolution, which are what each step adds
        to its activations: the same values as projecting at every step, computed once, and
        ``patch_size^2`` times smaller than the full-resolution pyramid (for the ``small``
        preset 45 instead of 214 bytes per pixel). The conditioner and the projection are
        convolutional and pixel-local, so they run together on tiles: the full-resolution
        pyramid never exists for the whole image.
        """
        project = getattr(self.score_net, "project_condition", None)
        if project is None:
            return self._tiled(self.conditioner, self.conditioner, y_hat, 1), False
        return self._tiled(self.conditioner, lambda z: project(self.conditioner(z)), y_hat, 1), True

    def _check_ready(self) -> None:
        if not self.prior.entropy_tables_ready():
            raise RuntimeError(
                "the entropy coder's tables are not built: call codec.update() after training "
                "(corrdiff export does it)"
            )

    def _sample(
        self,
        y_hat: Tensor,
        hw: tuple[int, int],
        mode: str,
        sampler_spec: Mapping[str, Any],
        steps: int,
        seed: int,
        choose_gamma: Callable[[int, Tensor, Tensor], Tensor],
        on_step: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Run the (corrected) reverse process; returns the padded reconstruction in [-1, 1].

        ``choose_gamma(i, x0_d, x0_e)`` gives step i's gamma map for the unpadded image, shape
        (1, C or 1, H or 1, W or 1) (a spatial map is extended over the padding by edge
        replication); both encoder and decoder call this one loop, so their trajectories agree
        to the bit. ``on_step(done, steps)``, if given, is called after each step (a progress bar).

        Memory: x0_e and the conditioning are computed once, in tiles on large images (see
        :attr:`tile_size`); across the steps only x_t, x0_e and the projected conditioning
        are kept (each step's estimates are freed as soon as they are used), so the peak is
        that of one score-network call plus these. Values are those of the straightforward
        loop: the in-place clips compute the same numbers without a copy.
        """
        # One memory format for everything below, chosen from the size: a convolution rounds differently
        # on channels-last input, and the encoder's y_hat inherits the image's format (channels-last
        # for an image made from an (H, W, 3) array) while the decoder's comes contiguous.
        fmt = torch.channels_last if self._channels_last(y_hat) else torch.contiguous_format
        y_hat = y_hat.contiguous(memory_format=fmt)
        x0_e = self.decode_x0_e(y_hat)
        if not bitstream.decode_mode(mode).samples:
            return x0_e
        cond, projected = self.sampling_condition(y_hat)
        cond = [c.contiguous(memory_format=fmt) for c in cond]
        sampler = self.make_sampler(sampler_spec)
        generator = torch.Generator().manual_seed(seed)
        x_t = seeded_noise(tuple(x0_e.shape), generator, x0_e).contiguous(memory_format=fmt)
        h, w = hw
        x0_c: Tensor | None = None
        for i, t in enumerate(sampler.set_timesteps(steps)):
            x0_c = None  # the previous step's estimate is in x_t now: free it while the network runs
            t_batch = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
            output = self.denoise(x_t, t_batch, cond, projected=projected, x0_e=x0_e).float()
            x0_d = x0_from_output(output, x_t, sampler.alpha_bar(t), self.prediction).clamp_(-1, 1)
            del output
            gamma = _pad_map(choose_gamma(i, x0_d[..., :h, :w], x0_e[..., :h, :w]).to(x0_d), x0_d.shape[-2:])
            x0_c = apply_correction(x0_d, x0_e, gamma).clamp_(-1, 1)
            del x0_d
            x_t = sampler.step(x0_c, t, x_t, generator)
            if on_step is not None:
                on_step(i + 1, steps)
        assert x0_c is not None  # steps >= 1 outside e2e mode
        return x0_c

    def _channels_last(self, y_hat: Tensor) -> bool:
        """Whether this image is reconstructed in channels-last format (see :attr:`channels_last_pixels`)."""
        limit = self.channels_last_pixels
        pixels = y_hat.shape[-2] * y_hat.shape[-1] * STRIDE**2  # of the padded image
        return limit is not None and y_hat.device.type == "cpu" and pixels >= limit

    def _solver(self, cfg: CorrectionConfig) -> GammaSolver:
        """The gamma solver of ``cfg``, with its perceptual distance (built once per spec and kept)."""
        perceptual = None
        if cfg.rho > 0:
            from corrdiff.losses.perceptual import build_perceptual

            key = _spec_key(cfg.perceptual)  # one distance per spec, built once (LPIPS loads weights)
            if key not in self._perceptual:
                self._perceptual[key] = build_perceptual(cfg.perceptual).to(self._device())
            perceptual = self._perceptual[key]
        return GammaSolver(cfg, perceptual)

    @torch.no_grad()
    def encode(
        self,
        image: Tensor,
        steps: int | None = None,
        seed: int = 0,
        mode: str = "corrected",
        sampler: Mapping[str, Any] | None = None,
        gamma: Mapping[str, Any] | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> EncodeResult:
        """Compress an image; also return the encoder-side reconstruction.

        ``image``: a (1, 3, H, W) or (3, H, W) float tensor in [0, 1], a uint8 tensor, an (H, W, 3)
        numpy array or a PIL image (:func:`corrdiff.image_io.as_image_tensor`); a float image
        outside [0, 1] raises ValueError. An image whose three channels are equal is coded as
        gray: the file says so and the decoder returns R = G = B.

        ``gamma``: overrides of the model's :class:`~corrdiff.correction.CorrectionConfig` for this
        encode, e.g. ``{"granularity": "auto"}`` (rate-distortion choice among scalar,
        channel and tile maps) or ``{"solver": "gradient", "rho": 0.1, "perceptual": {"name": "hf"}}``
        (trade fidelity for sharpness, weight-free). ``on_step(done, steps)`` is called after each
        sampling step.
        """
        kind = bitstream.decode_mode(mode)
        correction = self.correction.replace(dict(gamma or {}))
        image = as_image_tensor(image)
        gray = bool(torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 1], image[:, 2]))
        self._check_ready()
        sampler_spec = dict(sampler or self.config["sampler"])
        steps = int(steps if steps is not None else self.config["steps"]) if kind.samples else 0
        name, eta = self._file_sampler(sampler_spec, steps=steps if kind.samples else None)
        if not 0 <= seed < 2**32:
            raise ValueError(f"seed must lie in [0, 2^32), got {seed}")
        h, w = image.shape[-2:]
        was_training = self.training
        self.eval()
        try:
            x = image.to(self._device()) * 2 - 1
            streams, y_hat = self.prior.compress(self.analyse_for_coding(self._pad(x)))
            coded: list[bitstream.GammaStep] = []
            solver = self._solver(correction) if kind.corrects else None

            def choose_gamma(i: int, x0_d: Tensor, x0_e: Tensor) -> Tensor:
                if solver is None:
                    return torch.zeros(1, 1, 1, 1)
                choice = solver.choose(x, x0_d, x0_e, final=i == steps - 1)  # coded (quantised) before use
                coded.append(choice.coded)
                return choice.map

            x0 = self._sample(y_hat, (h, w), mode, sampler_spec, steps, seed, choose_gamma, on_step)
        finally:
            self.train(was_training)
        data = bitstream.pack(
            bitstream.Bitstream(
                fingerprint=self.fingerprint(), height=h, width=w, mode=mode, sampler=name, steps=steps,
                eta=eta, seed=seed, gamma_steps=tuple(coded), streams=tuple(streams), gray=gray,
            )
        )
        return EncodeResult(data, _to_unit(x0[..., :h, :w], gray), tuple(coded), y_hat)

    def compress(self, image: Tensor, **kwargs: Any) -> bytes:
        """Compress an image (anything :meth:`encode` takes) to the bytes of a ``.cdf`` file."""
        return self.encode(image, **kwargs).data

    def read(self, data: bytes) -> tuple[bitstream.Bitstream, Tensor]:
        """Parse a file and entropy-decode its latent: (header, y_hat). Checks the model fingerprint.

        Refuses (BitstreamError), before any tensor is allocated, an image larger than
        :attr:`max_decode_pixels` and a stream longer than the encoder can write for the symbols it
        must decode (:meth:`_check_stream_lengths`); the entropy decoder's input is padded so that a
        damaged or forged stream cannot make it read past its buffer (the prior's ``decompress`` pads
        each stream, :func:`corrdiff.modules.priors.range_decoder_padding`).
        """
        bs = bitstream.unpack(data)
        if bs.height * bs.width > self.max_decode_pixels:
            raise BitstreamError(
                f"image of {bs.height}x{bs.width} = {bs.height * bs.width} pixels exceeds this decoder's limit of "
                f"{self.max_decode_pixels} pixels (raise codec.max_decode_pixels or ${DECODE_PIXELS_ENV} to decode it)"
            )
        self._check_ready()
        if bs.fingerprint != self.fingerprint():
            raise ModelMismatchError(
                f"file was encoded with model {bs.fingerprint.hex()} but this model is {self.fingerprint().hex()}; "
                "decode it with the model that encoded it (--model)"
            )
        if len(bs.streams) != len(self.prior.streams):
            raise BitstreamError(f"file has {len(bs.streams)} streams, this model's prior codes {len(self.prior.streams)}")
        self._check_stream_lengths(bs)
        try:
            with torch.no_grad():
                y_hat = self.prior.decompress(list(bs.streams), self._latent_hw(bs.height, bs.width))
        except (RuntimeError, ValueError, IndexError) as exc:
            raise BitstreamError(f"entropy-coded data is invalid ({exc})") from None
        return bs, y_hat.to(self._device())

    def _check_stream_lengths(self, bs: bitstream.Bitstream) -> None:
        """BitstreamError for a stream longer than :func:`~corrdiff.modules.priors.max_stream_bytes` of the
        symbols it codes (a proven bound on what the encoder writes), before any padding or decoding:
        so the padding and copies of the decoder are bounded by the header's size, not the file's."""
        counts = getattr(self.prior, "stream_symbols", None)
        if counts is None:  # a third-party prior that does not declare its symbol counts
            return
        for name, stream, count in zip(self.prior.streams, bs.streams, counts(self._latent_hw(bs.height, bs.width))):
            limit = max_stream_bytes(count)
            if len(stream) > limit:
                raise BitstreamError(f"stream {name} holds {len(stream)} bytes, more than the {limit} bytes that its "
                                     f"{count} symbols can take: the file is damaged or forged")

    @torch.no_grad()
    def decompress(
        self, data: bytes, mode: str | None = None, gamma_scale: float = 1.0,
        on_step: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Decode a ``.cdf`` file to a (1, 3, H, W) image in [0, 1].

        Args:
            mode: decode a ``corrected`` file as ``diffusion`` (gamma = 0) or ``e2e`` (x0_e only)
                for ablations; default: the file's own mode.
            gamma_scale: s in [0, 1] multiplies the received gammas (s = 1 reproduces the encoder's
                reconstruction exactly; s = 0 is plain diffusion; in between trades fidelity
                for the diffusion model's texture). ValueError outside [0, 1] or NaN.
            on_step: called as ``on_step(done, steps)`` after each sampling step (a progress bar).
        """
        check_gamma_scale(gamma_scale)
        bs, y_hat = self.read(data)
        mode = mode or bs.mode
        kind = bitstream.decode_mode(mode)
        if kind.corrects and not bitstream.decode_mode(bs.mode).corrects:
            raise BitstreamError(f"file was encoded in mode {bs.mode!r}; it carries no gammas to decode {mode!r}")
        if kind.samples:
            self._check_sampler(bs)

        def choose_gamma(i: int, x0_d: Tensor, x0_e: Tensor) -> Tensor:
            if not kind.corrects:
                return torch.zeros(1, 1, 1, 1)
            return gamma_map(bs.gamma_steps[i], bs.height, bs.width, gamma_scale).to(x0_d.device)

        was_training = self.training
        self.eval()
        try:
            spec = {"name": bs.sampler, "eta": bs.eta}
            x0 = self._sample(y_hat, (bs.height, bs.width), mode, spec, bs.steps, bs.seed, choose_gamma, on_step)
        finally:
            self.train(was_training)
        if not bool(torch.isfinite(x0).all()):
            # a stream altered behind a recomputed CRC can decode to a latent of absurd values
            raise BitstreamError("decoding produced non-finite values: the entropy-coded data is invalid")
        return _to_unit(x0[..., : bs.height, : bs.width], bs.gray)

    def _file_sampler(self, spec: Mapping[str, Any], steps: int | None) -> tuple[str, float]:
        """The sampler as the file records it, (name, eta), from the built sampler (its own default eta,
        e.g. 1 for ddpm); refuses, before any work, options the file cannot record and bad steps/eta."""
        extra = set(spec) - {"name", "eta"}
        if extra:
            raise ValueError(f"a sampler for compression takes only 'name' and 'eta' (the file records no more), "
                             f"got {sorted(extra)}")
        sampler = self.make_sampler(spec)
        if steps is not None:
            sampler.set_timesteps(steps)
        return str(spec["name"]), float(sampler.eta)

    def _check_sampler(self, bs: bitstream.Bitstream) -> None:
        """The file's sampler must exist here and accept its own parameters (else BitstreamError)."""
        if bs.steps == 0:
            raise BitstreamError(f"file was encoded in mode {bs.mode!r}; it has no sampling steps to decode")
        if bs.sampler not in SAMPLERS:
            raise BitstreamError(f"file needs sampler {bs.sampler!r}, which is not registered here")
        try:
            self.make_sampler({"name": bs.sampler, "eta": bs.eta}).set_timesteps(bs.steps)
        except (ValueError, TypeError) as exc:
            raise BitstreamError(f"file's sampler parameters are invalid ({exc})") from None

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def fingerprint_of(config: Mapping[str, Any], state_dict: Mapping[str, Tensor]) -> bytes:
    """:meth:`CorrDiffCodec.fingerprint` of a codec with this config and these weights."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for key, tensor in sorted(state_dict.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.digest()[: bitstream.FINGERPRINT_BYTES]


def check_gamma_scale(gamma_scale: float) -> None:
    """ValueError unless 0 <= gamma_scale <= 1 (NaN included): the decode-time scale of the gammas."""
    if not 0.0 <= gamma_scale <= 1.0:
        raise ValueError(f"gamma scale must lie in [0, 1] (1 = as encoded, 0 = diffusion only), got {gamma_scale}")


def _to_unit(x: Tensor, gray: bool = False) -> Tensor:
    """[-1, 1] -> [0, 1] on the CPU; a gray image gets R = G = B = the mean of the three."""
    image = ((x.float() + 1) / 2).clamp(0, 1).cpu()
    if gray:
        image = image.mean(1, keepdim=True).expand_as(image)
    return image.contiguous()


def _spec_key(spec: Any) -> str:
    """A component spec as a dictionary key (canonical JSON)."""
    return json.dumps(spec, sort_keys=True)


def _pad_map(gamma: Tensor, size: torch.Size) -> Tensor:
    """A gamma map of the unpadded image extended to the padded ``size`` (edge replication)."""
    h, w = gamma.shape[-2:]
    if (h, w) == (1, 1) or (h, w) == tuple(size):
        return gamma
    return F.pad(gamma, (0, size[-1] - w, 0, size[-2] - h), mode="replicate")


__all__ = ["CorrDiffCodec", "EncodeResult", "quantize_gamma"]
