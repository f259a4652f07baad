"""Regenerate the golden files of tests/test_reliability.py (only on purpose).

    CORRDIFF_REGENERATE_GOLDEN=1 python tests/golden/make_golden.py

Writes, next to this script:

* ``model.pt``: a deliberately small model (widths 8-16, seeded random weights, every layer
  non-zero so that all of them take part in decoding), written with ``corrdiff.save_model``;
* ``model-rate.pt``: the same model made variable-rate (``RATE_CONFIG``, seeded random gains and
  modulation, docs/variable_rate.md), written when missing like ``model.pt``;
* ``golden-v{N}.cdf`` (N: the current format version): a 96x128 crop of scikit-image's astronaut,
  compressed in corrected mode (4 steps, 32-pixel tile gamma maps, so that the tile coding is
  pinned too) with 2 torch threads; from version 4 on by ``model-rate.pt`` at quality ``QUALITY``
  (so that the quality record and the gains are pinned too);
* ``decoded-v{N}.png``: the image ``decompress`` gives, with 1 torch thread, on the machine that
  generated the files;
* ``expected-v{N}.json``: SHA-256 digests of z_hat and y_hat (the entropy-decoded part: must not
  change on any machine, with any thread count), of the decoded image's float32 bytes (must not
  change on the same machine with the same thread count: float convolutions round differently
  with other thread counts and CPUs), the header fields, and the platform that generated them.

The files of an older format version stay as they are (``golden.cdf``, ``decoded.png`` and
``expected.json`` are version 1's, scalar gammas): they prove that old files keep decoding bit
for bit. ``model.pt`` is only written when missing (``--new-model`` rebuilds it, which
invalidates every older golden file: only for a model-format change).

Regenerate only when the file format or the model format changes on purpose (and bump the
format version when the bytes' meaning changes); otherwise a failing golden test is a bug.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = {
    "latent_channels": 8,
    "encoder": {"name": "gdn", "channels": 8},
    "decoder": {"name": "gdn", "channels": 8},
    "prior": {"name": "mean_scale_hyperprior", "hyper_channels": 8, "scale_max": 32.0, "scale_levels": 48},
    "conditioner": {"name": "pyramid", "channels": [8, 8], "width": 8},
    "score_net": {"name": "unet", "base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1},
    "schedule": {"name": "linear"},
    "sampler": {"name": "ddim", "eta": 0.0},
    "steps": 4,
}
RATE_CONFIG = {**CONFIG, "rate": {"lambdas": [4.0, 2.0, 1.0, 0.5], "default_quality": 2.0}}
QUALITY = 2.625  # between two trained qualities: the interpolation is pinned as well
ENCODE_THREADS = 2
DECODE_THREADS = 1  # the tests' thread count (tests/conftest.py)
SEED = 1234


def digest(tensor) -> str:
    """SHA-256 of a tensor's float32 bytes (C order, little-endian)."""
    import numpy as np
    import torch

    array = tensor.detach().to(torch.float32).cpu().contiguous().numpy()
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").tobytes()).hexdigest()


def platform_signature() -> dict[str, str]:
    """What 'the same machine' means for the image digest: CPU, OS, torch build and its CPU kernels."""
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "cpu": cpu,
        "torch": torch.__version__,
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
    }


