"""What travels to the device machine, and a slim checkout for one burst call (experiments/gpu/README.md).

The device tool sends the working tree: tracked files, untracked files that git does not ignore, and the
``carry`` paths, at most 64 MiB together. This repository's tracked tree is larger (model files of earlier
experiments, the packaged models, photos, documentation pictures), so a burst call is sent from a slimmed
index: ``slim`` takes out of git's index (``git rm --cached``: nothing on disk changes) every tracked file
that a burst does not need, and ignores them in ``.git/info/exclude``, so they neither travel as tracked nor
as untracked files; ``restore`` puts the index entries back from HEAD and removes the exclude block.

    python experiments/gpu/travel.py size --carry data/corpus/train experiments/gpu/wheels
    python experiments/gpu/travel.py slim --keep corrdiff/assets/variable.pt --carry data/corpus/train \\
        experiments/gpu/wheels
    # ... the one device call ...
    python experiments/gpu/travel.py restore

Left out by ``slim`` (unless a ``--keep`` pattern names them): ``corrdiff/assets/*.pt`` (the packaged models;
keep the burst's start), ``experiments/*/models/``, ``data/``, and every ``.png``/``.jpg``/``.webp`` outside
``corrdiff/`` (documentation pictures and logs' crops). ``slim`` refuses when the index holds staged changes
(``restore`` resets the index entries it took out to HEAD, and staged edits of them would be lost), when a
slim is already in place, or when what would travel is still over the limit (then nothing is changed).
"""

from __future__ import annotations

import argparse
import fnmatch
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20
#: the device tool's limit on the working tree that travels (tracked + untracked-not-ignored + carry)
LIMIT_BYTES = 64 * MiB
#: tracked paths a burst does not need (fnmatch patterns on paths relative to the repository root)
LEFT_OUT = ("corrdiff/assets/*.pt", "experiments/*/models/*", "data/*", "*.png", "*.jpg", "*.webp")
#: but these stay: the package's own pictures (the demo photo)
ALWAYS_KEPT = ("corrdiff/*.png", "corrdiff/*.jpg", "corrdiff/*.webp")
BEGIN, END = "# >>> experiments/gpu/travel.py slim", "# <<< experiments/gpu/travel.py slim"


def git(root: Path, *args: str, input_text: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True,
                          input=input_text).stdout


def travelling(root: Path) -> list[str]:
    """Paths git would send: tracked, and untracked but not ignored (those that exist on disk)."""
    listed = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    return sorted({p for p in listed if p and (root / p).is_file()})


def file_bytes(root: Path, paths: list[str]) -> int:
    return sum((root / p).stat().st_size for p in paths)


def carried_bytes(root: Path, carry: list[str]) -> int:
    """Bytes of the carried paths (files, or folders walked recursively); missing ones count 0."""
    total = 0
    for path in (root / c for c in carry):
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return total


def left_out(paths: list[str], keep: list[str]) -> list[str]:
    """The tracked paths ``slim`` takes out: matching :data:`LEFT_OUT`, not :data:`ALWAYS_KEPT` nor ``keep``."""
    def matches(path: str, patterns) -> bool:
        return any(fnmatch.fnmatch(path, p) for p in patterns)
    return [p for p in paths if matches(p, LEFT_OUT) and not matches(p, (*ALWAYS_KEPT, *keep))]


def exclude_file(root: Path) -> Path:
    """The repository's ``info/exclude`` (``root / absolute`` is the absolute path)."""
    return root / git(root, "rev-parse", "--git-path", "info/exclude").strip()


def slimmed_paths(root: Path) -> list[str]:
    """The paths of the slim in place (from the exclude block), empty when none."""
    path = exclude_file(root)
    lines = path.read_text().splitlines() if path.exists() else []
    if BEGIN not in lines:
        return []
    block = lines[lines.index(BEGIN) + 1: lines.index(END)]
    return [line[1:] for line in block]  # "/path" anchored at the root


def report(root: Path, carry: list[str]) -> int:
    """Print and return the bytes that would travel now."""
    paths = travelling(root)
    tree, carried = file_bytes(root, paths), carried_bytes(root, carry)
    total = tree + carried
    print(f"working tree {tree / MiB:.1f} MiB ({len(paths)} files) + carry {carried / MiB:.1f} MiB = "
          f"{total / MiB:.1f} MiB; limit {LIMIT_BYTES / MiB:.0f} MiB: {'fits' if total <= LIMIT_BYTES else 'OVER'}")
    return total


def slim(root: Path, keep: list[str], carry: list[str]) -> list[str]:
    """Untrack (index only) and ignore what a burst does not need; the paths taken out."""
    if slimmed_paths(root):
        raise SystemExit("a slim is already in place: run `travel.py restore` first")
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root).returncode != 0:
        raise SystemExit("the index holds staged changes: commit or unstage them first (restore resets the "
                         "index entries it takes out to HEAD)")
    paths = travelling(root)
    out = left_out(git(root, "ls-files", "-z").split("\0"), keep)
    out = [p for p in out if p]
    staying = [p for p in paths if p not in set(out)]
    total = file_bytes(root, staying) + carried_bytes(root, carry)
    if total > LIMIT_BYTES:
        raise SystemExit(f"still {total / MiB:.1f} MiB after the slim (limit {LIMIT_BYTES / MiB:.0f} MiB): "
                         "keep less or carry less; nothing changed")
    exclude = exclude_file(root)
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text() if exclude.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    exclude.write_text(text + "\n".join([BEGIN, *(f"/{p}" for p in out), END]) + "\n")
    if out:
        git(root, "rm", "--cached", "-q", "--pathspec-from-file=-", "--pathspec-file-nul",
            input_text="\0".join(out))
    return out


def restore(root: Path) -> list[str]:
    """Put the slimmed paths back in the index (from HEAD) and drop the exclude block; the paths restored."""
    out = slimmed_paths(root)
    if out:
        git(root, "reset", "-q", "--pathspec-from-file=-", "--pathspec-file-nul", input_text="\0".join(out))
    exclude = exclude_file(root)
    if exclude.exists():
        lines = exclude.read_text().splitlines()
        if BEGIN in lines:
            lines = lines[: lines.index(BEGIN)] + lines[lines.index(END) + 1:]
            exclude.write_text("".join(f"{line}\n" for line in lines))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("size", "slim"):
        p = sub.add_parser(name)
        p.add_argument("--carry", nargs="*", default=[], help="the device call's carry paths")
        if name == "slim":
            p.add_argument("--keep", nargs="*", default=[], help="fnmatch patterns of left-out paths to keep")
    sub.add_parser("restore")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.command == "size":
        return 0 if report(root, args.carry) <= LIMIT_BYTES else 1
    if args.command == "slim":
        out = slim(root, args.keep, args.carry)
        print(f"slim: {len(out)} tracked files out of the index (still on disk); restore with "
              "`python experiments/gpu/travel.py restore` right after the device call")
        report(root, args.carry)
        return 0
    restored = restore(root)
    print(f"restore: {len(restored)} files back in the index")
    return 0


if __name__ == "__main__":
    sys.exit(main())
