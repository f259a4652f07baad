"""Weights into a codec: a state dict's keys made plain (wrapper prefixes stripped, a sub-module's part
taken), then loaded strictly, with the entropy coder's table buffers resized to the stored tables."""

from __future__ import annotations

from typing import Mapping

import torch

from corrdiff.compressai_parts import EntropyBottleneck, GaussianConditional
from corrdiff.errors import ModelLoadError
from corrdiff.model import CorrDiffModel
from corrdiff.model_io.messages import few, first_line

#: the entropy models' table buffers, stored at the size they were built with
ENTROPY_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = ("module.",)) -> dict:
    """Drop wrapper prefixes such as DDP's ``module.`` from every key."""
    out = {}
    for key, value in state_dict.items():
        for prefix in prefixes:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def under_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` whose keys start with ``prefix``, keyed without it: a training module's
    ``codec.*`` weights as the codec's, its ``ema.module.*`` as the score network's."""
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def load_codec_state(codec: CorrDiffModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strictly load weights into ``codec``, resizing the entropy coder's table buffers first.

    Raises ModelLoadError naming missing and unexpected keys.
    """
    if not isinstance(state_dict, Mapping) or not all(isinstance(k, str) for k in state_dict):
        raise ModelLoadError(f"weights must be a dict of tensors by name, got {type(state_dict).__name__}")
    state_dict = strip_prefixes(state_dict)
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ModelLoadError(f"weights must be tensors; not a tensor: {few(not_tensors)}")
    for name, module in codec.named_modules():
        if isinstance(module, (EntropyBottleneck, GaussianConditional)):
            for buffer in ENTROPY_BUFFERS:  # tables of the size they were built with, not the empty ones
                if f"{name}.{buffer}" in state_dict:
                    getattr(module, buffer).resize_(state_dict[f"{name}.{buffer}"].shape)
    expected = codec.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (config: {tuple(expected[k].shape)})"
             for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise ModelLoadError(f"weights do not match the model's config (another width?): shape of {few(wrong, 3)}")
    try:
        result = codec.load_state_dict(dict(state_dict), strict=False)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise ModelLoadError(f"weights do not match the model's config ({first_line(exc)})") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            "weights do not match the model's config: "
            f"missing {few(result.missing_keys)}; unexpected {few(result.unexpected_keys)}"
        )
