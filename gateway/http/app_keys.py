"""Typed application keys: the app's resources, set by cleanup contexts in gateway.app."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver

from gateway.config import Config
from gateway.platforms.base import Platform, Uplink
from gateway.platforms.ingress import Ingress
from gateway.platforms.sandbox import SandboxPlatform
from gateway.service.access_tokens import AccessTokens
from gateway.service.audit.checkpoints import Signer
from gateway.service.audit.log import AuditContext, AuditLog
from gateway.service.authn import ProviderAuthenticator
from gateway.service.consent import ConsentRegistry
from gateway.service.delivery import DeliveryWorker
from gateway.service.egress import Egress
from gateway.service.event_streams import EventStreams
from gateway.service.events import EventQueue
from gateway.service.gauges import GaugeRefresher
from gateway.service.groups import GroupService
from gateway.service.interop_requests import InteropRequests
from gateway.service.key_directory import KeyDirectory
from gateway.service.media import MediaService
from gateway.service.principal import Principal
from gateway.service.providers import ProviderRegistry
from gateway.service.ratelimit import RateLimiter
from gateway.service.reach import Reach
from gateway.service.relay import Relay
from gateway.service.request_process import RequestProcess
from gateway.service.request_tracker import RequestTracker
from gateway.service.token_endpoint import TokenEndpoint
from gateway.service.transparency import KeyTransparency
from gateway.service.webhook_push import WebhookPusher
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
# The key transparency log (DESIGN §4.12), fed by the key directory.
KEY_TRANSPARENCY = web.AppKey("key_transparency", KeyTransparency)
MEDIA = web.AppKey("media", MediaService)
# Onboarding and provider authentication (set by gateway.app.onboarding_ctx).
INTEROP_REQUESTS = web.AppKey("interop_requests", InteropRequests)
REQUEST_TRACKER = web.AppKey("request_tracker", RequestTracker)
REQUEST_PROCESS = web.AppKey("request_process", RequestProcess)
PROVIDERS = web.AppKey("providers", ProviderRegistry)
ACCESS_TOKENS = web.AppKey("access_tokens", AccessTokens)
TOKEN_ENDPOINT = web.AppKey("token_endpoint", TokenEndpoint)
AUTHENTICATOR = web.AppKey("authenticator", ProviderAuthenticator)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
# Outbound requests to webhooks; EGRESS_RESOLVER, when set, resolves their host names (tests).
EGRESS = web.AppKey("egress", Egress)
EGRESS_RESOLVER: web.AppKey[AbstractResolver] = web.AppKey("egress_resolver")

# The message relay and its parts (gateway.app.relay_ctx).
EVENTS = web.AppKey("events", EventQueue)
EVENT_STREAMS = web.AppKey("event_streams", EventStreams)
CONSENT = web.AppKey("consent", ConsentRegistry)
PLATFORM = web.AppKey("platform", Platform)
SANDBOX = web.AppKey("sandbox", SandboxPlatform)
DELIVERY = web.AppKey("delivery", DeliveryWorker)
RELAY = web.AppKey("relay", Relay)
# Group rooms, membership, room keys and group fan-out (gateway.service.groups).
GROUPS = web.AppKey("groups", GroupService)
# The gateway as the sandbox's users reach it (the relay, third-party keys; bound once).
UPLINK = web.AppKey("uplink", Uplink)
# The client session of the platform connector and the webhook pusher.
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
# May a provider reach a user: approved services, consent, tenancy (gateway.service.reach).
REACH = web.AppKey("reach", Reach)
WEBHOOK_PUSHER = web.AppKey("webhook_pusher", WebhookPusher)
# Webhooks of the real services (platforms = http only).
INGRESS = web.AppKey("ingress", Ingress)

# Per request: who is asking (set by authentication; anonymous until then).
PRINCIPAL = web.RequestKey("principal", Principal)

# Audit (gateway.http.audit): the log service, the checkpoint signer, and per request the
# context a service passes to AuditLog.append_in to write the record in its own transaction.
AUDIT_LOG = web.AppKey("audit_log", AuditLog)
AUDIT_SIGNER = web.AppKey("audit_signer", Signer)
AUDIT = web.RequestKey("audit", AuditContext)
