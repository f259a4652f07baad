"""The README's two commands are the ones CI runs and the ones that work."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_starts_with_two_commands():
    install_and_demo, install_and_test = readme_commands()
    assert install_and_demo.startswith("pip install torch==2.14.1 torchvision==0.29.1 && pip install -e .")
    assert install_and_demo.endswith("corrdiff demo")
    assert install_and_test.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command():
    _, install_and_test = readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install_and_test in ci_lines
    assert "set -euo pipefail" in ci_lines


def test_readme_shows_a_cpu_only_install_and_how_to_count_the_tests():
    """Beside the two commands: one line for machines without a GPU, the same torch from PyTorch's CPU index
    (the pinned torch from PyPI is a CUDA build); the suite's size as --collect-only counts it."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    cpu = [b.strip().splitlines() for b in blocks[2:] if "download.pytorch.org/whl/cpu" in b]
    assert cpu and cpu[0] == ["pip install torch==2.14.1 torchvision==0.29.1 --index-url "
                              "https://download.pytorch.org/whl/cpu && pip install -e . && corrdiff demo"]
    assert text.index("Without a GPU") > text.index(blocks[1])
    assert "python -m pytest --collect-only -q | tail -1" in text
    assert "about 410 tests" not in text
