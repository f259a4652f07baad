"""The model-file validator (docs/reliability.md): weights finite, entropy tables that keep the coder's
contract, and a stored fingerprint equal to the model's. :func:`~corrdiff.model_io.load_model` runs it on
every file it reads and :func:`~corrdiff.model_io.save_model` before it writes one."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from corrdiff.compressai_parts import EntropyBottleneck, GaussianConditional
from corrdiff.errors import ModelLoadError
from corrdiff.model import CorrDiffModel
from corrdiff.model_io.messages import few
from corrdiff.modules.priors import CODER_PRECISION, MIN_SYMBOLS


def check_model(codec: CorrDiffModel) -> None:
    """The model-file validator: ModelLoadError naming what is wrong, else nothing.

    Weights finite (:func:`check_finite`) and entropy tables that keep the coder's contract
    (:func:`check_entropy_tables`). The stored fingerprint is checked by :func:`~corrdiff.model_io.load_model`.
    """
    check_finite(codec)
    check_entropy_tables(codec)


def check_finite(codec: CorrDiffModel) -> None:
    """ModelLoadError naming the first weights that hold NaN or infinity (a diverged run's export):
    such weights make the entropy coder index outside its tables (a crash) or loop (docs/reliability.md)."""
    bad = not_finite(codec.state_dict())
    if bad:
        raise ModelLoadError(f"weights hold NaN or infinite values: {few(bad)}; the training run that made "
                             "them diverged (export an earlier checkpoint)")


def not_finite(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors of ``state_dict`` that hold NaN or infinity."""
    return [name for name, t in state_dict.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def check_entropy_tables(codec: CorrDiffModel) -> None:
    """ModelLoadError unless every entropy model's tables keep the contract of compressai 1.2.8's coder.

    The C++ rANS coder (``rans_interface.cpp``) trusts its tables: it only ``assert``s them, and
    release builds compile the asserts out, so a forged table reads or writes out of bounds (docs/reliability.md:
    a Gaussian table cut to one row crashed encode and decode; all-zero rows divided by zero). Per
    entropy model (``EntropyBottleneck``, ``GaussianConditional``) this checks:

    * ``_quantized_cdf`` (rows x width), ``_cdf_length`` and ``_offset`` (rows) are int32 with one
      row per table the coder is given an index of: a channel of the bottleneck, a scale of the
      Gaussian's ``scale_table``;
    * every length L satisfies 3 <= L <= width (the coder reads ``cdf[0 .. L-1]``, and ``L - 2``
      is its escape symbol);
    * every row starts at 0, ends at ``cdf[L-1] = 2^16`` (:data:`~corrdiff.modules.priors.CODER_PRECISION`
      is fixed in the C++ source) and strictly increases in between: each symbol has a frequency
      of at least 1 (the encoder divides by it; ``assert_cdfs`` states the same);
    * every offset lies in [-(L - 3), 0]: the coded range contains the mean's symbol, as compressai
      builds it, and keeps values far from int32's limits;
    * ``scale_table`` is finite, positive and strictly increasing;
    * the narrowest latent (1 x 1) still codes :data:`~corrdiff.modules.priors.MIN_SYMBOLS` symbols
      per stream (fewer overrun the encoder's buffer).
    """
    for name, module in codec.named_modules():
        if isinstance(module, (EntropyBottleneck, GaussianConditional)):
            rows = module.channels if isinstance(module, EntropyBottleneck) else module.scale_table.numel()
            problem = table_problem(module, rows)
            if problem:
                raise ModelLoadError(f"the entropy tables of {name} are invalid: {problem}; the model file is "
                                     "damaged (re-export it with `corrdiff export`)")
    counts = getattr(codec.prior, "stream_symbols", None)  # None too for a base codec (no prior)
    if counts is not None and min(counts((1, 1))) < MIN_SYMBOLS:
        raise ModelLoadError(f"the config's latent is too narrow for the entropy coder: a 1 x 1 latent codes "
                             f"{min(counts((1, 1)))} symbols in a stream, it needs at least {MIN_SYMBOLS}")


def table_problem(module: nn.Module, rows: int) -> str | None:
    """What is wrong with one entropy model's tables (see :func:`check_entropy_tables`), or None."""
    cdf, lengths, offsets = module._quantized_cdf, module._cdf_length, module._offset
    for key, t, dims in (("_quantized_cdf", cdf, 2), ("_cdf_length", lengths, 1), ("_offset", offsets, 1)):
        if t.dtype != torch.int32 or t.dim() != dims:
            return f"{key} must be a {dims}-D int32 tensor, got {t.dim()}-D {t.dtype}"
    if not cdf.shape[0] == lengths.numel() == offsets.numel() == rows:
        return (f"{cdf.shape[0]} CDF rows, {lengths.numel()} lengths and {offsets.numel()} offsets "
                f"for {rows} tables")
    width = cdf.shape[1]
    lengths, offsets, cdf = lengths.long(), offsets.long(), cdf.long()
    checks = (
        ((lengths < 3) | (lengths > width), f"CDF length outside 3..{width} (the row width)"),
        ((offsets > 0) | (offsets < 3 - lengths), "offset outside [-(length - 3), 0]"),
    )
    for bad, what in checks:
        if bool(bad.any()):
            return f"row {int(bad.nonzero()[0])}: {what}"
    last = cdf.gather(1, (lengths - 1)[:, None]).squeeze(1)
    inside = torch.arange(1, width)[None, :] < lengths[:, None]  # steps cdf[j] -> cdf[j + 1] within a row
    checks = (
        (cdf[:, 0] != 0, "CDF does not start at 0"),
        (last != 1 << CODER_PRECISION, f"CDF does not end at 2^{CODER_PRECISION}"),
        (((cdf[:, 1:] <= cdf[:, :-1]) & inside).any(1), "CDF does not strictly increase (a symbol of frequency 0)"),
    )
    for bad, what in checks:
        if bool(bad.any()):
            return f"row {int(bad.nonzero()[0])}: {what}"
    if isinstance(module, GaussianConditional):
        scales = module.scale_table
        if not bool(torch.isfinite(scales).all()) or bool((scales <= 0).any()) or bool((scales[1:] <= scales[:-1]).any()):
            return "scale_table must be finite, positive and strictly increasing"
    return None


def check_stored_fingerprint(codec: CorrDiffModel, stored: Any) -> None:
    """ModelLoadError unless ``stored`` (a file's ``fingerprint`` entry; None in older files) is the
    hex of ``codec.fingerprint()``: a config or weights changed after export (with the same shapes,
    e.g. another noise schedule) would otherwise only be caught at decode time."""
    if stored is None:
        return
    actual = codec.fingerprint().hex()
    if not isinstance(stored, str):
        raise ModelLoadError(f"the stored fingerprint must be a hex string, got {type(stored).__name__}")
    if stored != actual:
        raise ModelLoadError(f"the stored fingerprint {stored[:40]} differs from the model's {actual}: its config or "
                             "weights were changed after export (use the exported file, or re-export it)")
