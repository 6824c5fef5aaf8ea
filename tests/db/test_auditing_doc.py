"""docs/auditing.md stays true: every command on the page runs in psql, in order, as the auditor
the page describes, against a freshly migrated database holding the page's two messages, and
prints what the page shows.

Conventions of the page: a ```sql or ```psql block is run; the plain ``` block right after it is
what it prints (its lines must appear, in order and adjacent, in psql's output; `…` stands for any
text within a line); `-- ERROR:  …` comments are the errors the block must raise, in order. A
block whose first line is `-- run by the DBA`, and ```sh blocks, are the DBA's or the shell's:
the test does their part itself.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.fixtures import Database, FreshDatabase
from tests.support.seed import User, act_as, create_conversation, insert_message
from vechat_rls.pgserver import embedded_bindir

DOC = Path(__file__).resolve().parents[2] / "docs" / "auditing.md"
AUDITOR = "alice"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.S | re.M)
MARK = "@@block {}@@"


@dataclass
class Block:
    index: int
    kind: str  # sql or psql
    text: str
    expected: list[str] | None

    @property
    def errors(self) -> list[str]:
        """The `-- ERROR:` comments of the block, continuation lines joined."""
        found: list[str] = []
        for line in self.text.splitlines():
            stripped = line.strip()
            if stripped.startswith("-- ERROR:"):
                found.append(stripped.removeprefix("-- ").strip())
            elif found and stripped.startswith("--") and line.startswith("-- " + " " * 4):
                found[-1] += " " + stripped.removeprefix("--").strip()
        return [re.sub(r"\s+", " ", e) for e in found]


def blocks(text: str) -> list[Block]:
    """The commands of the page with the output each must print."""
    fences = list(FENCE.finditer(text))
    found: list[Block] = []
    for i, fence in enumerate(fences):
        kind, body = fence[1], fence[2]
        if kind not in ("sql", "psql") or body.startswith("-- run by the DBA"):
            continue
        expected = None
        following = fences[i + 1] if i + 1 < len(fences) else None
        if (
            following is not None
            and following[1] == ""
            and not text[fence.end() : following.start()].strip()
        ):
            expected = following[2].rstrip("\n").splitlines()
        found.append(Block(len(found), kind, body, expected))
    return found


def matches(expected: list[str], actual: list[str]) -> bool:
    """`expected` appears in `actual` as adjacent lines; `…` matches any text within a line."""
    patterns = [
        re.compile(".*?".join(re.escape(part) for part in line.rstrip().split("…")) + r"\Z")
        for line in expected
    ]
    lines = [line.rstrip() for line in actual]
    return any(
        all(p.match(lines[start + k]) for k, p in enumerate(patterns))
        for start in range(len(lines) - len(patterns) + 1)
    )


@pytest.fixture
def audited(fresh_database: FreshDatabase) -> Iterator[Database]:
    """A migrated database with the page's data and its auditor, alice (a cluster-wide role,
    dropped again afterwards)."""
    db = fresh_database(migrated=True)
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        conn.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{AUDITOR}') THEN "
            f"CREATE ROLE {AUDITOR} LOGIN PASSWORD '{AUDITOR}'; END IF; END $$"
        )
        conn.execute(f"GRANT vechat_auditor, vechat_app TO {AUDITOR}")
    # The page's two messages: organisation 1, personnel 10 to 11; organisation 2, 20 to 21.
    with psycopg.connect(db.app_url) as conn:
        for organisation, sender, receiver in ((1, 10, 11), (2, 20, 21)):
            with conn.transaction():
                a, b = User(sender, "personnel"), User(receiver, "personnel")
                act_as(conn, organisation, a)
                conversation = create_conversation(conn, organisation, a, b)
                text = f"hello from organisation {organisation}"
                insert_message(conn, organisation, conversation, a, b, text)
    yield db
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        conn.execute(f"REVOKE vechat_auditor, vechat_app FROM {AUDITOR}")
        conn.execute(f"DROP OWNED BY {AUDITOR}")
        conn.execute(f"DROP ROLE {AUDITOR}")


def test_every_command_of_the_auditing_walkthrough_prints_what_the_page_shows(
    audited: Database,
) -> None:
    page = blocks(DOC.read_text())
    assert len(page) > 15, "the page's blocks were not found"
    script = "".join(f"\\echo {MARK.format(b.index)}\n{b.text}\n" for b in page)
    url = re.sub(r"//[^:@/]+(:[^@]*)?@", f"//{AUDITOR}:{AUDITOR}@", audited.admin_url, count=1)
    proc = subprocess.run(
        [str(embedded_bindir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=0", "-P", "pager=off",
         url],
        input=script, capture_output=True, text=True, timeout=120, check=False,
    )
    outputs = re.split(r"^@@block (\d+)@@\n", proc.stdout, flags=re.M)
    printed = {int(outputs[i]): outputs[i + 1].splitlines() for i in range(1, len(outputs), 2)}
    errors = [
        re.sub(r"\s+", " ", match[1]).strip()
        for line in proc.stderr.splitlines()
        if (match := re.match(r"(?:psql:[^:]*:\d+: )?(ERROR:.*)", line))
    ]
    problems: list[str] = []
    for block in page:
        if block.expected is not None and not matches(block.expected, printed.get(block.index, [])):
            problems.append(
                f"block {block.index}:\n{block.text}\n--- the page shows:\n"
                + "\n".join(block.expected)
                + "\n--- psql printed:\n"
                + "\n".join(printed.get(block.index, []))
            )
    expected_errors = [e for b in page for e in b.errors]
    assert not problems, "\n\n".join(problems)
    assert errors == expected_errors, proc.stderr
    assert "FATAL" not in proc.stderr, proc.stderr
