"""The metrics that need pretrained networks: their builders and the per-image metrics made of them.

LPIPS-Alex/VGG and DISTS compare two images; FID/KID's Inception-v3 gives patch features
(:mod:`corrdiff.metrics.patch_fid`). Every builder takes its weight file from
:func:`corrdiff.weights.find_weights` (``weights_dir``, torch hub's cache, else a download unless
``offline``) and raises :class:`~corrdiff.weights.PerceptualUnavailable` (:class:`~corrdiff.weights.WeightsNotFound`
when the file is missing) rather than run with random weights. Files are read with
``weights_only=True``: one carrying pickled objects is refused.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from corrdiff.image_io import to_model_range, to_tensor
from corrdiff.metrics.dists_network import DISTS
from corrdiff.metrics.reference_features import reuse_features
from corrdiff.weights import PerceptualUnavailable, find_weights

#: DISTS's alpha and beta (Ding et al.'s release), as torchmetrics ships them, inside its package
DISTS_ALPHA_BETA = ("functional", "image", "dists_models", "weights.pt")


def load_plain_state_dict(path: Path) -> dict[str, Tensor]:
    """torch.load with weights_only=True: a file carrying pickled objects is refused (PerceptualUnavailable)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means "unavailable"
        raise PerceptualUnavailable(f"{path}: not a plain weights file ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise PerceptualUnavailable(f"{path}: not a state dict")
    return state


def build_lpips(net: str, weights_dir: str | Path | None = None, offline: bool = False) -> nn.Module:
    """LPIPS (Zhang et al. 2018), ImageNet backbone from :func:`find_weights`
    (:mod:`corrdiff.losses.perceptual`)."""
    from corrdiff.losses.perceptual import LPIPS

    path = find_weights("alexnet" if net == "alex" else "vgg16", weights_dir, offline)
    return LPIPS(net, backbone_weights=str(path))


def dists_alpha_beta() -> tuple[Tensor, Tensor]:
    """DISTS's learned alpha and beta from torchmetrics' package data (found without importing torchmetrics)."""
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or spec.origin is None:
        raise PerceptualUnavailable("DISTS needs the torchmetrics package (its alpha/beta weights)")
    path = Path(spec.origin).parent.joinpath(*DISTS_ALPHA_BETA)
    if not path.is_file():
        raise PerceptualUnavailable(f"DISTS's alpha/beta weights are not at {path} (another torchmetrics layout?)")
    state = load_plain_state_dict(path)
    if not {"alpha", "beta"} <= set(state):
        raise PerceptualUnavailable(f"{path}: no alpha and beta")
    return state["alpha"], state["beta"]


def build_dists(weights_dir: str | Path | None = None, offline: bool = False) -> nn.Module:
    """DISTS (Ding et al. 2020, :class:`~corrdiff.metrics.dists_network.DISTS`): VGG-16 from
    :func:`find_weights` (only its convolutional part is read: a features-only file is fine), alpha/beta
    from :func:`dists_alpha_beta`. Inputs in [0, 1]."""
    from torchvision.models import vgg16

    path = find_weights("vgg16", weights_dir, offline)
    state = load_plain_state_dict(path)
    features = vgg16(weights=None).features
    try:
        features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    except RuntimeError as exc:
        raise PerceptualUnavailable(f"{path}: not torchvision's VGG-16 ({str(exc).splitlines()[0]})") from None
    return DISTS(features, *dists_alpha_beta())


def build_inception(weights_dir: str | Path | None = None, offline: bool = False) -> nn.Module:
    """FID's Inception-v3 (the TF 2015-12-05 port; torchmetrics/torch-fidelity), 2048-d pool features
    of uint8 images; needs ``torch-fidelity`` and the weight file."""
    path = find_weights("inception", weights_dir, offline)
    load_plain_state_dict(path)  # refuse pickled objects before torch-fidelity loads it (weights_only=False)
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                  feature_extractor_weights_path=str(path))
    except ModuleNotFoundError as exc:
        raise PerceptualUnavailable(f"FID/KID need the torch-fidelity package ({exc})") from None


def network_score(net: nn.Module, device: str | torch.device, signed: bool) -> Callable[[np.ndarray, np.ndarray], float]:
    """A per-image metric from a distance network ``net(x, x_hat)``: inputs in [-1, 1] when ``signed``
    (LPIPS), else in [0, 1] as ``net(x_hat, x)`` (DISTS). The reference's backbone features are computed
    once for all the reconstructions scored against it in a row (:mod:`corrdiff.metrics.reference_features`)."""
    net = net.to(device)
    memo = reuse_features(net)

    @torch.no_grad()
    def score(reference: np.ndarray, test: np.ndarray) -> float:
        a, b = to_tensor(reference).to(device), to_tensor(test).to(device)
        value = net(to_model_range(a), to_model_range(b)) if signed else net(b, a)
        if memo is not None:
            memo.settle()
        return float(value.reshape(-1)[0])

    if memo is not None:
        score.release = memo.clear  # MetricSuite.release
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
