"""``corrdiff demo``: compress a photo with the packaged model and compare with JPEG at the same rate.

Writes, into the output folder: ``demo.cdf`` (the bitstream), ``demo.png`` (decoded),
``comparison.png`` (original | CorrDiff | the same file decoded with half the gammas
(``--gamma-scale 0.5``), diffusion only (gamma = 0) and end-to-end only | JPEG at the same bpp,
in rows of three panels, each labelled in a strip below it), and prints bpp, PSNR, MS-SSIM, sharpness
and encode/decode times. Files of an earlier run are replaced only with ``--force``, as by compress.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from corrdiff.baselines import encode_at_bpp
from corrdiff.files import atomic_write
from corrdiff.image_io import OutputGuard, encode_png, load_image, to_tensor, to_uint8
from corrdiff.metrics import high_frequency_ratio, ms_ssim, psnr
from corrdiff.model_io import load_model, model_path


def demo_image_path() -> Path:
    """The bundled demo photo (a crop of a wallpaper held out of the training set)."""
    return Path(str(resources.files("corrdiff") / "assets" / "demo.png"))


CAPTION_HEIGHT, GAP = 30, 8  # pixels: the label strip under the panels, the space between panels
COLUMNS = 3  # panels per row of comparison.png: six 768-pixel panels in one row were 4648 pixels wide


def side_by_side(panels: list[tuple[np.ndarray, str]], columns: int = COLUMNS) -> bytes:
    """Panels in a grid of ``columns`` per row, each label centred in a white strip below its panel
    (never over the image), as PNG bytes."""
    from PIL import ImageFont

    font = ImageFont.load_default(size=18)
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    cell_w, cell_h = max(p.shape[1] for p, _ in panels), max(p.shape[0] for p, _ in panels) + CAPTION_HEIGHT
    canvas = Image.new("RGB", (columns * cell_w + GAP * (columns - 1), rows * cell_h + GAP * (rows - 1)),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for index, (rgb, label) in enumerate(panels):
        x, y = (index % columns) * (cell_w + GAP), (index // columns) * (cell_h + GAP)
        canvas.paste(Image.fromarray(rgb), (x, y))
        draw.text((x + rgb.shape[1] / 2, y + rgb.shape[0] + CAPTION_HEIGHT / 2), label, fill=(0, 0, 0), font=font,
                  anchor="mm")
    return encode_png(np.asarray(canvas))


def run_demo(model: str = "default", image: str | None = None, out: str = "corrdiff-demo",
             steps: int | None = None, seed: int = 0, force: bool = False) -> dict[str, float]:
    """Run the demo into the folder ``out`` (created if missing). Like compress, it replaces files
    of an earlier run only with ``force`` (``corrdiff demo -f``), and never an input."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = Path(image) if image else demo_image_path()
    guard = OutputGuard([source, model_path(model)], force=force)
    cdf_path, png_path, comparison_path = (guard.check(out_dir / n) for n in ("demo.cdf", "demo.png", "comparison.png"))
    rgb = load_image(source)
    codec = load_model(model)
    h, w = rgb.shape[:2]

    start = time.perf_counter()
    data = codec.compress(to_tensor(rgb), steps=steps, seed=seed)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = to_uint8(codec.decompress(data))
    decode_s = time.perf_counter() - start
    bpp = 8 * len(data) / (h * w)
    jpeg = encode_at_bpp(rgb, "jpeg", bpp)
    variants = [  # the same file, decoded other ways (no extra bits)
        (to_uint8(codec.decompress(data, gamma_scale=0.5)), "gamma x 0.5"),
        (to_uint8(codec.decompress(data, mode="diffusion")), "diffusion only"),
        (to_uint8(codec.decompress(data, mode="e2e")), "end-to-end only"),
    ]

    atomic_write(cdf_path, data)
    atomic_write(png_path, encode_png(decoded))
    atomic_write(comparison_path, side_by_side([
        (rgb, "original"),
        (decoded, f"CorrDiff {bpp:.3f} bpp"),
        *variants,
        (jpeg.decoded, f"JPEG q{jpeg.quality} {jpeg.bpp:.3f} bpp"),
    ]))
    figures = {
        "bpp": bpp, "psnr": psnr(rgb, decoded), "ms_ssim": ms_ssim(rgb, decoded),
        "sharpness": high_frequency_ratio(rgb, decoded), "encode_s": encode_s, "decode_s": decode_s,
        "jpeg_bpp": jpeg.bpp, "jpeg_psnr": psnr(rgb, jpeg.decoded), "jpeg_ms_ssim": ms_ssim(rgb, jpeg.decoded),
        "jpeg_sharpness": high_frequency_ratio(rgb, jpeg.decoded),
    }
    print(f"{source.name} ({w}x{h}) with model {model!r} [{codec.fingerprint().hex()}], "
          f"{codec.config['steps'] if steps is None else steps} corrected DDIM steps")
    print(f"  {'':10} {'bpp':>7} {'PSNR dB':>8} {'MS-SSIM':>8} {'sharpness':>9}")
    print(f"  {'CorrDiff':10} {bpp:7.4f} {figures['psnr']:8.2f} {figures['ms_ssim']:8.4f} {figures['sharpness']:9.3f}")
    print(f"  {'JPEG q' + str(jpeg.quality):10} {jpeg.bpp:7.4f} {figures['jpeg_psnr']:8.2f} "
          f"{figures['jpeg_ms_ssim']:8.4f} {figures['jpeg_sharpness']:9.3f}")
    print(f"  encode {encode_s:.2f} s, decode {decode_s:.2f} s (CPU)")
    print(f"  wrote {out_dir / 'demo.cdf'} ({len(data)} bytes), {out_dir / 'demo.png'}, {out_dir / 'comparison.png'}")
    return figures
