"""Prometheus config, alert rules (promtool) and the Grafana dashboard against the catalogue."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.catalogue import DEPLOY, METRIC_TOKEN, catalogue_names, catalogued

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "dma-gateway.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not on PATH (Debian/Ubuntu: apt-get install prometheus)",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts.test.yml"),
    ],
    ids=" ".join,
)
def test_promtool(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alerts_cover_the_operational_risks() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "GatewayDown",
        "GatewayOutboxStale",
        "GatewayDeliveryFailureRatio",
        "GatewayAuditCheckpointStale",
        "GatewayInteropRequestOverdue",
        "GatewayHttp5xxRatio",
    } <= names
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def test_alerts_and_the_dashboard_use_only_catalogued_metrics() -> None:
    names = set(catalogue_names())
    used = [METRIC_TOKEN.findall(rule["expr"]) for rule in alert_rules()]
    used += [METRIC_TOKEN.findall(expr) for expr in dashboard_expressions()]
    unknown = {token for tokens in used for token in tokens if not catalogued(token, names)}
    assert not unknown, f"not in deploy/METRICS.md: {sorted(unknown)}"


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    panels += [inner for panel in panels for inner in panel.get("panels", [])]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_every_catalogue_metric_is_on_the_dashboard() -> None:
    used = {token for expr in dashboard_expressions() for token in METRIC_TOKEN.findall(expr)}
    names = set(catalogue_names())
    shown = {name for name in names if any(catalogued(token, {name}) for token in used)}
    assert shown == names, f"not on any panel: {sorted(names - shown)}"


def test_dashboard_panels_have_unique_ids_and_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "dma-gateway"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
