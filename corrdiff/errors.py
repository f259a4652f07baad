"""The exceptions corrdiff raises on bad input. All derive from :class:`CorrDiffError`.

The command line turns any of them into a one-line message and exit status 2.
"""


class CorrDiffError(Exception):
    """Base class of corrdiff's documented errors about user input."""


class BitstreamError(CorrDiffError, ValueError):
    """A ``.cdf`` file is truncated, corrupted, of another format or version, or for another model."""


class ModelMismatchError(BitstreamError):
    """The file was encoded with a different model (its fingerprint differs)."""


class ImageReadError(CorrDiffError, ValueError):
    """An input is not a readable image (or has an unsupported size)."""


class ModelLoadError(CorrDiffError, ValueError):
    """A model file or checkpoint cannot be loaded (not found, pickled payload, mismatched config/keys)."""


class DeviceError(CorrDiffError, ValueError):
    """A device (``--device``) that is unknown or not available on this machine (e.g. CUDA without a GPU)."""


class EntropyCoderError(CorrDiffError, ValueError):
    """The model gave the entropy coder values it cannot code: non-finite scales, means or latents,
    or latents beyond the coder's range (a damaged or diverged model, or a hostile stream)."""
