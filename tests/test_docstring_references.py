"""Library code cites the repository's own documents (docs/*.md, README.md, source files), never a design
note that is not in the repository (``DESIGN.md``) nor an internal issue number ("issue 12")."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "corrdiff"
OUTSIDE_REFERENCE = re.compile(r"DESIGN\.md|\bissues? #?\d+", re.IGNORECASE)


def test_library_code_cites_no_reference_outside_the_repository():
    found = [f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if OUTSIDE_REFERENCE.search(line)]
    assert not found, "cite a file of the repository instead:\n" + "\n".join(found)


def test_the_pattern_catches_what_it_is_for():
    for text in ("(DESIGN.md section 1)", "issue 12's ablation", "(issue 14, item 5)", "Issue #7", "issues 3"):
        assert OUTSIDE_REFERENCE.search(text), text
    assert not OUTSIDE_REFERENCE.search("docs/reliability.md, section 4; tissue 3")


def test_docs_cited_by_the_library_exist():
    cited = {match for path in PACKAGE.rglob("*.py") for match in re.findall(r"docs/[\w-]+\.md", path.read_text())}
    missing = sorted(name for name in cited if not (PACKAGE.parent / name).is_file())
    assert not missing, missing
