"""Short error-message pieces for model and checkpoint files: a few names of many, an exception's first line."""

from __future__ import annotations

import pickle

from corrdiff.errors import ModelLoadError


def few(keys: list[str], n: int = 5) -> str:
    """The first ``n`` of ``keys``, comma-separated, with how many more there are ("none" when empty)."""
    if not keys:
        return "none"
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, prefixed by its type unless that says nothing more."""
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    if not text:
        return name
    plain = isinstance(exc, (RuntimeError, OSError, pickle.UnpicklingError, ModelLoadError))
    return text[0] if plain else f"{name}: {text[0]}"
