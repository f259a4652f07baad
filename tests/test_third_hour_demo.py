"""``corrdiff demo`` compares CorrDiff with AVIF and WebP at the same file size (not only JPEG), says what
its columns mean and labels its pictures in words (corrdiff/demo.py)."""

from __future__ import annotations

import numpy as np
from PIL import Image

import corrdiff.demo as demo
from corrdiff.baselines import available_formats
from corrdiff.image_io import load_image


def test_demo_lists_avif_and_webp_at_the_same_size_with_plain_labels(tmp_path, capsys, monkeypatch):
    src = tmp_path / "photo.png"
    Image.fromarray(load_image(demo.demo_image_path())[128:256, 256:448]).save(src)
    labels: list[str] = []
    side_by_side = demo.side_by_side
    monkeypatch.setattr(demo, "side_by_side", lambda panels: labels.extend(p[1] for p in panels) or side_by_side(panels))

    figures = demo.run_demo(image=str(src), out=str(tmp_path / "out"), steps=1)
    out = capsys.readouterr().out
    size = (tmp_path / "out" / "demo.cdf").stat().st_size
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    assert {"avif", "webp"} <= set(available_formats())
    for name in ("AVIF", "WebP", "JPEG"):
        quality, file_bytes = int(rows[name][1][1:]), int(rows[name][2])
        assert file_bytes <= size and figures[f"{name.lower()}_quality"] == quality
        assert f"{name}, same size ({file_bytes:,} bytes)" in labels
    assert int(rows["CorrDiff"][1]) == size
    assert "at the same size" in out and "hf-ratio: fine-detail energy" in out and "sharpness" not in out
    assert labels[:2] == ["original", f"CorrDiff ({size:,} bytes)"]
    assert "CorrDiff, same file, less correction" in labels and not any("gamma" in label for label in labels)
    assert load_image(tmp_path / "out" / "comparison.png").shape == (3 * (128 + demo.CAPTION_HEIGHT) + 2 * demo.GAP,
                                                                     3 * 192 + 2 * demo.GAP, 3)
    assert np.isfinite(figures["avif_psnr"]) and figures["bpp"] == 8 * size / (128 * 192)


def test_same_size_takes_the_highest_quality_not_larger():
    from corrdiff.baselines import to_bytes

    rgb = load_image(demo.demo_image_path())[:64, :96]
    for result in demo.same_size(rgb, 600):
        assert len(result.data) <= 600 or result.quality == 1
        if result.quality < 100 and len(result.data) <= 600:
            assert len(to_bytes(rgb, result.codec, result.quality + 1)) > 600
