"""Crops of the variable-rate model's three decodes of one file beside WebP and AVIF at its bpp.

    python experiments/variable_rate/modes_sheet.py   # -> docs/variable_rate/modes.png
    python experiments/variable_rate/modes_sheet.py variable-v1 docs/variable_rate/v1/modes.png

Per held-out photo and qualities 3 and 9: the window with most detail (quality.py's choice, from the original
alone), 1x: original | corrected | diffusion only | end-to-end (one file, three decodes) | WebP | AVIF at the
highest quality not above that file's bpp (their own bpp in the label: WebP cannot go below about 0.13).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

from corrdiff.baselines import encode_at_bpp
from corrdiff.demo import side_by_side
from corrdiff.image_io import find_images, load_image, to_uint8
from corrdiff.model_io import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "default_model"))
from quality import CROP, detailed_window, stacked  # noqa: E402 (the crop window and sheet of quality.py)

QUALITIES = (3.0, 9.0)


def main(model: str = "variable", out: Path = Path("docs/variable_rate/modes.png")) -> None:
    codec = load_model(model)
    rows = []
    for path in find_images("data/default_model/heldout"):
        rgb = load_image(path)
        top, left = detailed_window(rgb)
        window = (slice(top, top + CROP), slice(left, left + CROP))
        for quality in QUALITIES:
            result = codec.encode(rgb, quality=quality)
            panels = [(rgb, path.stem)]
            for mode in ("corrected", "diffusion", "e2e"):
                panels.append((to_uint8(codec.decompress(result.data, mode=mode)),
                               f"q{quality:g} {mode} {result.bpp():.3f}"))
            for fmt in ("webp", "avif"):
                classical = encode_at_bpp(rgb, fmt, result.bpp())
                panels.append((classical.decoded, f"{fmt} {classical.bpp:.3f}"))
            rows.append(Image.open(io.BytesIO(side_by_side([(p[window], label) for p, label in panels],
                                                           columns=len(panels)))))
    stacked(rows).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2], *(Path(a) for a in sys.argv[2:3]))
