"""Reading images; writing them (atomically, by corrdiff/files.py); the output path guard.

Input policy (documented in docs/bitstream.md):

* 8-bit RGB from anything Pillow reads (PNG, JPEG, WebP, ...).
* Grayscale (L, I;16, ...) is replicated to three channels; the decoded image is RGB.
* An alpha channel (RGBA, LA, P with transparency) is dropped: corrdiff codes colour only.
* 16-bit images are reduced to 8 bits per channel, and CMYK images converted to RGB, each with a note (a
  warning) as for a dropped alpha channel: the file codes less than the input held.
* Files Pillow cannot decode, and images larger than the format allows, raise
  :class:`~corrdiff.errors.ImageReadError`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from corrdiff.bitstream import MAX_PIXELS, MAX_SIDE
from corrdiff.errors import ImageReadError
from corrdiff.files import atomic_write

#: the suffixes of the image files that :func:`find_images` collects from a folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")


def find_images(folders: str | os.PathLike | Sequence[str | os.PathLike],
                suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files (:data:`IMAGE_SUFFIXES`, or other ``suffixes`` such as ``.cdf``) under one folder or
    several, recursively, sorted by path. FileNotFoundError for a folder that does not exist."""
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    files: list[Path] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        files += [p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file()]
    return sorted(files)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as an (H, W, 3) uint8 array, following the module's input policy."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image")
    try:
        with Image.open(path) as img:
            width, height = img.size
            if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height > MAX_PIXELS:
                raise ImageReadError(f"{path}: {width}x{height} is outside the supported size (sides up to {MAX_SIDE})")
            if not img.mode.startswith("I") and _reads_16_bit_samples(img):  # (to_rgb8 notes modes I and I;16)
                warnings.warn(f"{path}: {SIXTEEN_BIT_NOTE}", stacklevel=2)
            img.load()
            return to_rgb8(img, str(path))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageReadError):
            raise
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {exc}") from None


#: the notes of conversions that lose what the input held (warnings; ``corrdiff compress`` prints them as notes)
SIXTEEN_BIT_NOTE = "16-bit samples reduced to 8 bits (corrdiff codes 8 bits per channel)"
CMYK_NOTE = ("CMYK converted to RGB without a colour profile (corrdiff codes RGB): colours may differ from the "
             "original's")


def _reads_16_bit_samples(img) -> bool:
    """Whether an unloaded image holds 16-bit samples that its mode does not show: Pillow opens 48-bit PNG and
    TIFF files as 8-bit RGB (and 16-bit RGBA, LA likewise), and only the raw mode of their decoder tiles
    (``RGB;16B``, ``RGB;16L``) tells."""
    for tile in getattr(img, "tile", None) or []:
        raw = tile.args[0] if isinstance(tile.args, tuple) and tile.args else tile.args
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def to_rgb8(img, name: str = "image") -> np.ndarray:
    """Pillow image -> (H, W, 3) uint8, replicating grayscale and dropping alpha; a warning for each
    conversion that loses what the input held (alpha, 16-bit samples, CMYK), so that no input loses it silently."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit modes always span 0..65535; mode "I" (32-bit) is scaled only when it exceeds 8 bits
        sixteen_bit = img.mode.startswith("I;16") or arr.max(initial=0) > 255
        scale = 255.0 / 65535.0 if sixteen_bit else 1.0
        if sixteen_bit:
            warnings.warn(f"{name}: {SIXTEEN_BIT_NOTE}", stacklevel=3)
        img = Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        warnings.warn(f"{name}: alpha channel dropped (corrdiff codes colour only)", stacklevel=3)
    if img.mode == "CMYK":
        warnings.warn(f"{name}: {CMYK_NOTE}", stacklevel=3)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def hwc_to_nchw(array: np.ndarray) -> "torch.Tensor":
    """(H, W, C) array -> (1, C, H, W) tensor of the same dtype (a view when the array allows it)."""
    import torch

    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # e.g. np.asarray of a Pillow image; torch warns about read-only arrays
        array = array.copy()
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def to_tensor(rgb: np.ndarray) -> "torch.Tensor":
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]: the one image -> tensor conversion of corrdiff."""
    return hwc_to_nchw(rgb).float() / 255.0


