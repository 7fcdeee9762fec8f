"""deploy/METRICS.md and the code cannot drift: every listed name is on /metrics and vice versa."""

from __future__ import annotations

from typing import Any

from tests.deploy.catalogue import catalogue_names, exposed_names


async def test_every_catalogue_metric_is_exposed(client: Any) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    exposed = exposed_names(await response.text())
    missing = [name for name in catalogue_names() if name not in exposed]
    assert not missing, f"listed in deploy/METRICS.md but not on /metrics: {missing}"


async def test_every_gateway_metric_is_catalogued(client: Any) -> None:
    exposed = exposed_names(await (await client.get("/metrics")).text())
    ours = {name for name in exposed if name.startswith("gateway_")}
    undocumented = sorted(ours - set(catalogue_names()))
    assert not undocumented, f"on /metrics but not in deploy/METRICS.md: {undocumented}"


def test_catalogue_lists_each_name_once() -> None:
    names = catalogue_names()
    assert len(names) == len(set(names))
