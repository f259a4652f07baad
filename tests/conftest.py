"""Shared fixtures: one tiny codec per session, its model file, small deterministic images.

Everything here is sized for a 2-core CPU: the ``tiny`` preset and images of at most
64 x 131 pixels, so each test takes well under a second once the codec is warm.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

# One intra-op thread: on a small (often shared) CPU, two OpenMP threads make many tiny
# convolutions *slower* (tens of ms each while the second core is busy). Tests that
# need another thread count set it themselves and restore it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Nothing in the tests reaches the internet: pretrained weights are never downloaded (corrdiff/weights.py);
# tests/test_weights.py turns downloads back on against a server on 127.0.0.1.
os.environ["CORRDIFF_OFFLINE"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)

# A shell without job control starts a background command (`pytest &`, `nohup ... &`) with SIGINT ignored, and
# Python then installs no KeyboardInterrupt handler: the tests of Ctrl-C (signal.raise_signal) would see nothing.
# Give the suite the handler a foreground run has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import corrdiff  # noqa: E402
from corrdiff.image_io import to_tensor  # noqa: E402,F401 (tests import it from here)
from corrdiff.presets import preset  # noqa: E402

TEST_SIZES = ((67, 131), (32, 48), (17, 33))


def make_codec(seed: int = 0, **overrides) -> "corrdiff.CorrDiffCodec":
    """A ``tiny`` codec with seeded random weights, entropy tables built, in eval mode."""
    config = preset("tiny")
    config.update(overrides)
    torch.manual_seed(seed)
    codec = corrdiff.CorrDiffCodec(**config)
    codec.update(force=True)
    return codec.eval()


@pytest.fixture(scope="session")
def tiny_codec():
    codec = make_codec(0)
    # warm the CPU kernels once so the first timed/compared test is not the slow one
    codec.encode(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), steps=1)
    return codec


@pytest.fixture(scope="session")
def default_codec():
    """The packaged model (tests that change its attributes restore them)."""
    return corrdiff.load_model("default")


@pytest.fixture(scope="session")
def model_file(tiny_codec, tmp_path_factory):
    """Path of ``tiny_codec`` written with :func:`corrdiff.save_model`."""
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    corrdiff.save_model(tiny_codec, path, metadata={"purpose": "tests"})
    return path


def _natural_images() -> dict[str, np.ndarray]:
    from skimage import data

    astronaut = data.astronaut()[::8, ::8][:64, :64]  # (64, 64, 3)
    chelsea = data.chelsea()[::4, ::4][:67, :131 - 20]  # (67, 111, 3) odd sizes
    coffee = data.coffee()[::8, ::8][:48, :72]  # (48, 72, 3)
    return {"astronaut": astronaut, "chelsea": chelsea, "coffee": coffee}


@pytest.fixture(scope="session")
def natural_images() -> dict[str, np.ndarray]:
    """Small crops of scikit-image's bundled photos, (H, W, 3) uint8."""
    return {k: np.ascontiguousarray(v) for k, v in _natural_images().items()}


def random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A deterministic (1, 3, H, W) image in [0, 1]: smooth gradient plus noise."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, height)[:, None]
    xx = torch.linspace(0, 1, width)[None, :]
    base = torch.stack([yy * xx.new_ones(1, width), xx * yy.new_ones(height, 1), (yy + xx) / 2])
    return (0.7 * base + 0.3 * torch.rand(3, height, width, generator=g)).clamp(0, 1).unsqueeze(0)


def estimate_triple(seed: int, shape: tuple[int, ...], d_noise: float = 0.5, e_noise: float = 0.3):
    """Seeded (x, x0_d, x0_e) in [-1, 1] for the gamma solvers: an image and two noisy estimates of it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g) * 2 - 1
    x0_d = (x + d_noise * torch.randn(shape, generator=g)).clamp(-1, 1)
    x0_e = (x + e_noise * torch.randn(shape, generator=g)).clamp(-1, 1)
    return x, x0_d, x0_e


@pytest.fixture(scope="session")
def test_images(natural_images) -> dict[str, torch.Tensor]:
    """Named (1, 3, H, W) test images in [0, 1]: random ones at odd sizes and natural crops."""
    images = {f"random{h}x{w}": random_image(h, w, seed=i) for i, (h, w) in enumerate(TEST_SIZES)}
    images.update({name: to_tensor(rgb) for name, rgb in natural_images.items()})
    return images


@pytest.fixture(scope="session")
def encoded(tiny_codec, test_images):
    """Memoised ``tiny_codec.encode(image)`` (default settings) by image name."""
    cache: dict[str, corrdiff.EncodeResult] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = tiny_codec.encode(test_images[name])
        return cache[name]

    return get


@pytest.fixture
def num_threads():
    """Restore torch's intra-op thread count after a test changes it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _random_inception_state() -> dict[str, torch.Tensor]:
    """A freshly initialised state dict of FID's Inception-v3 (torch-fidelity's, as torchmetrics builds it).

    Its constructor loads weights (a file or a download) unconditionally; both are skipped here.
    """
    from torch_fidelity import feature_extractor_inceptionv3 as inception

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *args, **kwargs: None)
        network = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    return network.state_dict()


def write_random_weights(folder: Path) -> Path:
    """Every file of :data:`corrdiff.metrics.WEIGHT_FILES` in ``folder``, with freshly initialised (seeded)
    networks: the pretrained metrics run their real code paths (and take their real time), numbers meaningless.

    AlexNet and VGG-16 are saved features-only (what LPIPS and DISTS read), as plain state dicts.
    ``benchmarks/eval_speed.py`` times evaluations with it.
    """
    from torchvision.models import alexnet, vgg16

    from corrdiff.metrics import WEIGHT_FILES

    torch.manual_seed(0)
    for key, network in (("alexnet", alexnet), ("vgg16", vgg16)):
        features = network(weights=None).features.state_dict()
        torch.save({f"features.{k}": v for k, v in features.items()}, folder / WEIGHT_FILES[key])
    torch.save(_random_inception_state(), folder / WEIGHT_FILES["inception"])
    return folder


@pytest.fixture(scope="session")
def random_weights_dir(tmp_path_factory):
    """A ``--weights-dir`` of :func:`write_random_weights`."""
    return write_random_weights(tmp_path_factory.mktemp("random-weights"))


@pytest.fixture
def encode_threads(monkeypatch) -> list[int]:
    """The torch thread count of every CorrDiffCodec.encode call made during the test, in order."""
    seen: list[int] = []
    real = corrdiff.CorrDiffCodec.encode

    def encode(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(corrdiff.CorrDiffCodec, "encode", encode)
    return seen


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``corrdiff ARGV`` in-process (arguments turned to strings): (exit status, stdout, stderr)."""
    from corrdiff.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def count_model_loads(monkeypatch) -> list[str]:
    """The name or path of every model that ``corrdiff.model_io.load_model`` loads from now on, in order."""
    loads: list[str] = []
    real = corrdiff.model_io.load_model

    def load_model(name, *args, **kwargs):
        loads.append(str(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(corrdiff.model_io, "load_model", load_model)
    return loads
