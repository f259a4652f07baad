"""Reading images, writing files atomically.

Input policy (documented in docs/bitstream.md):

* 8-bit RGB from anything Pillow reads (PNG, JPEG, WebP, ...).
* Grayscale (L, I;16, ...) is replicated to three channels; the decoded image is RGB.
* An alpha channel (RGBA, LA, P with transparency) is dropped: corrdiff codes colour only.
* 16-bit images are reduced to 8 bits per channel.
* Files Pillow cannot decode, and images larger than the format allows, raise
  :class:`~corrdiff.errors.ImageReadError`.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from corrdiff.bitstream import MAX_PIXELS, MAX_SIDE
from corrdiff.errors import ImageReadError


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
            img.load()
            return to_rgb8(img, str(path))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageReadError):
            raise
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {exc}") from None


def to_rgb8(img, name: str = "image") -> np.ndarray:
    """Pillow image -> (H, W, 3) uint8, replicating grayscale and dropping alpha."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit modes always span 0..65535; mode "I" (32-bit) is scaled only when it exceeds 8 bits
        sixteen_bit = img.mode.startswith("I;16") or arr.max(initial=0) > 255
        scale = 255.0 / 65535.0 if sixteen_bit else 1.0
        img = Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        warnings.warn(f"{name}: alpha channel dropped (corrdiff codes colour only)", stacklevel=3)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


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
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
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


def check_output(output: str | os.PathLike, protected: "list[str | os.PathLike]", force: bool) -> Path:
    """Refuse, before any work, an output path that would lose data or cannot be written.

    * an output that resolves (symlinks followed) to one of ``protected`` (the command's input
      files, the model file) is refused even with ``force``: writing it would destroy the input;
    * an existing output needs ``force``; a folder is never replaced;
    * the output's folder must exist.
    Returns ``output`` as a Path. Messages name the user's path.
    """
    output = Path(output)
    target = output.resolve()
    for item in protected:
        if item is None or not Path(item).exists():
            continue
        same = os.path.samefile(item, output) if output.exists() else Path(item).resolve() == target
        if same:  # samefile also catches hard links and case-insensitive file systems
            raise FileExistsError(f"{output} is also an input of this command ({item}); "
                                  "choose another output (--force never overwrites an input)")
    if output.is_dir():
        raise IsADirectoryError(f"{output} is a folder; give a file name for the output")
    if (output.exists() or output.is_symlink()) and not force:
        raise FileExistsError(f"{output} exists; pass --force to overwrite")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder for the output {output}")
    return output


def atomic_write(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    An interrupted write never leaves a partial file at ``path``. With
    ``overwrite=False`` an existing file is refused (FileExistsError).
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists (pass --force / overwrite=True to replace it)")
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the output a normal file's mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
