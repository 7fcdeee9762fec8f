"""A client that hangs up in the middle of its body is recorded as 499, never as a 5xx."""

from __future__ import annotations

import asyncio
from typing import Any

from structlog.testing import capture_logs

from gateway import metrics
from gateway.http.app_keys import STORE

ROUTE = "/v1/interop-requests"


def requests_counted(status: str) -> float:
    value = metrics.HTTP_REQUESTS.labels(ROUTE, "POST", status)._value.get()
    return float(value)


async def test_a_vanished_client_is_a_499_not_a_500(client: Any) -> None:
    before_499, before_500 = requests_counted("499"), requests_counted("500")
    with capture_logs() as logs:
        _reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(
            f"POST {ROUTE} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            'Content-Length: 1000\r\n\r\n{"organisation": '.encode()
        )
        await writer.drain()
        await asyncio.sleep(0.05)  # the handler is reading the body now
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            if requests_counted("499") > before_499:
                break
            await asyncio.sleep(0.02)
    assert requests_counted("499") == before_499 + 1
    assert requests_counted("500") == before_500
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
    # Still audited, with its own outcome.
    store = client.app[STORE]
    for _ in range(100):
        status = await store.fetchval(
            "SELECT status FROM audit_records WHERE route = $1 ORDER BY seq DESC LIMIT 1", ROUTE
        )
        if status is not None:
            break
        await asyncio.sleep(0.02)
    assert status == 499
