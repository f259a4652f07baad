"""Pretrained weight files (corrdiff/weights.py; docs/evaluation.md, "Pretrained weights"): a file found
nowhere is downloaded into torch hub's cache, its hash checked, written only when complete; never with
``--offline`` or ``CORRDIFF_OFFLINE=1``; a failed download is an "unavailable" line with the reason.

Downloads go to a web server on 127.0.0.1 (http.server in a thread): nothing reaches the internet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import socket
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from corrdiff import weights
from corrdiff.cli import main
from corrdiff.losses.perceptual import LPIPS
from corrdiff.metrics import MetricSuite


@pytest.fixture
def server():
    """A web server on 127.0.0.1 serving ``files`` (path -> bytes); ``requests`` lists the paths asked for."""
    files: dict[str, bytes] = {}
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path not in files:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(files[self.path])))
            self.end_headers()
            self.wfile.write(files[self.path])

        def log_message(self, *args):  # quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_port}", files=files, requests=requests)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch hub's cache in a temporary folder; downloads allowed (tests/conftest.py forbids them)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights.OFFLINE_ENV)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1")
    folder = weights.hub_checkpoints()
    assert folder == tmp_path / "torch" / "hub" / "checkpoints"
    return folder


@pytest.fixture(scope="module")
def alexnet_bytes() -> bytes:
    """A features-only AlexNet state dict (random, seeded) as torch.save writes it."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save({f"features.{k}": v for k, v in alexnet(weights=None).features.state_dict().items()}, buffer)
    return buffer.getvalue()


def serve_alexnet(monkeypatch, server, body: bytes, sha256: str) -> None:
    """Point the table's AlexNet address at ``server``, serving ``body``; the table expects ``sha256``."""
    server.files["/alexnet.pth"] = body
    weight = dataclasses.replace(weights.WEIGHTS["alexnet"], url=f"{server.url}/alexnet.pth", sha256=sha256)
    monkeypatch.setitem(weights.WEIGHTS, "alexnet", weight)


def test_missing_file_is_downloaded_once_into_the_hub_cache(hub, server, monkeypatch, alexnet_bytes, capsys):
    """LPIPS of the training side downloads it; the evaluation suite then finds it there (one lookup)."""
    serve_alexnet(monkeypatch, server, alexnet_bytes, hashlib.sha256(alexnet_bytes).hexdigest()[:8])
    LPIPS("alex")
    assert server.requests == ["/alexnet.pth"]
    assert "downloading alexnet-owt-7be5be79.pth" in capsys.readouterr().err
    assert [p.name for p in hub.iterdir()] == ["alexnet-owt-7be5be79.pth"]  # no temporary file left
    assert (hub / "alexnet-owt-7be5be79.pth").read_bytes() == alexnet_bytes
    suite = MetricSuite(["lpips-alex"])
    assert suite.image_metrics == ["lpips-alex"] and suite.unavailable == {}
    assert server.requests == ["/alexnet.pth"]  # not downloaded again
    a = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert suite.score(a, a)["lpips-alex"] == pytest.approx(0.0, abs=1e-6)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["wrong hash", "not found", "no server"])
def test_a_failed_download_leaves_nothing_and_says_why(hub, server, monkeypatch, case):
    serve_alexnet(monkeypatch, server, b"not AlexNet", weights.WEIGHTS["alexnet"].sha256)  # the real hash
    if case == "not found":
        server.files.clear()
    if case == "no server":
        monkeypatch.setitem(weights.WEIGHTS, "alexnet", dataclasses.replace(
            weights.WEIGHTS["alexnet"], url=f"http://127.0.0.1:{closed_port()}/alexnet.pth"))
    suite = MetricSuite(["psnr-rgb", "lpips-alex"])
    assert suite.image_metrics == ["psnr-rgb"]
    reason = suite.unavailable["lpips-alex"]
    assert reason.startswith("weights not found: alexnet-owt-7be5be79.pth")
    assert "/alexnet.pth failed: " in reason
    assert {"wrong hash": "invalid hash value", "not found": "HTTP Error 404",
            "no server": "Connection refused"}[case] in reason
    assert "failed: " in suite.skipped_line()
    assert list(hub.iterdir()) == []  # no partial or mismatching file


def test_offline_forbids_downloading(hub, server, monkeypatch, alexnet_bytes):
    """``offline=True`` (``corrdiff eval --offline``) and ``CORRDIFF_OFFLINE=1`` ask the server nothing."""
    serve_alexnet(monkeypatch, server, alexnet_bytes, hashlib.sha256(alexnet_bytes).hexdigest()[:8])
    suite = MetricSuite(["lpips-alex"], offline=True)
    assert "downloads are off" in suite.unavailable["lpips-alex"]
    assert "downloads are off" in suite.skipped_line()
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    assert "downloads are off" in MetricSuite(["lpips-alex"]).unavailable["lpips-alex"]
    with pytest.raises(weights.PerceptualUnavailable, match="downloads are off"):
        LPIPS("alex")
    assert server.requests == [] and not hub.exists()
    monkeypatch.setenv(weights.OFFLINE_ENV, "0")
    assert weights.downloads_allowed() and not weights.downloads_allowed(offline=True)


def test_eval_offline_option(hub, server, monkeypatch, alexnet_bytes, tmp_path, model_file, capsys):
    serve_alexnet(monkeypatch, server, alexnet_bytes, hashlib.sha256(alexnet_bytes).hexdigest()[:8])
    (tmp_path / "photos").mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photos" / "a.png")
    code = main(["eval", str(tmp_path / "photos"), "--model", str(model_file), "--modes", "e2e",
                 "--baselines", "none", "--no-matched", "--metrics", "psnr-rgb,lpips-alex", "--no-progress",
                 "--out", str(tmp_path / "out"), "--offline"])
    assert code == 0
    err = capsys.readouterr().err
    assert "skipped lpips-alex: no pretrained weights" in err and "downloads are off" in err
    assert server.requests == []


def test_table_names_the_published_files():
    """The addresses are those torchvision and torch-fidelity download from; the hash is the file name's."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    table = weights.WEIGHTS
    assert table["alexnet"].url == AlexNet_Weights.IMAGENET1K_V1.url
    assert table["vgg16"].url == VGG16_Weights.IMAGENET1K_V1.url
    assert table["inception"].url == URL_INCEPTION_V3
    for weight in table.values():
        assert weight.url.endswith("/" + weight.filename)
        assert weight.filename.endswith(f"-{weight.sha256}.pth")
