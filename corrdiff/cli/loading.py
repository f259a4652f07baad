"""The model behind ``--model`` for the file commands: its file (which no output may replace) and its one
load for all the files of a command."""

from __future__ import annotations

from pathlib import Path


def model_path(model: str) -> Path:
    """The file behind ``--model``: a packaged model's asset, or the path given."""
    from corrdiff.model_io import model_path as packaged_or_given

    return packaged_or_given(model)


def load_for(jobs: list, model: str, device: str):
    """The model, loaded once for all jobs (not at all when every job has already failed)."""
    from corrdiff.model_io import load_model

    return load_model(model, map_location=device) if any(job.error is None for job in jobs) else None
