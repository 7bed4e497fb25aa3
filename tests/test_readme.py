"""Every ``python`` code block of README.md and docs/architecture.md runs (each in a fresh
namespace) and its assertions and ``check_jvp`` calls hold, so the documentation cannot rot."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "architecture.md"]


def _blocks() -> list:
    found = []
    for path in DOCUMENTS:
        text = path.read_text()
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            line = text.count("\n", 0, match.start()) + 2  # the block's first line of code
            found.append(pytest.param(match.group(1), f"{path.relative_to(ROOT)}:{line}",
                                      id=f"{path.name}:{line}"))
    return found


def test_the_documents_have_examples():
    names = [p.values[1] for p in _blocks()]
    assert sum(n.startswith("README") for n in names) >= 4 and any(n.startswith("docs") for n in names)


@pytest.mark.parametrize("code, where", _blocks())
def test_code_block_runs(code, where, capsys):
    exec(compile(code, where, "exec"), {"__name__": "__readme__"})
