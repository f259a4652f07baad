"""Held-out evaluation of the adversarial ablation's models: every decode mode at 2, 4 and 8 steps.

    python experiments/default_model/adversarial_eval.py runs/default_model/adversarial_ablation/*.pt \
        --model default --out experiments/default_model/logs/adversarial

For each model and held-out crop, one file per step count (corrected mode: the encoder's gammas),
decoded corrected, diffusion-only and end-to-end; mean PSNR, MS-SSIM, HaarPSI, hf-ratio, band-pass
distance (corrdiff.metrics.bandpass_distance) and colour error per (model, mode, steps). Writes
``ablation.json``, ``ablation.md`` and ``crops-<mode>-<steps>.png``: per image the 160x160 window
with the most Laplacian energy of the original (chosen before any decode), shown 2x, original then
each model's decode. ``--jobs`` models are evaluated in parallel processes (one thread each); each
model's results are kept in ``OUT/cache/`` (keyed by the model file's name, size and time), so a later
call with more models evaluates only the new ones.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from quality import detailed_window, scores, stacked  # experiments/default_model/quality.py, beside this script

from corrdiff.demo import side_by_side
from corrdiff.image_io import load_image
from corrdiff.metrics import to_tensor, to_uint8
from corrdiff.model_io import load_model
from corrdiff.image_io import find_images

MODES = ("corrected", "diffusion", "e2e")
CROP = 160


def evaluate(model: str, data: Path, steps_list: tuple[int, ...]) -> tuple[dict, dict]:
    torch.set_num_threads(1)
    codec = load_model(model)
    rows: dict[str, list[dict[str, float]]] = {}
    crops: dict[str, list[np.ndarray]] = {}
    for path in find_images(data):
        rgb = load_image(path)
        top, left = detailed_window(rgb, CROP)
        for steps in steps_list:
            data_bytes = codec.compress(to_tensor(rgb), steps=steps)
            bpp = 8 * len(data_bytes) / (rgb.shape[0] * rgb.shape[1])
            for mode in MODES:
                if mode == "e2e" and steps != max(steps_list):
                    continue  # the same image at every step count
                decoded = to_uint8(codec.decompress(data_bytes, mode=mode))
                key = f"{mode}, {steps} steps" if mode != "e2e" else "e2e"
                rows.setdefault(key, []).append({"bpp": bpp, **scores(rgb, decoded)})
                crops.setdefault(key, []).append(decoded[top:top + CROP, left:left + CROP])
    means = {key: {k: float(np.mean([r[k] for r in values])) for k in values[0]} for key, values in rows.items()}
    return means, crops


def cached_evaluate(model: str, data: Path, steps_list: tuple[int, ...], cache: Path) -> tuple[dict, dict]:
    """:func:`evaluate`, or its saved result for the same model file, data and steps."""
    path = Path(model)
    stamp = f"{path.stat().st_size}-{int(path.stat().st_mtime)}" if path.exists() else model
    key = cache / f"{path.stem}-{stamp}-{'_'.join(map(str, steps_list))}-{data.name}.pkl"
    if key.exists():
        return pickle.loads(key.read_bytes())
    result = evaluate(model, data, steps_list)
    cache.mkdir(parents=True, exist_ok=True)
    key.write_bytes(pickle.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="model files")
    parser.add_argument("--model", action="append", default=[], help="more models (names or files)")
    parser.add_argument("--data", type=Path, default=Path("data/default_model/heldout"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", default="2,4,8")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    models = [*args.model, *args.models]
    steps_list = tuple(int(s) for s in args.steps.split(","))
    with ProcessPoolExecutor(args.jobs) as pool:
        results = dict(zip(models, pool.map(cached_evaluate, models, [args.data] * len(models),
                                            [steps_list] * len(models), [args.out / "cache"] * len(models))))
    args.out.mkdir(parents=True, exist_ok=True)
    names = {m: Path(m).stem for m in models}
    (args.out / "ablation.json").write_text(json.dumps({names[m]: r[0] for m, r in results.items()}, indent=2) + "\n")
    lines = ["| model | decode | bpp | PSNR dB | MS-SSIM | HaarPSI | hf-ratio | band-pass dist. | colour error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key in results[models[0]][0]:
        for model in models:
            m = results[model][0][key]
            lines.append(f"| {names[model]} | {key} | {m['bpp']:.3f} | {m['psnr']:.2f} | {m['ms_ssim']:.4f} | "
                         f"{m['haarpsi']:.4f} | {m['hf_ratio']:.3f} | {m['bandpass']:.3f} | {m['colour_error']:.2f} |")
    (args.out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    originals = [load_image(p) for p in find_images(args.data)]
    windows = [detailed_window(rgb, CROP) for rgb in originals]
    for key in results[models[0]][1]:
        sheet_rows = []
        for i, (rgb, (top, left)) in enumerate(zip(originals, windows)):
            panels = [(rgb[top:top + CROP, left:left + CROP], "original")]
            panels += [(results[m][1][key][i], names[m]) for m in models]
            panels = [(np.kron(p, np.ones((2, 2, 1), dtype=np.uint8)), label) for p, label in panels]
            sheet_rows.append(Image.open(io.BytesIO(side_by_side(panels))))
        stacked(sheet_rows).save(args.out / f"crops-{key.replace(', ', '-').replace(' ', '')}.png")


if __name__ == "__main__":
    main()
