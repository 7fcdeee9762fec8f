"""The metrics catalogue (deploy/METRICS.md) as data, and the metric names a text exposes."""

from __future__ import annotations

import re

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
CATALOGUE_PATH = DEPLOY / "METRICS.md"
_ROW = re.compile(r"^\| `(gateway_[a-z0-9_]+)` \|", re.MULTILINE)
_TYPE_LINE = re.compile(r"^# TYPE (\S+) ", re.MULTILINE)
# A histogram's series carry these suffixes after the catalogued name.
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_created")
METRIC_TOKEN = re.compile(r"\bgateway_[a-z0-9_]+")


def catalogue_names() -> list[str]:
    """Every metric name listed in the catalogue table, in order."""
    names = _ROW.findall(CATALOGUE_PATH.read_text(encoding="utf-8"))
    assert names, f"no metric rows found in {CATALOGUE_PATH}"
    return names


def exposed_names(text: str) -> set[str]:
    """Metric family names declared by `# TYPE` lines of a Prometheus text exposition."""
    return set(_TYPE_LINE.findall(text))


def catalogued(token: str, names: set[str]) -> bool:
    """Whether `token` (as used in a query) is a catalogued name or one of its series."""
    if token in names:
        return True
    return any(token.endswith(s) and token[: -len(s)] in names for s in SERIES_SUFFIXES)
