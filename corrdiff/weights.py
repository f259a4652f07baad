"""The pretrained weight files of LPIPS (AlexNet / VGG-16 backbones), DISTS (VGG-16) and FID/KID
(torch-fidelity's Inception): where they are looked for, and their download on first use.

One lookup serves :mod:`corrdiff.metrics` (``corrdiff eval``) and :mod:`corrdiff.losses.perceptual`
(training and the encoder's LPIPS): :func:`find_weights` looks in ``DIR/NAME`` and
``DIR/checkpoints/NAME`` of a weights folder, then in torch hub's cache
(``torch.hub.get_dir()/checkpoints``, where torchvision and torch-fidelity keep them too). A file
found nowhere is downloaded into that cache from the address its publisher serves it at
(:data:`WEIGHTS`), its SHA-256 checked against the published one, written under a temporary name and
renamed when complete: a failed or mismatching download leaves nothing behind. Downloads are off with
``offline=True`` (``corrdiff eval --offline``) or the environment variable ``CORRDIFF_OFFLINE=1``;
then, or when the download fails, the file is reported missing with the reason
(:class:`WeightsNotFound`). See docs/evaluation.md, "Pretrained weights".

torch is imported only when a file is looked up, so that the command line's ``--help`` stays quick.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from corrdiff.errors import CorrDiffError

#: environment variable that forbids downloads when set to anything but "" or "0"
OFFLINE_ENV = "CORRDIFF_OFFLINE"


class PerceptualUnavailable(CorrDiffError, RuntimeError):
    """The pretrained weights a perceptual metric needs are not on this machine."""


@dataclass(frozen=True)
class WeightFile:
    """A published weight file: its name, where it is served, and its SHA-256 (or the leading hex
    digits of it that the publisher puts in the file name, as torchvision does)."""

    filename: str
    url: str
    sha256: str
    used_by: str


#: the weight files, by the keys that :data:`corrdiff.metric_names.METRICS` names
WEIGHTS = {
    "alexnet": WeightFile("alexnet-owt-7be5be79.pth",
                          "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                          "7be5be79", "LPIPS-alex (torchvision AlexNet_Weights.IMAGENET1K_V1)"),
    "vgg16": WeightFile("vgg16-397923af.pth",
                        "https://download.pytorch.org/models/vgg16-397923af.pth",
                        "397923af", "LPIPS-vgg and DISTS (torchvision VGG16_Weights.IMAGENET1K_V1)"),
    "inception": WeightFile("weights-inception-2015-12-05-6726825d.pth",
                            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                            "weights-inception-2015-12-05-6726825d.pth",
                            "6726825d", "FID/KID (torch-fidelity's port of TF Inception 2015-12-05)"),
}
#: file names by key
WEIGHT_FILES = {key: weight.filename for key, weight in WEIGHTS.items()}


class WeightsNotFound(PerceptualUnavailable):
    """A pretrained weight file is in none of the places searched (:func:`weight_search_paths`) and was
    not downloaded: ``reason`` says why (downloads off, or how the download failed)."""

    def __init__(self, filename: str, paths: list[Path], reason: str):
        self.filename, self.reason = filename, reason
        self.folders = list(dict.fromkeys(str(p.parent) for p in paths))
        super().__init__(f"weights not found: {filename} (looked in {', '.join(self.folders)}; {reason}; "
                         "pass --weights-dir, see docs/evaluation.md)")


def hub_checkpoints() -> Path:
    """torch hub's cache of weight files, where downloads go (``$TORCH_HOME/hub/checkpoints``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def weight_search_paths(filename: str, weights_dir: str | Path | None = None) -> list[Path]:
    """Where a weight file is looked for: ``DIR/NAME``, ``DIR/checkpoints/NAME``, torch hub's cache."""
    paths = []
    if weights_dir:
        paths += [Path(weights_dir) / filename, Path(weights_dir) / "checkpoints" / filename]
    paths.append(hub_checkpoints() / filename)
    return paths


def downloads_allowed(offline: bool = False) -> bool:
    """False with ``offline`` or the environment variable :data:`OFFLINE_ENV` set (not "0")."""
    return not offline and os.environ.get(OFFLINE_ENV, "") in ("", "0")


def find_weights(key: str, weights_dir: str | Path | None = None, offline: bool = False) -> Path:
    """The file of ``WEIGHTS[key]``: the first existing one of :func:`weight_search_paths`, else
    downloaded into torch hub's cache (unless :func:`downloads_allowed` says no); else WeightsNotFound."""
    weight = WEIGHTS[key]
    paths = weight_search_paths(weight.filename, weights_dir)
    for path in paths:
        if path.is_file():
            return path
    if not downloads_allowed(offline):
        raise WeightsNotFound(weight.filename, paths, f"downloads are off (--offline or {OFFLINE_ENV}=1)")
    try:
        return download(weight)
    except (OSError, RuntimeError, ValueError) as exc:  # no network, HTTP error, wrong hash, disk full
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsNotFound(weight.filename, paths,
                              f"download from {weight.url} failed: {reason}") from None


def download(weight: WeightFile) -> Path:
    """Download ``weight`` into torch hub's cache. torch.hub.download_url_to_file writes a temporary
    file beside the target, checks the SHA-256 prefix, then renames it (and removes it on any failure)."""
    import torch.hub

    target = hub_checkpoints() / weight.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"corrdiff: downloading {weight.filename} for {weight.used_by} from {weight.url} "
          f"into {target.parent}", file=sys.stderr, flush=True)
    torch.hub.download_url_to_file(weight.url, str(target), hash_prefix=weight.sha256,
                                   progress=sys.stderr.isatty())
    return target
