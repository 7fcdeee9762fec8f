"""Application wiring: create_app(config) builds the app; cleanup contexts own resources."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import aiohttp
import msgspec
from aiohttp import web

from gateway import secretfiles
from gateway.config import Config
from gateway.http import (
    audit,
    events,
    key_directory,
    media,
    messages,
    oauth,
    onboarding,
    ops,
    platform_webhook,
    sandbox,
)
from gateway.http.auth import auth_middleware
from gateway.http.keys import (
    ACCESS_TOKENS,
    ADMIN_TOKEN,
    AUDIT_LOG,
    AUDIT_SIGNER,
    AUTHENTICATOR,
    CONFIG,
    CONSENT,
    DELIVERY,
    EVENT_STREAMS,
    EVENTS,
    GAUGES,
    INGRESS,
    INTEROP_REQUESTS,
    KEY_DIRECTORY,
    MEDIA,
    OFFER,
    PLATFORM,
    PROVIDER_WEBHOOKS,
    PROVIDERS,
    RATE_LIMITER,
    RELAY,
    SANDBOX,
    STORE,
    THIRD_PARTY_KEYS,
    TOKEN_ENDPOINT,
    WEBHOOK_PUSHER,
)
from gateway.http.lifecycle import log_shutdown
from gateway.http.middlewares import (
    problem_middleware,
    request_middleware,
)
from gateway.platforms.http import HttpPlatform
from gateway.platforms.ingress import Ingress
from gateway.platforms.sandbox import SandboxPlatform
from gateway.platforms.sandbox_state import SandboxState, load_sandbox_key
from gateway.service.access_tokens import AccessTokens
from gateway.service.authn import ProviderAuthenticator
from gateway.service.consent import ConsentRegistry
from gateway.service.delivery import DeliveryWorker
from gateway.service.event_streams import MAX_SOCKETS, EventStreams
from gateway.service.events import TOPIC as events_topic
from gateway.service.events import EventQueue
from gateway.service.gauges import GaugeRefresher, default_probes
from gateway.service.interop_requests import InteropRequests
from gateway.service.keys import KeyDirectory
from gateway.service.media import MediaService
from gateway.service.offer import build_offer
from gateway.service.periodic import Periodic
from gateway.service.providers import TOPIC as providers_topic
from gateway.service.providers import ProviderRegistry
from gateway.service.ratelimit import rate_limiter
from gateway.service.relay import Relay
from gateway.service.token_endpoint import TokenEndpoint
from gateway.service.webhook_push import WebhookPusher
from gateway.store import Store, StoreError, open_store
from gateway.store.blobs import FileBlobStore

__all__ = ["ADMIN_TOKEN", "CONFIG", "OFFER", "STORE", "create_app"]


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[STORE] = await open_store(
        config.database_url,
        group_commit_max=config.storage.group_commit_max,
        pool_size=config.storage.pool_size,
        statement_timeout_s=config.storage.statement_timeout_s,
    )
    await hold_or_close(
        app[STORE], f"replica:{config.replica_id}", "give each replica its own GATEWAY_REPLICA_ID"
    )
    yield
    await app[STORE].close()


async def hold_or_close(store: Store, name: str, hint: str) -> None:
    """Hold `name` for this process (replicas on PostgreSQL) or close the store and refuse."""
    try:
        await store.hold_exclusive(name)
    except StoreError as exc:
        await store.close()
        raise StoreError(f"{exc}: {hint}") from None


async def secrets_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    token, _, _ = secretfiles.admin_token(config.data_path, config.admin_token)
    app[ADMIN_TOKEN] = token
    yield


async def offer_ctx(app: web.Application) -> AsyncIterator[None]:
    app[OFFER] = msgspec.json.encode(
        build_offer(app[CONFIG], audit_public_key=app[AUDIT_SIGNER].public_b64)
    )
    yield


async def gauges_ctx(app: web.Application) -> AsyncIterator[None]:
    # After storage_ctx: the refresher stops before the store closes.
    config = app[CONFIG]
    app[GAUGES] = GaugeRefresher(
        app[STORE], config.metrics.refresh_interval_s, default_probes(config.audit.chain_id)
    )
    app[GAUGES].start()
    yield
    await app[GAUGES].stop()


async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[KEY_DIRECTORY] = KeyDirectory(
        app[STORE],
        low_threshold=config.keys.low_threshold,
        max_one_time_keys=config.keys.max_one_time_keys,
        audit_events=app[AUDIT_LOG],
    )
    yield


async def media_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    blobs = await FileBlobStore(config.media_path).open()
    app[MEDIA] = MediaService(
        app[STORE],
        blobs,
        expiry_days=config.media.expiry_days,
        max_bytes=config.server.media_max_bytes,
        enabled_services=[name for name, s in config.services.items() if s.enabled],
    )
    sweeper = Periodic(app[MEDIA].remove_expired, config.media.cleanup_interval_s, "media_expiry")
    sweeper.start()
    yield
    await sweeper.stop()


async def onboarding_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = app[STORE]
    providers = ProviderRegistry(store, state_ttl_s=config.auth.provider_state_ttl_s)
    tokens = await asyncio.to_thread(
        AccessTokens.open,
        config.data_path,
        issuer=config.base_url,
        ttl_s=config.auth.access_token_ttl_s,
    )
    app[PROVIDERS] = providers
    app[ACCESS_TOKENS] = tokens
    app[INTEROP_REQUESTS] = InteropRequests(store, config)
    app[TOKEN_ENDPOINT] = TokenEndpoint(
        store,
        providers,
        tokens,
        audience=f"{config.base_url}/v1/oauth/token",
        max_lifetime_s=config.auth.assertion_max_lifetime_s,
        leeway_s=config.auth.clock_leeway_s,
    )
    app[AUTHENTICATOR] = ProviderAuthenticator(
        tokens, providers, cache_max=config.auth.token_cache_max
    )
    app[RATE_LIMITER] = rate_limiter(store)
    await store.subscribe(providers_topic, providers.heard)
    yield


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """Events, consent, the platform connector, the relay and its delivery workers."""
    config, store = app[CONFIG], app[STORE]
    app[EVENTS] = queue = EventQueue(store)
    await store.subscribe(events_topic, queue.heard)
    app[EVENT_STREAMS] = streams = EventStreams(app[PROVIDERS].state, max_sockets=MAX_SOCKETS)
    app[PROVIDERS].listeners.append(streams.changed)
    app[CONSENT] = consent = ConsentRegistry(store, queue)
    directory = app[KEY_DIRECTORY]
    session = aiohttp.ClientSession()
    platform: SandboxPlatform | HttpPlatform
    if config.platforms == "sandbox":
        claim_keys = app.get(THIRD_PARTY_KEYS, directory.claim_for_platform)
        key = await asyncio.to_thread(load_sandbox_key, config.data_path)
        platform = app[SANDBOX] = SandboxPlatform(
            SandboxState(store, key),
            third_party_keys=lambda uri: claim_keys(uri),
            set_consent=consent.set,
        )
    else:
        id_key, _ = await asyncio.to_thread(
            secretfiles.load_or_create,
            config.data_path / "platform-id-key",
            lambda: secrets.token_bytes(32),
        )
        platform = HttpPlatform(config.http_platform, store, session, id_key=id_key)
        app[INGRESS] = Ingress(config, platform)
    app[PLATFORM] = platform
    app[DELIVERY] = worker = DeliveryWorker(
        store, platform, consent, queue, config.relay, audit_events=app[AUDIT_LOG],
        replica_id=config.replica_id,
    )  # fmt: skip
    app[RELAY] = relay = Relay(
        store, config, platform, consent, queue,
        outbox_depth=lambda: worker.depth, on_outbox=worker.wake, audit_events=app[AUDIT_LOG],
    )  # fmt: skip
    platform.sink = relay.receive
    # The key directory answers for platform users through the connector (INTERFACES.md §1).
    directory.platform_keys = platform.claim_key_bundle
    directory.consent = consent.allows
    directory.events = queue
    app[WEBHOOK_PUSHER] = pusher = WebhookPusher(
        queue, app.get(PROVIDER_WEBHOOKS, app[PROVIDERS].webhook), config.relay, session, streams
    )
    await worker.start()
    pusher.start()
    yield
    await pusher.stop()
    await streams.close()
    # Requests have drained by now; deliveries under way get a share of the shutdown budget.
    await worker.stop(drain_s=config.server.shutdown_timeout_s / 4)
    await platform.close()
    await session.close()


def create_app(config: Config) -> web.Application:
    """Build the application for `config`; resources open when it starts."""
    app = web.Application(
        # The audit middleware sits outside problem+json rendering to see the final status.
        middlewares=[
            request_middleware,
            audit.audit_middleware,
            problem_middleware,
            auth_middleware,
        ],
        client_max_size=config.server.max_body_bytes,
    )
    app[CONFIG] = config
    log_shutdown(app)
    app.cleanup_ctx.append(storage_ctx)
    app.cleanup_ctx.append(secrets_ctx)
    app.cleanup_ctx.append(audit.audit_ctx)
    app.cleanup_ctx.append(offer_ctx)
    app.cleanup_ctx.append(onboarding_ctx)
    app.cleanup_ctx.append(gauges_ctx)
    app.cleanup_ctx.append(keys_ctx)
    app.cleanup_ctx.append(media_ctx)
    app.cleanup_ctx.append(relay_ctx)
    app.add_routes(ops.routes)
    app.add_routes(onboarding.routes)
    app.add_routes(oauth.routes)
    app.add_routes(audit.routes)
    app.add_routes(key_directory.routes)
    app.add_routes(media.routes)
    app.add_routes(messages.routes)
    app.add_routes(events.routes)
    app.add_routes(sandbox.routes)
    app.add_routes(platform_webhook.routes)
    return app
