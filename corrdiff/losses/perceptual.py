"""Perceptual distances P(x_hat, x) for images in [-1, 1], per image: LPIPS (Zhang et al., CVPR 2018)
and the weight-free high-frequency deficit ``hf`` (:class:`HighFrequencyDeficit`).

LPIPS needs two sets of weights: its linear heads (shipped inside the ``lpips`` package)
and an ImageNet backbone (AlexNet or VGG-16, from torchvision's model store). The backbone
is read from an explicit ``backbone_weights`` path, else found by :func:`corrdiff.weights.find_weights`
(torch's hub cache, ``torch.hub.get_dir()/checkpoints``, where it is downloaded on first use unless
``CORRDIFF_OFFLINE=1``); when it cannot be had, building fails with :class:`PerceptualUnavailable`
saying why. Nothing runs with random weights (tests write random weight files and pass their path,
as a user would).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrdiff.filters import laplacian
from corrdiff.registry import split_spec
from corrdiff.weights import PerceptualUnavailable, find_weights

#: LPIPS backbone -> key of :data:`corrdiff.weights.WEIGHTS`
_BACKBONES = {"alex": "alexnet", "vgg": "vgg16"}


class LPIPS(nn.Module):
    """LPIPS distance per image, shape (B,), on inputs in [-1, 1]; frozen, eval mode."""

    def __init__(self, net: str = "alex", backbone_weights: str | None = None):
        super().__init__()
        import lpips

        if backbone_weights:
            path = Path(backbone_weights)
        elif net in _BACKBONES:
            path = find_weights(_BACKBONES[net])
        else:
            raise ValueError(f"LPIPS backbone must be one of {sorted(_BACKBONES)}, got {net!r}")
        if not path.is_file():
            raise PerceptualUnavailable(f"LPIPS({net}): no backbone weights at {path}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        _load_backbone(self.model.net, torch.load(path, map_location="cpu", weights_only=True))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":  # always frozen
        return super().train(False)

    def forward(self, x: Tensor, x_hat: Tensor) -> Tensor:
        return self.model(x.float(), x_hat.float()).flatten()


def _load_backbone(backbone: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Copy torchvision ``features.{i}.*`` weights into lpips' sliced backbone (slices keep index names)."""
    own = {}
    for slice_name, child in backbone.named_children():
        for index, layer in child.named_children():
            for pname, param in layer.named_parameters(recurse=False):
                own[f"features.{index}.{pname}"] = param
    missing = [k for k in own if k not in state_dict]
    if missing:
        raise PerceptualUnavailable(f"backbone weights lack {missing[:3]}: not a torchvision checkpoint of this net")
    with torch.no_grad():
        for key, param in own.items():
            param.copy_(state_dict[key])


class HighFrequencyDeficit(nn.Module):
    """High-frequency energy that ``x_hat`` lacks against the original ``x``, per image (B,); weight-free.

    With E_w(u) the mean over window w (``window`` x ``window`` pixels) of the squared 3x3
    Laplacian summed over channels::

        P(x_hat, x) = mean_w max(0, sqrt(E_w(x)) - sqrt(E_w(x_hat)))^2 / 20        (6)

    i.e. the local Laplacian energy missing in the decode, in units of pixel squared error summed
    over the channels (3x the per-channel MSE scale: white noise of variance s^2 has Laplacian
    energy 20 s^2 per channel). Only energy that is
    missing counts, so a decode that is already as detailed as the original is not pushed
    further; only the encoder can evaluate it (it needs x). Used as the gamma solver's P
    (``perceptual: {"name": "hf"}``), it asks for sharper decodes without LPIPS weights.
    """

    def __init__(self, window: int = 16):
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window

    def local_energy(self, image: Tensor) -> Tensor:
        energy = laplacian(image.float(), padding=1).pow(2).sum(1, keepdim=True)
        return F.avg_pool2d(energy, self.window, ceil_mode=True)

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        missing = self.local_energy(x).sqrt() - (self.local_energy(x_hat) + 1e-12).sqrt()
        return missing.clamp_min(0).pow(2).mean(dim=(1, 2, 3)) / 20


PERCEPTUAL = {"lpips": LPIPS, "hf": HighFrequencyDeficit}


def build_perceptual(spec: Mapping[str, Any] | str) -> nn.Module:
    """Build a perceptual distance from ``{"name": "lpips", "net": "alex"|"vgg", ...}`` or ``{"name": "hf"}``.

    The result remembers its ``spec`` (the encoder keeps one per spec)."""
    name, kwargs = split_spec(spec)
    if name not in PERCEPTUAL:
        raise ValueError(f"perceptual distance must be one of {sorted(PERCEPTUAL)}, got {name!r}")
    distance = PERCEPTUAL[name](**kwargs)
    distance.spec = {"name": name, **kwargs}
    return distance


Distance = Callable[[Tensor, Tensor], Tensor]