def to_uint8(image: "torch.Tensor") -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8 (clamped, rounded): the inverse of :func:`to_tensor`."""
    return (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()


def to_model_range(image: "torch.Tensor") -> "torch.Tensor":
    """An image in [0, 1] -> [-1, 1], the range the model works in (``image * 2 - 1``)."""
    return image * 2 - 1


def to_image_range(x: "torch.Tensor") -> "torch.Tensor":
    """The inverse of :func:`to_model_range`: [-1, 1] -> [0, 1] (``(x + 1) / 2``, not clamped)."""
    return (x + 1) / 2


#: float images may overshoot [0, 1] by this much (half an 8-bit level) and are clamped; beyond, refused
FLOAT_RANGE_TOLERANCE = 0.5 / 255


def as_image_tensor(image) -> "torch.Tensor":
    """What :meth:`CorrDiffCodec.encode` accepts, as a (1, 3, H, W) float32 tensor in [0, 1]:

    * a float tensor (1, 3, H, W) or (3, H, W) with values in [0, 1] (as in compressai);
    * a uint8 tensor of those shapes (divided by 255);
    * a numpy array (H, W, 3) or (H, W) (gray, replicated), uint8 or float in [0, 1];
    * a Pillow image (converted like a file: :func:`to_rgb8`).

    A float image outside [0, 1] (e.g. 0..255 floats) raises ValueError saying so instead of
    being clipped to a white picture.
    """
    import torch

    from PIL import Image

    if isinstance(image, Image.Image):
        image = to_rgb8(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) or (H, W) array, got shape {image.shape}")
        image = hwc_to_nchw(image)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected a tensor, numpy array or PIL image, got {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected one RGB image of shape (1, 3, H, W), got {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image.float() / 255
    if not image.is_floating_point():
        raise ValueError(f"expected a uint8 or float image, got dtype {image.dtype}")
    image = image.float()
    if not bool(torch.isfinite(image).all()):
        raise ValueError("image contains NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    if lo < -FLOAT_RANGE_TOLERANCE or hi > 1 + FLOAT_RANGE_TOLERANCE:
        hint = " (it looks like 0..255: divide by 255 or pass a uint8 tensor)" if hi > 2 else ""
        raise ValueError(f"a float image must hold values in [0, 1], got [{lo:.4g}, {hi:.4g}]{hint}")
    return image.clamp(0, 1)


class OutputGuard:
    """The one path guard of every command that writes (compress, decompress, export, demo, eval, bench):
    refuses, before any work, an output that would lose data or cannot be written.

    * an output that is one of ``protected`` (the command's inputs, the model file), also through a
      hard link, a symbolic link or another spelling of the name, is refused even with ``force``:
      writing it would destroy the input;
    * a symbolic link as output is refused, dangling or not, with or without ``force``: corrdiff
      neither replaces a link by a file nor writes through it into a file elsewhere;
    * an existing output needs ``force``; a folder is never replaced; the output's folder must exist.

    Messages name the user's path. The protected files are identified once (device and inode), so a
    guard checks many outputs cheaply (eval).
    """

    def __init__(self, protected: "Iterable[str | os.PathLike | None]", force: bool):
        self.force = force
        self._protected: dict[tuple[int, int], str] = {}
        for item in protected:
            if item is not None and Path(item).exists():
                st = os.stat(item)
                self._protected.setdefault((st.st_dev, st.st_ino), str(item))

    def check(self, output: str | os.PathLike) -> Path:
        """Raise FileExistsError / IsADirectoryError / FileNotFoundError as the class says; return ``output`` as a Path."""
        output = Path(output)
        if output.exists():  # follows links: a link to an input is named as such
            st = os.stat(output)
            item = self._protected.get((st.st_dev, st.st_ino))
            if item is not None:
                raise FileExistsError(f"{output} is also an input of this command ({item}); "
                                      "choose another output (--force never overwrites an input)")
        if output.is_symlink():
            raise FileExistsError(f"{output} is a symbolic link; corrdiff neither replaces links nor writes through "
                                  "them: give the path of a regular file")
        if output.is_dir():
            raise IsADirectoryError(f"{output} is a folder; give a file name for the output")
        if output.exists() and not self.force:
            raise FileExistsError(f"{output} exists; pass --force to overwrite")
        folder = output.parent if str(output.parent) else Path(".")
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder for the output {output}")
        return output


def check_output(output: str | os.PathLike, protected: "Iterable[str | os.PathLike | None]", force: bool) -> Path:
    """:meth:`OutputGuard.check` of one output (the guard's rules are in :class:`OutputGuard`)."""
    return OutputGuard(protected, force).check(output)


def encode_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 (RGB) or (H, W) uint8 (gray) -> PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def save_image(path: str | os.PathLike, rgb: np.ndarray, overwrite: bool = True) -> None:
    """Write an (H, W, 3) or (H, W) (gray) uint8 array as PNG, atomically."""
    atomic_write(path, encode_png(rgb), overwrite=overwrite)
