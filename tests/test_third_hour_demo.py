"""A new user's first steps: ``corrdiff demo`` compares CorrDiff with AVIF and WebP at the same file size
(not only JPEG), says what its columns mean and labels its pictures in words (corrdiff/demo.py); the README
gives one install line per machine and a Python snippet that runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import corrdiff.demo as demo
from corrdiff.baselines import available_formats
from corrdiff.image_io import load_image


def test_demo_lists_avif_and_webp_at_the_same_size_with_plain_labels(tmp_path, capsys, monkeypatch):
    src = tmp_path / "photo.png"
    Image.fromarray(load_image(demo.demo_image_path())[128:256, 256:448]).save(src)
    labels: list[str] = []
    side_by_side = demo.side_by_side
    monkeypatch.setattr(demo, "side_by_side",
                        lambda panels: labels.extend(p[1] for p in panels) or side_by_side(panels))

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


# --------------------------------------------------------------------------- the README's install and snippet
README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_gives_one_install_line_per_machine_and_says_why_numpy_is_below_2():
    text = README.read_text()
    install = text[text.index("## Two commands"):text.index("## Results of the shipped models")]
    lines = [b.strip() for b in re.findall(r"```bash\n(.*?)```", install, flags=re.S)]
    cuda, cpu = lines[0], lines[2]
    assert cuda.endswith("corrdiff demo") and cpu.endswith("corrdiff demo") and "\n" not in cpu
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu and "whl/cpu" not in cuda
    assert "With an NVIDIA GPU" in install and "Without a GPU" in install
    assert "project's CPU machines" not in install  # nothing an outsider cannot act on
    assert "numpy<2" in install and "compressai" in install and "no released compressai supports numpy 2" in install


def test_readme_python_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    """The snippet reads photo.png itself (load_image: HWC uint8, which encode takes directly) and runs."""
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
                   if "load_image(\"photo.png\")" in b)
    assert 'load_image("photo.png")' in snippet
    Image.fromarray(load_image(demo.demo_image_path())[128:192, 256:352]).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    assert load_image(tmp_path / "photo.decoded.png").shape == (64, 96, 3)
    assert (tmp_path / "photo.cdf").read_bytes() == namespace["result"].data
    assert torch.equal(namespace["image_hat"], namespace["result"].reconstruction)
    assert len(namespace["small"].data) <= 20_000 and "corrdiff registries" in capsys.readouterr().out
