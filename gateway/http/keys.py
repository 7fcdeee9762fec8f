"""Typed application keys: the app's resources, set by cleanup contexts in gateway.app."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Config
from gateway.service.audit.checkpoints import Signer
from gateway.service.audit.log import AuditContext, AuditLog
from gateway.service.gauges import GaugeRefresher
from gateway.service.keys import KeyDirectory
from gateway.service.media import MediaService
from gateway.service.principal import Principal
from gateway.store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
ADMIN_TOKEN = web.AppKey("admin_token", str)
# The reference offer, encoded once at start.
OFFER = web.AppKey("offer", bytes)
# Refreshes the database-state gauges of /metrics.
GAUGES = web.AppKey("gauges", GaugeRefresher)
# Third-party users' Olm keys; platform users' through their connector.
KEY_DIRECTORY = web.AppKey("key_directory", KeyDirectory)
MEDIA = web.AppKey("media", MediaService)

# Per request: who is asking (set by authentication; anonymous until then).
PRINCIPAL = web.RequestKey("principal", Principal)

# Audit (gateway.http.audit): the log service, the checkpoint signer, and per request the
# context a service passes to AuditLog.append_in to write the record in its own transaction.
AUDIT_LOG = web.AppKey("audit_log", AuditLog)
AUDIT_SIGNER = web.AppKey("audit_signer", Signer)
AUDIT = web.RequestKey("audit", AuditContext)
