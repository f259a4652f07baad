"""Image quality metrics on 8-bit images; the pretrained ones through torchmetrics and piq (imported when used).

All functions take (H, W, 3) uint8 arrays, so every method is scored on exactly what
it would write to disk (8-bit-rounded).

* PSNR (dB) and MS-SSIM (Wang, Simoncelli, Bovik 2003; scales reduced for small images).
* High-frequency energy ratio: ||Lap(x_hat)||^2 / ||Lap(x)||^2 with the 3x3 Laplacian;
  1 = as sharp as the original, < 1 = blurred (reported beside PSNR, since the MSE
  gamma trades sharpness for fidelity; docs/evaluation.md).
* Colour error: the largest per-channel difference of the mean colour, in 8-bit levels
  (a colour cast shows here even when PSNR hides it among noise; 0 = no cast).
* Band-pass distribution distance: per scale of a Laplacian pyramid of the luminance, the
  Wasserstein-1 distance between the distributions of the coefficients of decode and original,
  relative to the original's mean absolute coefficient, averaged over scales (0 = the same texture
  statistics). hf-ratio is met by noise as well as by texture; this is not: blur shrinks the
  distribution, noise makes it Gaussian where natural images are heavy-tailed (Field 1987;
  Simoncelli & Olshausen 2001), and a wrong scale shows at that scale.
* HaarPSI and GMSD (piq; weight-free), LPIPS-Alex/VGG and DISTS (pretrained networks, found or
  downloaded by :mod:`corrdiff.weights`), FID/KID on 256x256 patches (HiFiC protocol):
  :class:`MetricSuite`, used by ``corrdiff eval`` (docs/evaluation.md).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrdiff.filters import laplacian
from corrdiff.image_io import hwc_to_nchw, to_model_range, to_tensor, to_uint8
from corrdiff.losses.distortion import ms_ssim_betas, ms_ssim_index
from corrdiff.reference_features import reuse_features
from corrdiff.weights import WEIGHT_FILES, PerceptualUnavailable, WeightsNotFound, find_weights  # noqa: F401 (re-exported)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels, data range 255."""
    error = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / error)) if error > 0 else float("inf")


def ms_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM (RGB, averaged), with as many of the 5 scales as the image size allows."""
    betas = ms_ssim_betas(min(reference.shape[:2]))
    return float(ms_ssim_index(to_tensor(test), to_tensor(reference), betas))


def high_frequency_ratio(reference: np.ndarray, test: np.ndarray) -> float:
    """Laplacian energy of ``test`` relative to ``reference`` (sharpness; 1 = same)."""

    def energy(rgb: np.ndarray) -> float:
        return float(laplacian(to_tensor(rgb)).pow(2).mean())

    ref = energy(reference)
    return energy(test) / ref if ref > 0 else float("nan")


def colour_error(reference: np.ndarray, test: np.ndarray) -> float:
    """max over R, G, B of |mean(test_c) - mean(reference_c)|, in 8-bit levels (a global colour cast)."""
    shift = test.reshape(-1, 3).astype(np.float64).mean(0) - reference.reshape(-1, 3).astype(np.float64).mean(0)
    return float(np.abs(shift).max())


def bandpass_levels(luma: Tensor, scales: int) -> list[Tensor]:
    """Band-pass levels of a Laplacian pyramid (Burt & Adelson 1983) of a (1, 1, H, W) image:
    level k = G_k - up(G_{k+1}), G_{k+1} = 2x2 average of a 5-tap binomial blur of G_k."""
    kernel = luma.new_tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = torch.outer(kernel, kernel)[None, None]
    levels, current = [], luma
    for _ in range(scales):
        if min(current.shape[-2:]) < 8:
            break
        blurred = F.conv2d(F.pad(current, (2, 2, 2, 2), mode="reflect"), kernel)
        coarse = F.avg_pool2d(blurred, 2)
        up = F.interpolate(coarse, size=current.shape[-2:], mode="bilinear", align_corners=False)
        levels.append((current - up)[..., 2:-2, 2:-2])  # without the border the padding shaped
        current = coarse
    return levels


def bandpass_distance(reference: np.ndarray, test: np.ndarray, scales: int = 4) -> float:
    """Mean over scales of W1(coefficients of test, of reference) / mean |coefficient of reference|
    (see the module docstring; lower is better, 0 = the same band-pass statistics)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)  # BT.601 luma

    def levels(rgb: np.ndarray) -> list[Tensor]:
        return bandpass_levels((to_tensor(rgb).double() * weights).sum(1, keepdim=True), scales)

    distances = []
    for ref, tst in zip(levels(reference), levels(test)):
        scale = ref.abs().mean()
        if scale > 0:  # equal sample sizes: W1 is the mean gap between the sorted samples
            distances.append(float((ref.flatten().sort().values - tst.flatten().sort().values).abs().mean() / scale))
    return float(np.mean(distances)) if distances else float("nan")


