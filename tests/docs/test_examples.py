"""Every shell and Python example of the README and docs/ runs as written against a live gateway.

Each document's ```sh and ```python blocks run in order as one bash script (a Python block runs
through the venv's python), in a fresh directory where a real `python -m gateway serve` runs
with its defaults (so `var/admin-token` is there, as on a first start); `$GATEWAY` is its URL.
A block that cannot run here (docker, kubectl, a second server) says so in its info string
(```sh no-run) and is counted below, so that marking one is a visible decision.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.system.test_serve import free_port, wait_until_up

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXECUTABLE = {"sh", "python"}
ILLUSTRATIVE = {"text", "json", "toml"}  # output and file samples: read, not run
NO_RUN = {
    "README.md": 1,
    "integrate.md": 0,
    "operate.md": 4,
    "audit.md": 0,
    "design.md": 0,
    "performance.md": 1,
    "transparency.md": 0,
}
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(document: Path) -> list[tuple[str, bool, str]]:
    """(language, runs, code) of each fenced block, in order."""
    found = []
    for info, code in FENCE.findall(document.read_text()):
        language, *flags = info.split() or [""]
        assert language in EXECUTABLE | ILLUSTRATIVE, f"{document.name}: ```{info}"
        found.append((language, language in EXECUTABLE and "no-run" not in flags, code))
    return found


def script(document: Path) -> str:
    parts = ["set -euo pipefail"]
    for language, runs, code in blocks(document):
        if runs and language == "sh":
            parts.append(code)
        elif runs:
            parts.append(f"python - <<'PYTHON_BLOCK'\n{code}PYTHON_BLOCK")
    return "\n".join(parts) + "\n"


def test_every_document_is_listed_with_its_blocks_that_do_not_run() -> None:
    assert sorted(NO_RUN) == sorted(d.name for d in DOCUMENTS)
    for document in DOCUMENTS:
        marked = [b for b in blocks(document) if b[0] in EXECUTABLE and not b[1]]
        assert len(marked) == NO_RUN[document.name], document.name


@pytest.mark.parametrize(
    "document",
    [d for d in DOCUMENTS if any(runs for _, runs, _ in blocks(d))],
    ids=lambda d: d.name,
)
def test_examples_run_as_written(document: Path, tmp_path: Path) -> None:
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the examples need {', '.join(missing)} on PATH (.ci/run installs them)")
    work, log = tmp_path / "work", tmp_path / "gateway.log"
    work.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            cwd=work,
            env={**env, "GATEWAY_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/readyz")
        done = subprocess.run(
            ["bash", "-c", script(document)],
            cwd=work,
            env={**env, "GATEWAY": f"http://127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert done.returncode == 0, (
        f"{document.name}: exit {done.returncode}\n--- stdout\n{done.stdout[-4000:]}"
        f"\n--- stderr\n{done.stderr[-4000:]}\n--- gateway\n{log.read_text()[-3000:]}"
    )


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.name)
def test_local_links_lead_to_files(document: Path) -> None:
    targets = [t for t in LINK.findall(document.read_text()) if "://" not in t]
    assert [t for t in targets if not (document.parent / t).exists()] == []
