"""Where the test data lives: copies in `tests/data/` with their source notes (see its README)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
MIMI_EXAMPLES = DATA / "mimi-content" / "examples"
NATIVE_FIXTURES = DATA / "native"