# =====================================================================================
# The evaluation suite: weight-free and pretrained full-reference metrics, patch FID/KID
# =====================================================================================
#
# Metric names follow CompressAI's ``eval_model`` keys (``psnr-rgb``, ``ms-ssim-rgb``), so
# our summary JSON files overlay with its results; the others are lower-case names with
# a hyphen. Metrics needing pretrained weights (LPIPS, DISTS, FID/KID) get them from
# :func:`corrdiff.weights.find_weights` (``weights_dir``, torch's hub cache, else a download);
# when unavailable, the metric is reported unavailable with the reason and never computed with
# random weights.

from corrdiff.metric_names import ALL_METRICS, DATASET_METRICS, METRICS, Metric  # noqa: E402 (the table)

PATCH_SIZE = 256


def _load_plain_state_dict(path: Path) -> dict[str, Tensor]:
    """torch.load with weights_only=True: a file carrying pickled objects is refused."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means "unavailable"
        raise PerceptualUnavailable(f"{path}: not a plain weights file ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise PerceptualUnavailable(f"{path}: not a state dict")
    return state


# ----------------------------------------------------------------------------- weight-free
def _piq(name: str, reference: np.ndarray, test: np.ndarray) -> float:
    with warnings.catch_warnings():  # piq 0.8 warns about torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        import piq

        return float(getattr(piq, name)(to_tensor(test), to_tensor(reference), data_range=1.0, reduction="none")[0])


def haarpsi(reference: np.ndarray, test: np.ndarray) -> float:
    """HaarPSI (Reisenhofer et al. 2018) via piq; NaN for images under 16 px a side."""
    if min(reference.shape[:2]) < 16:
        return float("nan")
    if np.array_equal(reference, test):
        return 1.0  # piq returns inf for identical flat images
    return _piq("haarpsi", reference, test)


def gmsd(reference: np.ndarray, test: np.ndarray) -> float:
    """GMSD (Xue et al. 2014) via piq; lower is better; NaN for images under 4 px a side."""
    if min(reference.shape[:2]) < 4:
        return float("nan")
    return _piq("gmsd", reference, test)


# ----------------------------------------------------------------------------- pretrained
def build_lpips(net: str, weights_dir: str | Path | None = None, offline: bool = False) -> nn.Module:
    """LPIPS (Zhang et al. 2018), ImageNet backbone from :func:`find_weights`
    (:mod:`corrdiff.losses.perceptual`)."""
    from corrdiff.losses.perceptual import LPIPS

    path = find_weights("alexnet" if net == "alex" else "vgg16", weights_dir, offline)
    return LPIPS(net, backbone_weights=str(path))


def build_dists(weights_dir: str | Path | None = None, offline: bool = False) -> nn.Module:
    """DISTS (Ding et al. 2020) as torchmetrics implements it: VGG-16 from :func:`find_weights`, alpha/beta
    from the weights torchmetrics ships. Inputs in [0, 1]."""
    from torchmetrics.functional.image import dists as tm_dists
    from torchvision.models import vgg16

    path = find_weights("vgg16", weights_dir, offline)
    vgg = vgg16(weights=None)
    state = _load_plain_state_dict(path)
    try:  # only the convolutional part is used: a features-only file is fine too
        vgg.features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    except RuntimeError as exc:
        raise PerceptualUnavailable(f"{path}: not torchvision's VGG-16 ({str(exc).splitlines()[0]})") from None
    # DISTSNetwork fetches VGG-16 from the internet through its module's ``vgg16`` and has no
    # parameter for local weights: it is handed the local network for the time of its construction
    fetch = tm_dists.vgg16
    tm_dists.vgg16 = lambda weights=None: vgg
    try:
        network = tm_dists.DISTSNetwork(load_weights=True)
    finally:
        tm_dists.vgg16 = fetch
    return network.eval().requires_grad_(False)


def build_inception(weights_dir: str | Path | None = None, offline: bool = False) -> nn.Module:
    """FID's Inception-v3 (the TF 2015-12-05 port; torchmetrics/torch-fidelity), 2048-d pool features
    of uint8 images; needs ``torch-fidelity`` and the weight file."""
    path = find_weights("inception", weights_dir, offline)
    _load_plain_state_dict(path)  # refuse pickled objects before torch-fidelity loads it (weights_only=False)
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                  feature_extractor_weights_path=str(path))
    except ModuleNotFoundError as exc:
        raise PerceptualUnavailable(f"FID/KID need the torch-fidelity package ({exc})") from None


def network_score(net: nn.Module, device: str | torch.device, signed: bool) -> Callable[[np.ndarray, np.ndarray], float]:
    """A per-image metric from a distance network ``net(x, x_hat)``: inputs in [-1, 1] when ``signed``
    (LPIPS), else in [0, 1] as ``net(x_hat, x)`` (DISTS). The reference's backbone features are computed
    once for all the reconstructions scored against it in a row (:mod:`corrdiff.reference_features`)."""
    net = net.to(device)
    memo = reuse_features(net)

    @torch.no_grad()
    def score(reference: np.ndarray, test: np.ndarray) -> float:
        a, b = to_tensor(reference).to(device), to_tensor(test).to(device)
        value = net(to_model_range(a), to_model_range(b)) if signed else net(b, a)
        if memo is not None:
            memo.settle()
        return float(value.reshape(-1)[0])

    return score


def lpips_alex(weights_dir: str | Path | None, device: str | torch.device = "cpu",
               offline: bool = False) -> Callable:
    """LPIPS-Alex as a per-image metric (lower is better)."""
    return network_score(build_lpips("alex", weights_dir, offline), device, signed=True)


def lpips_vgg(weights_dir: str | Path | None, device: str | torch.device = "cpu",
              offline: bool = False) -> Callable:
    """LPIPS-VGG as a per-image metric (lower is better)."""
    return network_score(build_lpips("vgg", weights_dir, offline), device, signed=True)


def dists(weights_dir: str | Path | None, device: str | torch.device = "cpu",
          offline: bool = False) -> Callable:
    """DISTS as a per-image metric (lower is better)."""
    return network_score(build_dists(weights_dir, offline), device, signed=False)


# ----------------------------------------------------------------------------- FID/KID on patches
def extract_patches(image: Tensor, patch_size: int = PATCH_SIZE) -> Tensor:
    """Non-overlapping ``patch_size`` patches of (N, C, H, W), row-major, the remainder dropped -> (P, C, s, s)."""
    n, c, h, w = image.shape
    rows, cols = h // patch_size, w // patch_size
    if rows == 0 or cols == 0:
        return image.new_zeros(0, c, patch_size, patch_size)
    x = image[..., : rows * patch_size, : cols * patch_size]
    x = x.reshape(n, c, rows, patch_size, cols, patch_size).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, c, patch_size, patch_size)


def fid_patches(image: Tensor, patch_size: int = PATCH_SIZE) -> Tensor:
    """The HiFiC / MS-ILLM patch protocol: the image's patches, then again with the image shifted
    by ``patch_size // 2`` pixels in both directions (Mentzer et al. 2020, App. A.7; Muckley et al. 2023)."""
    half = patch_size // 2
    return torch.cat([extract_patches(image, patch_size), extract_patches(image[..., half:, half:], patch_size)])


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FID between two feature sets (N, D) (torchmetrics' formula, float64)."""
    from torchmetrics.image.fid import _compute_fid

    real, fake = real.double(), fake.double()
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1 = torch.cov(real.T).reshape(real.shape[1], real.shape[1])
    s2 = torch.cov(fake.T).reshape(fake.shape[1], fake.shape[1])
    return float(_compute_fid(mu1, s1, mu2, s2))


def kernel_inception_distance(real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): mean and std over random subsets of the cubic-kernel MMD^2
    (torchmetrics' ``poly_mmd``); the subset size is capped at the number of samples."""
    from torchmetrics.image.kid import poly_mmd

    n = min(len(real), len(fake))
    size = min(subset_size, n)
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        a = real[torch.randperm(len(real), generator=generator)[:size]].double()
        b = fake[torch.randperm(len(fake), generator=generator)[:size]].double()
        values.append(poly_mmd(a, b))
    v = torch.stack(values)
    return float(v.mean()), float(v.std(unbiased=False))


class PatchFID:
    """Inception features of 256x256 patches (two passes, see :func:`fid_patches`) of the originals
    and of every method's reconstructions; FID and KID per method at the end."""

    def __init__(self, extractor: nn.Module, patch_size: int = PATCH_SIZE, device: str | torch.device = "cpu",
                 batch_size: int = 16):
        self.extractor = extractor.to(device).eval()
        self.patch_size, self.device, self.batch_size = patch_size, torch.device(device), batch_size
        self.real: list[Tensor] = []
        self.fake: dict[str, list[Tensor]] = {}

    @torch.no_grad()
    def features(self, rgb: np.ndarray) -> Tensor:
        image = hwc_to_nchw(np.asarray(rgb, dtype=np.uint8))  # uint8
        patches = fid_patches(image, self.patch_size)
        out = [self.extractor(patches[i: i + self.batch_size].to(self.device)).flatten(1).double().cpu()
               for i in range(0, len(patches), self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0, 0, dtype=torch.float64)

    def add(self, key: str | None, features: Tensor) -> None:
        """Store features of the originals (``key=None``) or of one method's reconstructions."""
        if len(features):
            (self.real if key is None else self.fake.setdefault(key, [])).append(features)

    def num_patches(self, key: str | None = None) -> int:
        return sum(len(f) for f in (self.real if key is None else self.fake.get(key, [])))

    def compute(self, key: str) -> dict[str, float]:
        """``{"fid", "kid", "kid-std", "fid-patches"}``; PerceptualUnavailable with fewer than 2 patches."""
        n = self.num_patches(key)
        if n < 2 or self.num_patches() < 2:
            raise PerceptualUnavailable(
                f"FID/KID need at least 2 patches of {self.patch_size}x{self.patch_size} "
                f"(got {n}: images smaller than {self.patch_size} px a side give none)")
        real, fake = torch.cat(self.real), torch.cat(self.fake[key])
        kid, kid_std = kernel_inception_distance(real, fake)
        return {"fid": frechet_distance(real, fake), "kid": kid, "kid-std": kid_std, "fid-patches": float(n)}


# ----------------------------------------------------------------------------- the suite
def _require(package: str) -> None:
    """Import ``package`` (quietly: piq 0.8 warns about torch.jit.script), else PerceptualUnavailable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            importlib.import_module(package)
    except ImportError as exc:
        raise PerceptualUnavailable(f"needs the {package} package ({exc})") from None


@dataclass
class MetricSuite:
    """The metrics of one evaluation: which are computed, which are unavailable and why.

    Each metric is looked up in :data:`corrdiff.metric_names.METRICS`, which names the function of
    this module that computes it.

    Args:
        metrics: names from :data:`ALL_METRICS` (default: all of them).
        weights_dir: folder with the pretrained weight files (:data:`WEIGHT_FILES`), also
            searched in its ``checkpoints/`` subfolder and in torch hub's cache, where files found
            nowhere are downloaded (:func:`corrdiff.weights.find_weights`).
        device: where the pretrained networks run.
        offline: never download (nor does the environment variable ``CORRDIFF_OFFLINE=1``).
    """

    metrics: Iterable[str] | None = None
    weights_dir: str | Path | None = None
    device: str | torch.device = "cpu"
    offline: bool = False
    unavailable: dict[str, str] = field(default_factory=dict, init=False)
    patch_fid: PatchFID | None = field(default=None, init=False)
    #: metric -> the weight file it lacks (the metrics of :attr:`unavailable` that a file would enable)
    missing_weights: dict[str, WeightsNotFound] = field(default_factory=dict, init=False)

    def __post_init__(self):
        names = list(ALL_METRICS if self.metrics is None else self.metrics)
        unknown = [m for m in names if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(ALL_METRICS)}")
        self.names = [m for m in ALL_METRICS if m in names]  # canonical order
        self._image_fns: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {}
        failures: dict[str, PerceptualUnavailable] = {}  # by compute function: fid and kid share one network
        for name in self.names:
            spec = METRICS[name]
            try:
                if spec.compute in failures:
                    raise failures[spec.compute]
                self._add(spec)
            except PerceptualUnavailable as exc:
                failures[spec.compute] = exc
                self.unavailable[name] = str(exc)
                if isinstance(exc, WeightsNotFound):
                    self.missing_weights[name] = exc

    def _add(self, spec: Metric) -> None:
        """Make ``spec`` computable (its function, network or FID features), or raise PerceptualUnavailable."""
        if spec.needs:
            _require(spec.needs)
        compute = globals()[spec.compute]
        if spec.dataset:
            if self.patch_fid is None:
                self.patch_fid = PatchFID(compute(self.weights_dir, offline=self.offline), device=self.device)
        elif spec.pretrained:
            self._image_fns[spec.name] = compute(self.weights_dir, self.device, offline=self.offline)
        else:
            self._image_fns[spec.name] = compute

    def skipped_line(self) -> str | None:
        """One line naming the metrics that will not be computed and how to enable them (None: none skipped)."""
        if not self.unavailable:
            return None
        text = f"skipped {', '.join(self.unavailable)}"
        if self.missing_weights:
            files = list(dict.fromkeys(e.filename for e in self.missing_weights.values()))
            folders = list(dict.fromkeys(f for e in self.missing_weights.values() for f in e.folders))
            reasons = list(dict.fromkeys(e.reason for e in self.missing_weights.values()))
            text += (f": no pretrained weights ({', '.join(files)} not in {', '.join(folders)}; "
                     f"{'; '.join(reasons)}); to enable, put them in a folder passed as --weights-dir "
                     "(docs/evaluation.md)")
        others = {m: r for m, r in self.unavailable.items() if m not in self.missing_weights}
        if others:
            text += "; " + "; ".join(f"{m}: {r}" for m, r in others.items())
        return text

    @property
    def image_metrics(self) -> list[str]:
        """Per-image metrics that will be computed."""
        return list(self._image_fns)

    @property
    def computed(self) -> list[str]:
        """Every metric that will have values (per image, then data-set level)."""
        extra = [m for m in DATASET_METRICS if m in self.names and m not in self.unavailable]
        return self.image_metrics + extra

    def score(self, reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
        """Every per-image metric of ``test`` against ``reference`` (both (H, W, 3) uint8)."""
        return {name: fn(reference, test) for name, fn in self._image_fns.items()}
