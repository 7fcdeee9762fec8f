"""Typed application keys: the app's resources, set by cleanup contexts in gateway.app."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Config
from gateway.service.gauges import GaugeRefresher
from gateway.service.principal import Principal
from gateway.store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
ADMIN_TOKEN = web.AppKey("admin_token", str)
# The reference offer, encoded once at start.
OFFER = web.AppKey("offer", bytes)
# Refreshes the database-state gauges of /metrics.
GAUGES = web.AppKey("gauges", GaugeRefresher)

# Per request: who is asking (set by authentication; anonymous until then).
PRINCIPAL = web.RequestKey("principal", Principal)
