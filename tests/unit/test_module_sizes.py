"""Source modules stay small: over 400 lines, a module says why at the top of its docstring.

The reason is a line starting `Longer than` in the docstring's opening — its summary or the
paragraph right after it (src/vechat_rls/migrate/legacy/adopt.py is an example).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
LIMIT = 400
MARKER = "Longer than"


def says_why(source: str) -> bool:
    """The docstring's summary or next paragraph has a line starting with `MARKER`."""
    docstring = ast.get_docstring(ast.parse(source)) or ""
    opening = docstring.split("\n\n")[:2]
    return any(line.startswith(MARKER) for part in opening for line in part.splitlines())


def test_a_module_over_400_lines_says_why_at_its_top() -> None:
    unexplained = []
    for path in sorted(SRC.rglob("*.py")):
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > LIMIT and not says_why(source):
            unexplained.append(f"{path.relative_to(SRC)}: {lines} lines")
    assert unexplained == [], f"over {LIMIT} lines without a '{MARKER} …' reason at the top"


def test_the_reason_counts_only_at_the_top_of_the_docstring() -> None:
    assert says_why('"""Adoption.\n\nLonger than usual: one transaction."""\n')
    assert says_why('"""Adoption.\nLonger than usual: one transaction."""\n')
    assert not says_why('"""Adoption.\n\nWhat it does.\n\nLonger than usual."""\n')
    assert not says_why("x = 1  # Longer than usual\n")
