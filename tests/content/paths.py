"""Where the shared material lives: `shared/` beside the repository root (as in CI)."""

from __future__ import annotations

from pathlib import Path

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared").resolve()
MIMI_EXAMPLES = SHARED / "mimi-content" / "examples"
NATIVE_FIXTURES = SHARED / "fixtures" / "native"
