"""What the benchmark measures on: the model (``--model``), images and training batches made from
the bundled photo."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from corrdiff.bench.settings import PRESET_PREFIX, BenchmarkError
from corrdiff.image_io import load_image, to_model_range, to_tensor


def demo_photo() -> np.ndarray:
    """The bundled photo (768x512), (H, W, 3) uint8."""
    from corrdiff.demo import demo_image_path

    return load_image(demo_image_path())


def bench_image(width: int, height: int, photo: np.ndarray | None = None) -> np.ndarray:
    """A ``width`` x ``height`` photo from the bundled one, (H, W, 3) uint8.

    Smaller than the photo in both directions: scaled down (Lanczos) to cover, centre-cropped.
    Otherwise: tiled with mirrored copies (``np.pad(mode="symmetric")``, no seams), cropped.
    """
    photo = demo_photo() if photo is None else photo
    ph, pw = photo.shape[:2]
    if width <= pw and height <= ph:
        scale = max(width / pw, height / ph)
        size = (max(width, round(pw * scale)), max(height, round(ph * scale)))
        scaled = np.asarray(Image.fromarray(photo).resize(size, Image.LANCZOS))
        top, left = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
        return np.ascontiguousarray(scaled[top : top + height, left : left + width])
    padded = np.pad(photo, ((0, max(0, height - ph)), (0, max(0, width - pw)), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(padded[:height, :width])


def training_batch(batch_size: int, crop: int, seed: int = 0,
                   photo: np.ndarray | None = None) -> torch.Tensor:
    """``batch_size`` random ``crop`` x ``crop`` crops of the bundled photo, in [-1, 1] (training's range)."""
    photo = demo_photo() if photo is None else photo
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    crops = []
    for _ in range(batch_size):
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        crops.append(to_tensor(photo[top : top + crop, left : left + crop]))
    return to_model_range(torch.cat(crops))


def load_bench_model(spec: str):
    """A CorrDiff codec by ``--model``: model file, packaged name, or ``preset:NAME`` (untrained, seed 0)."""
    if spec.startswith(PRESET_PREFIX):
        from corrdiff.codec import CorrDiffCodec
        from corrdiff.presets import preset

        try:
            config = preset(spec[len(PRESET_PREFIX):])
        except KeyError as exc:
            raise BenchmarkError(f"--model {spec}: {exc.args[0]}") from None
        torch.manual_seed(0)
        codec = CorrDiffCodec(**config)
        codec.update(force=True)
        return codec.eval()
    from corrdiff.model_io import load_model

    return load_model(spec)


def model_summary(spec: str, codec) -> dict[str, Any]:
    """The model's identity in the results: spec, fingerprint, config, parameter count, untrained or not."""
    return {"spec": spec, "fingerprint": codec.fingerprint().hex(), "config": codec.config,
            "parameters": sum(p.numel() for p in codec.parameters()),
            "untrained": spec.startswith(PRESET_PREFIX)}
