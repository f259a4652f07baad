"""Models the package once shipped under a name and ships no longer, by the fingerprint their files carry.

A packaged model that is retrained is replaced under its name (``default``, ``variable``, ``avif``), and a
``.cdf`` file it coded then names a fingerprint no packaged model has. Its weights are not lost: they are in
this project's repository history, and :data:`RETIRED` says where, so that ``corrdiff decompress`` can tell
the user how to get the file that decodes it (docs/bitstream.md, section 4, "Which model decodes a file").
Versions kept in the package under another name (``smooth``, ``variable-v1``) are packaged models, not
retired ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetiredModel:
    """One retired version of a packaged model: its name then and a commit whose tree holds its file."""

    name: str  # the packaged name it was loaded by
    commit: str  # a commit of this repository (full hash) whose tree holds the file
    path: str  # the file's path in that commit's tree

    def describe(self) -> str:
        """What it is, for an error message."""
        return f"an earlier version of the packaged model {self.name!r}"

    def file_name(self) -> str:
        """A name for the retrieved file: the packaged name and the commit's short hash."""
        return f"{self.name}-{self.commit[:7]}.pt"

    def retrieval(self) -> str:
        """The command, run in a clone of the repository, that writes the model file."""
        return f"git show {self.commit[:12]}:{self.path} > {self.file_name()}"

    def where(self) -> str:
        """Where its file is, for an error message: the command that writes it and the ``--model`` to pass."""
        return (f"its file is in the repository's history: `{self.retrieval()}` in a clone of corrdiff, then pass "
                f"--model {self.file_name()}")


#: fingerprint (hex, as files carry it) -> where the retired model's file is
RETIRED: dict[str, RetiredModel] = {
    "4dc8fe8e702834a2": RetiredModel("default", "272e8b644a0c93eeacad39f33b596851a72608f2",
                                     "corrdiff/assets/default.pt"),
    "7beb9e34d5a3b452": RetiredModel("default", "fa19d2d05748b8224563efd1083edebce551017a",
                                     "corrdiff/assets/default.pt"),
    "3ebf479e5dea6f61": RetiredModel("default", "90f1c11dfb37fd9ef756aeefd96b8e43e155453e",
                                     "corrdiff/assets/default.pt"),
    "df00c41819a5e5ea": RetiredModel("variable", "28b5e9910671095c8d9676a57faaf3f9f34bb1ce",
                                     "corrdiff/assets/variable.pt"),
    "7fb5b79054b92982": RetiredModel("variable", "163610c65ca424fcc115882c93bcdcf71816ebb6",
                                     "corrdiff/assets/variable.pt"),
    "161767c6c27ea89d": RetiredModel("avif", "875250f6f7dec490de602f016cb1b9acfe2bc5b1", "corrdiff/assets/avif.pt"),
    "e6ba5072c3c7f278": RetiredModel("avif", "6df4ea49f95536ada38a1e4822aabbbba95b9800", "corrdiff/assets/avif.pt"),
}


def retired_model(fingerprint: bytes) -> RetiredModel | None:
    """The retired packaged model whose files carry ``fingerprint``, or None."""
    return RETIRED.get(fingerprint.hex())


__all__ = ["RETIRED", "RetiredModel", "retired_model"]
