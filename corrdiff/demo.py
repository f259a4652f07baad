"""``corrdiff demo``: compress a photo with the packaged model and compare with AVIF, WebP and JPEG
at the same file size (each at the highest quality whose file is not larger than CorrDiff's).

Writes, into the output folder: ``demo.cdf`` (the bitstream), ``demo.png`` (decoded),
``comparison.png`` (original | CorrDiff | AVIF | WebP | JPEG | the same CorrDiff file decoded with
less correction (half the gammas, ``--gamma-scale 0.5``), with none (diffusion only, gamma = 0) and
without diffusion (the end-to-end decoder only), in rows of three panels, each labelled in a strip
below it), and prints a table of bytes, bpp, PSNR, MS-SSIM and hf-ratio (fine-detail energy relative
to the original, a line under the table says what each column means) and encode/decode times.
Files of an earlier run are replaced only with ``--force``, as by compress.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from corrdiff.baselines import ClassicalResult, available_formats, encode_at_bpp
from corrdiff.files import atomic_write
from corrdiff.image_io import OutputGuard, encode_png, load_image, to_tensor, to_uint8
from corrdiff.metrics import high_frequency_ratio, ms_ssim, psnr
from corrdiff.model_io import load_model, model_path


def demo_image_path() -> Path:
    """The bundled demo photo (a crop of a wallpaper held out of the training set)."""
    return Path(str(resources.files("corrdiff") / "assets" / "demo.png"))


CAPTION_HEIGHT, GAP = 30, 8  # pixels: the label strip under the panels, the space between panels
CLASSICAL = {"avif": "AVIF", "webp": "WebP", "jpeg": "JPEG"}  # compared at the same size, in this order
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


def same_size(rgb: np.ndarray, max_bytes: int) -> list[ClassicalResult]:
    """Each classical codec this Pillow writes (AVIF, WebP, JPEG), at the highest quality whose file is not
    larger than ``max_bytes`` (its lowest quality where none is; that file is then larger)."""
    target_bpp = 8 * max_bytes / (rgb.shape[0] * rgb.shape[1])
    return [encode_at_bpp(rgb, codec, target_bpp) for codec in CLASSICAL if codec in available_formats()]


def run_demo(model: str = "avif", image: str | None = None, out: str = "corrdiff-demo",
             steps: int | None = None, seed: int = 0, force: bool = False) -> dict[str, float]:
    """Run the demo into the folder ``out`` (created if missing). Like compress, it replaces files
    of an earlier run only with ``force`` (``corrdiff demo -f``), and never an input. Returns the
    table's figures: ``bpp``, ``psnr``, ``ms_ssim``, ``hf_ratio`` (CorrDiff), the same prefixed with
    ``avif_``, ``webp_``, ``jpeg_`` (with their ``quality``), and ``encode_s``, ``decode_s``."""
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
    classical = same_size(rgb, len(data))
    variants = [  # the same file, decoded other ways (no extra bits)
        (to_uint8(codec.decompress(data, gamma_scale=0.5)), "CorrDiff, same file, less correction"),
        (to_uint8(codec.decompress(data, mode="diffusion")), "CorrDiff, same file, no correction (diffusion only)"),
        (to_uint8(codec.decompress(data, mode="e2e")), "CorrDiff, same file, no diffusion (end-to-end only)"),
    ]

    atomic_write(cdf_path, data)
    atomic_write(png_path, encode_png(decoded))
    atomic_write(comparison_path, side_by_side([
        (rgb, "original"),
        (decoded, f"CorrDiff ({len(data):,} bytes)"),
        *((r.decoded, f"{CLASSICAL[r.codec]}, {'same size' if len(r.data) <= len(data) else 'smallest file, larger'} "
           f"({len(r.data):,} bytes)") for r in classical),
        *variants,
    ]))

    print(f"{source.name} ({w}x{h}) with model {model!r} [{codec.fingerprint().hex()}], "
          f"{codec.config['steps'] if steps is None else steps} corrected DDIM steps")
    print(f"  beside {', '.join(CLASSICAL[r.codec] for r in classical)} at the same size "
          f"(each at its highest quality whose file is not larger than CorrDiff's):")
    print(f"  {'':10} {'bytes':>7} {'bpp':>7} {'PSNR dB':>8} {'MS-SSIM':>8} {'hf-ratio':>8}")
    figures = {"encode_s": encode_s, "decode_s": decode_s}
    rows = [("", "CorrDiff", data, decoded, "")]
    rows += [(r.codec + "_", f"{CLASSICAL[r.codec]} q{r.quality}", r.data, r.decoded,
              "" if len(r.data) <= len(data) else "  larger: its smallest file") for r in classical]
    for key, name, file, image_hat, note in rows:
        row = {"bpp": 8 * len(file) / (h * w), "psnr": psnr(rgb, image_hat), "ms_ssim": ms_ssim(rgb, image_hat),
               "hf_ratio": high_frequency_ratio(rgb, image_hat)}
        figures.update({key + k: v for k, v in row.items()})
        print(f"  {name:10} {len(file):7d} {row['bpp']:7.4f} {row['psnr']:8.2f} {row['ms_ssim']:8.4f} "
              f"{row['hf_ratio']:8.3f}{note}")
    figures.update({f"{r.codec}_quality": r.quality for r in classical})
    print("  bytes: the file; bpp: 8 x bytes / pixels; PSNR, MS-SSIM: closeness to the original (higher is closer); "
          "hf-ratio: fine-detail energy over the original's (1 = as much, lower = blurrier; blocks and noise raise it)")
    print(f"  encode {encode_s:.2f} s, decode {decode_s:.2f} s (CPU)")
    print(f"  wrote {out_dir / 'demo.cdf'} ({len(data)} bytes), {out_dir / 'demo.png'}, {out_dir / 'comparison.png'}")
    return figures