def latents(codec, data: bytes):
    """(z_hat, y_hat) as the decoder entropy-decodes them from a file."""
    import torch

    header, y_hat = codec.read(data)
    z_hw = tuple(-(-s // 4) for s in y_hat.shape[-2:])
    with torch.no_grad():
        z_hat = codec.prior.entropy_bottleneck.decompress([header.streams[0]], z_hw)
    return z_hat, y_hat


def build_model(image, config=None):
    """Seeded random weights; the analysis layers scaled so that z and y spread over many symbols."""
    import torch
    from torch import nn

    import corrdiff

    torch.manual_seed(SEED)
    codec = corrdiff.CorrDiffCodec(**(config or CONFIG))
    with torch.no_grad():
        for param in codec.parameters():
            if not param.abs().sum():  # zero-initialised output layers: give them weights too
                param.normal_(0.0, 0.05)
        if codec.rate_control is not None:  # gains that differ per channel and quality
            for table in (codec.rate_control.log_gain, codec.rate_control.log_inverse_gain):
                table.add_(torch.randn_like(table) * 0.2)
        x = codec.pad(image * 2 - 1)
        for analysis, target in ((codec.encoder, 6.0), (codec.prior.h_a, 3.0)):
            last = [m for m in analysis.modules() if isinstance(m, nn.Conv2d)][-1]
            out = codec.encoder(x) if analysis is codec.encoder else codec.prior.h_a(codec.encoder(x))
            factor = target / float(out.std())
            last.weight.mul_(factor)
            last.bias.mul_(factor)
    codec.update(force=True)
    return codec.eval()


def golden_names(version: int) -> dict[str, str]:
    """File names of the golden set of a format version (version 1's predate the suffix) and its model's."""
    suffix = "" if version == 1 else f"-v{version}"
    model = "model-rate.pt" if version >= 4 else "model.pt"
    return {"cdf": f"golden{suffix}.cdf", "png": f"decoded{suffix}.png", "json": f"expected{suffix}.json",
            "model": model}


def main() -> int:
    if os.environ.get("CORRDIFF_REGENERATE_GOLDEN") != "1":
        print("refusing to overwrite the golden files: set CORRDIFF_REGENERATE_GOLDEN=1 to regenerate them "
              "(only when the file or model format changes on purpose)", file=sys.stderr)
        return 1
    import numpy as np
    import torch
    from skimage import data as skdata

    import corrdiff
    from corrdiff import bitstream
    from corrdiff.image_io import save_image

    torch.set_num_threads(ENCODE_THREADS)
    rgb = np.ascontiguousarray(skdata.astronaut()[::4, ::4][16:112, :])  # (96, 128, 3)
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255
    names = golden_names(bitstream.VERSION)
    variable = names["model"] == "model-rate.pt"
    if "--new-model" in sys.argv or not (HERE / names["model"]).exists():
        codec = build_model(image, RATE_CONFIG if variable else CONFIG)
        corrdiff.save_model(codec, HERE / names["model"], metadata={"purpose": "golden test model (random weights)"})
    codec = corrdiff.load_model(HERE / names["model"])  # exactly what the test loads
    result = codec.encode(image, seed=7, gamma={"granularity": "tile-32"}, quality=QUALITY if variable else None)
    (HERE / names["cdf"]).write_bytes(result.data)

    assert torch.equal(codec.decompress(result.data), result.reconstruction)  # same threads: exact
    torch.set_num_threads(DECODE_THREADS)
    decoded = codec.decompress(result.data)
    save_image(HERE / names["png"], (decoded[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy())
    z_hat, y_hat = latents(codec, result.data)
    header = bitstream.unpack(result.data)
    expected = {
        "format_version": bitstream.VERSION,
        "fingerprint": codec.fingerprint().hex(),
        "header": {"height": header.height, "width": header.width, "mode": header.mode, "sampler": header.sampler,
                   "steps": header.steps, "sampler_params": list(header.sampler_params), "seed": header.seed,
                   "gammas": list(header.gammas), "quality": header.quality},
        "file_sha256": hashlib.sha256(result.data).hexdigest(),
        "z_hat_shape": list(z_hat.shape),
        "z_hat_sha256": digest(z_hat),
        "y_hat_shape": list(y_hat.shape),
        "y_hat_sha256": digest(y_hat),
        "image_sha256": digest(decoded),
        "encode_threads": ENCODE_THREADS,
        "image_threads": DECODE_THREADS,
        "platform": platform_signature(),
    }
    (HERE / names["json"]).write_text(json.dumps(expected, indent=1) + "\n")
    for path in HERE.iterdir():
        if path.suffix in (".pt", ".cdf", ".png", ".json"):
            path.chmod(0o644)
    sizes = {p.name: p.stat().st_size for p in sorted(HERE.iterdir()) if p.is_file()}
    print(json.dumps(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
