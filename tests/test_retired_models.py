"""Every retired packaged model (corrdiff/model_io/retired.py) is where the table says: the file at its commit
loads, has the fingerprint it is listed under, and is not a packaged model any more (else the package decodes
its files itself)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import corrdiff
from corrdiff.model_io import PACKAGED, RETIRED, retired_model

REPOSITORY = Path(__file__).resolve().parents[1]


def in_history(commit: str) -> bool:
    """Whether this checkout is a git repository whose history holds ``commit``."""
    probe = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=REPOSITORY, capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def packaged_fingerprints() -> set[str]:
    return {corrdiff.load_model(name).fingerprint().hex() for name in PACKAGED}


@pytest.mark.parametrize("fingerprint", sorted(RETIRED))
def test_a_retired_model_is_at_its_commit_with_its_fingerprint(fingerprint, packaged_fingerprints, tmp_path):
    retired = RETIRED[fingerprint]
    assert retired.name in PACKAGED and len(retired.commit) == 40
    if not in_history(retired.commit):
        pytest.skip("not a git clone with the repository's history (an installed package or a shallow clone)")
    path = tmp_path / retired.file_name()
    path.write_bytes(subprocess.run(["git", "show", f"{retired.commit}:{retired.path}"], cwd=REPOSITORY,
                                    capture_output=True, check=True).stdout)
    assert corrdiff.load_model(path).fingerprint().hex() == fingerprint
    assert fingerprint not in packaged_fingerprints
    assert retired_model(bytes.fromhex(fingerprint)) is retired


def test_a_packaged_or_unknown_fingerprint_is_not_retired():
    assert retired_model(corrdiff.load_model("default").fingerprint()) is None
    assert retired_model(bytes(8)) is None
