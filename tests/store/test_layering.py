"""SQL lives only in gateway/store/ (issue #15): no other module runs a statement or holds one.

Every module of `gateway/` outside `gateway/store/` is parsed (ast) for calls of the database
methods (`execute`, `executemany`, `executescript`, `fetch`, `fetchrow`, `fetchval`) and for
string literals, f-strings included, that read as SQL.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
STORE = GATEWAY / "store"

DB_CALLS = frozenset({"execute", "executemany", "executescript", "fetch", "fetchrow", "fetchval"})
SQL = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|PRAGMA)\s"
    r"|\bSELECT\b.*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\bON\s+CONFLICT\b|\bFOR\s+UPDATE\b",
    re.DOTALL,
)

# Modules allowed to run SQL outside gateway/store/ for a while (none now); an entry whose
# module no longer runs SQL fails below, so the list only shrinks.
PENDING: set[str] = set()


def _text(node: ast.JoinedStr) -> str:
    """An f-string's literal parts, with `{}` where values go."""
    return "".join(
        part.value if isinstance(part, ast.Constant) else "{}"
        for part in node.values
        if not isinstance(part, ast.Constant) or isinstance(part.value, str)
    )


def sql_uses(source: str) -> list[str]:
    """Where `source` runs or holds SQL: one `line N: ...` entry per finding."""
    tree = ast.parse(source)
    inside_fstrings = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in DB_CALLS
        ):
            found.append(f"line {node.lineno}: calls .{node.func.attr}()")
        text = None
        if isinstance(node, ast.JoinedStr):
            text = _text(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = None if id(node) in inside_fstrings else node.value
        if text is not None and SQL.search(text):
            found.append(f"line {node.lineno}: SQL text {text[:60]!r}")
    return found


def modules() -> list[str]:
    return sorted(
        str(path.relative_to(GATEWAY))
        for path in GATEWAY.rglob("*.py")
        if STORE not in path.parents
    )


@pytest.mark.parametrize("module", modules())
def test_no_sql_outside_the_store(module: str) -> None:
    uses = sql_uses((GATEWAY / module).read_text())
    if module in PENDING:
        assert uses, f"{module} no longer runs SQL: remove it from PENDING"
    else:
        assert not uses, f"gateway/{module} runs SQL outside gateway/store/: {uses}"


def test_the_pending_list_names_existing_modules() -> None:
    assert not PENDING - set(modules())


@pytest.mark.parametrize(
    "source",
    [
        "async def f(tx):\n    await tx.execute(STATEMENT, 1)\n",
        "async def f(store):\n    return await store.fetchval(Q)\n",
        "def f(db):\n    db.executescript(SCHEMA)\n",
        'Q = "SELECT uri FROM users WHERE id = $1"\n',
        'Q = f"SELECT {COLUMNS} FROM users"\n',
        'Q = (\n    "INSERT INTO t (a) VALUES ($1) "\n    "ON CONFLICT DO NOTHING"\n)\n',
        'Q = "UPDATE users SET name = $1"\n',
        'Q = "DELETE FROM users"\n',
    ],
)
def test_the_check_finds_sql(source: str) -> None:
    assert sql_uses(source)


@pytest.mark.parametrize(
    "source",
    [
        'METHODS = frozenset({"GET", "POST", "DELETE"})\n',
        '"""Column values for INSERT, in column order; select a key to update."""\n',
        "async def f(self):\n    await self._fetch()\n",
    ],
)
def test_the_check_passes_plain_code(source: str) -> None:
    assert not sql_uses(source)
