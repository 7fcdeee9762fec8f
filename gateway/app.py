"""Application wiring: create_app(config) builds the app; cleanup contexts own resources."""

from __future__ import annotations

import asyncio
import functools
import secrets
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import msgspec
from aiohttp import web

from gateway import secretfiles
from gateway.config import Config, parse_listen
from gateway.http import (
    audit,
    event_socket,
    events,
    groups,
    key_routes,
    key_transparency,
    media,
    messages,
    oauth,
    onboarding,
    ops,
    platform_webhook,
    portal,
    sandbox,
)
from gateway.http.app_keys import (
    ACCESS_TOKENS,
    ADMIN_TOKEN,
    AUDIT_LOG,
    AUDIT_SIGNER,
    AUTHENTICATOR,
    CONFIG,
    CONSENT,
    DELIVERY,
    EGRESS,
    EGRESS_RESOLVER,
    EVENT_STREAMS,
    EVENTS,
    GAUGES,
    GROUPS,
    HTTP_SESSION,
    INGRESS,
    INTEROP_REQUESTS,
    KEY_DIRECTORY,
    KEY_TRANSPARENCY,
    MEDIA,
    OFFER,
    PLATFORM,
    PROVIDERS,
    RATE_LIMITER,
    REACH,
    RELAY,
    REQUEST_PROCESS,
    REQUEST_TRACKER,
    SANDBOX,
    STORE,
    TOKEN_ENDPOINT,
    UPLINK,
    WEBHOOK_PUSHER,
)
from gateway.http.auth import auth_middleware
from gateway.http.edge import body_timeout_middleware, forwarded_middleware
from gateway.http.lifecycle import log_shutdown
from gateway.http.middlewares import (
    problem_middleware,
    request_middleware,
)
from gateway.platforms.base import Uplink
from gateway.platforms.http import HttpPlatform
from gateway.platforms.ingress import Ingress
from gateway.platforms.sandbox import SandboxPlatform
from gateway.platforms.sandbox_state import SandboxState, load_sandbox_key
from gateway.service.access_tokens import AccessTokens
from gateway.service.authn import ProviderAuthenticator
from gateway.service.consent import ConsentRegistry
from gateway.service.delivery import DeliveryWorker
from gateway.service.egress import DestinationPolicy, Egress
from gateway.service.event_streams import EventStreams
from gateway.service.events import SWEEP_INTERVAL_S, EventQueue
from gateway.service.events import TOPIC as events_topic
from gateway.service.gauges import GaugeRefresher, default_probes
from gateway.service.groups import GroupService
from gateway.service.interop_requests import InteropRequests
from gateway.service.key_directory import KeyDirectory
from gateway.service.media import MediaService
from gateway.service.offer import build_offer
from gateway.service.payload_seal import PayloadSealer
from gateway.service.periodic import Periodic
from gateway.service.providers import TOPIC as providers_topic
from gateway.service.providers import ProviderRegistry
from gateway.service.ratelimit import rate_limiter
from gateway.service.reach import Reach
from gateway.service.relay import Relay
from gateway.service.request_process import RequestProcess
from gateway.service.request_tracker import RequestTracker
from gateway.service.token_endpoint import TokenEndpoint
from gateway.service.transparency import KeyTransparency, load_head_signer, retired_public_keys
from gateway.service.webhook_push import WebhookPusher, WebhookTargets
from gateway.store import Store, StoreError, open_store
from gateway.store import groups as groups_store
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
        build_offer(
            app[CONFIG],
            audit_public_key=app[AUDIT_SIGNER].public_b64,
            key_transparency=app[KEY_TRANSPARENCY].offer(app[CONFIG].base_url),
        )
    )
    yield


async def transparency_ctx(app: web.Application) -> AsyncIterator[None]:
    """The key transparency log; heads signed on an interval and a last one at shutdown."""
    config = app[CONFIG]
    signer = await asyncio.to_thread(load_head_signer, config.data_path)
    retired = await asyncio.to_thread(retired_public_keys, config.data_path)
    app[KEY_TRANSPARENCY] = kt = KeyTransparency(
        app[STORE], signer, head_interval_s=config.kt.head_interval_s,
        audit_events=app[AUDIT_LOG], retired_keys=retired,
    )  # fmt: skip
    kt.start()
    yield
    await kt.stop()


async def gauges_ctx(app: web.Application) -> AsyncIterator[None]:
    # After storage_ctx: the refresher stops before the store closes.
    config = app[CONFIG]
    app[GAUGES] = GaugeRefresher(
        app[STORE], config.metrics.refresh_interval_s, default_probes(config.audit.chain_id)
    )
    app[GAUGES].start()
    yield
    await app[GAUGES].stop()


async def media_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    blobs = await FileBlobStore(config.media_path).open()
    app[MEDIA] = MediaService(
        app[STORE],
        blobs,
        expiry_days=config.media.expiry_days,
        max_bytes=config.server.media_max_bytes,
        enabled_services=[name for name, s in config.services.items() if s.enabled],
        reach=app[REACH].allows,
        group_access=functools.partial(groups_store.has_provider_member, app[STORE]),
        group_member=functools.partial(groups_store.is_member, app[STORE]),
        quota_bytes=config.media.quota_bytes_per_provider or None,
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
    app[EGRESS] = egress = Egress(
        DestinationPolicy(allow_loopback=config.webhooks.allow_loopback),
        resolver=app.get(EGRESS_RESOLVER),
    )
    app[INTEROP_REQUESTS] = InteropRequests(store, config, egress)
    app[REQUEST_TRACKER] = RequestTracker(store, config.requests)
    app[REQUEST_PROCESS] = RequestProcess(store, config)
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
    await egress.close()


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    """The providers' event queues and the platform users' consents."""
    store = app[STORE]
    app[EVENTS] = queue = EventQueue(store)
    await store.subscribe(events_topic, queue.heard)
    sweep = Periodic(queue.sweep, SWEEP_INTERVAL_S, "event-socket-sweep")
    sweep.start()
    app[EVENT_STREAMS] = streams = EventStreams(
        app[PROVIDERS].state, max_sockets=app[CONFIG].relay.max_sockets_per_provider
    )
    app[PROVIDERS].listeners.append(streams.changed)
    app[CONSENT] = consent = ConsentRegistry(store, queue)
    config = app[CONFIG]
    # One reach policy (approved services, consent, tenancy) for keys, media and messages.
    app[REACH] = Reach(
        app[PROVIDERS].get,
        consent.allows,
        enabled_services=[name for name, s in config.services.items() if s.enabled],
        ttl_s=config.auth.provider_state_ttl_s,
        # Co-members of a group reach each other's keys, whichever their providers.
        co_members=functools.partial(groups_store.shares_group_with_provider, store),
    )
    yield
    await sweep.stop()


async def platform_ctx(app: web.Application) -> AsyncIterator[None]:
    """The connector to the services: the embedded sandbox or the real endpoints."""
    config, store = app[CONFIG], app[STORE]
    session = app[HTTP_SESSION] = aiohttp.ClientSession()
    platform: SandboxPlatform | HttpPlatform
    if config.platforms == "sandbox":
        key = await asyncio.to_thread(load_sandbox_key, config.data_path)
        uplink = app[UPLINK] = Uplink()
        platform = app[SANDBOX] = SandboxPlatform(
            SandboxState(store, key),
            inbound=uplink,
            third_party_keys=uplink.third_party_keys,
            set_consent=app[CONSENT].set,
        )
    else:
        id_key, _ = await asyncio.to_thread(
            secretfiles.load_or_create,
            config.data_path / "platform-id-key",
            lambda: secrets.token_bytes(32),
        )
        platform = HttpPlatform(config.http_platform, store, session, id_key=id_key)
    app[PLATFORM] = platform
    yield
    await platform.close()
    await session.close()


async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
    """Third-party users' keys from our tables; platform users' through the connector, to
    providers their users consented to (INTERFACES.md §1)."""
    config = app[CONFIG]
    app[KEY_DIRECTORY] = KeyDirectory(
        app[STORE],
        low_threshold=config.keys.low_threshold,
        max_one_time_keys=config.keys.max_one_time_keys,
        platform_keys=app[PLATFORM].claim_key_bundle,
        consent=app[REACH].allows,
        events=app[EVENTS],
        audit_events=app[AUDIT_LOG],
        transparency=app[KEY_TRANSPARENCY],
    )
    yield


def relay_ctx(
    webhooks: WebhookTargets | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The relay, its delivery workers and the webhook pusher; `webhooks` replaces the
    providers' registered webhook targets (a fake, for tests)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config, store, platform = app[CONFIG], app[STORE], app[PLATFORM]
        consent, queue, audit_log = app[CONSENT], app[EVENTS], app[AUDIT_LOG]
        # Payloads at rest are sealed under epoch keys, destroyed once all their messages left.
        sealer = PayloadSealer(config.data_path / "payload-keys")
        app[DELIVERY] = worker = DeliveryWorker(
            store, platform, consent, queue, config.relay, audit_events=audit_log,
            replica_id=config.replica_id, sealer=sealer,
        )  # fmt: skip
        app[RELAY] = relay = Relay(
            store, config, platform, consent, queue,
            outbox_depth=lambda: worker.depth, on_outbox=worker.wake, audit_events=audit_log,
            sealer=sealer,
        )  # fmt: skip
        app[GROUPS] = GroupService(
            store, config, platform, app[REACH], consent, queue, audit_events=audit_log,
            sealer=sealer, on_outbox=worker.wake, check_capacity=relay.check_capacity,
        )  # fmt: skip
        if isinstance(platform, HttpPlatform):
            app[INGRESS] = Ingress(
                config, platform, relay, set_consent=consent.set,
                third_party_keys=app[KEY_DIRECTORY].claim_for_platform, reach=app[REACH].allows,
            )  # fmt: skip
        else:
            app[UPLINK].bind(relay, app[KEY_DIRECTORY].claim_for_platform)
            app[UPLINK].bind_groups(app[GROUPS])
        app[WEBHOOK_PUSHER] = pusher = WebhookPusher(
            queue,
            webhooks or app[PROVIDERS].webhook,
            config.relay,
            app[EGRESS],
            app[EVENT_STREAMS],
        )
        await worker.start()
        pusher.start()
        yield
        await pusher.stop()
        await app[EVENT_STREAMS].close()
        # Requests have drained by now; deliveries under way get a share of the shutdown budget.
        await worker.stop(drain_s=config.server.shutdown_timeout_s / 4)

    return ctx


def metrics_listener_ctx(
    sockets: list[socket.socket] | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The separate /metrics listener, when `metrics.listen` names one; on `sockets` when the
    command line bound them already (a busy port is reported before the gateway starts)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG].metrics
        if not config.listen:
            yield
            return
        runner = web.AppRunner(ops.metrics_app(config.token), access_log=None)
        await runner.setup()
        try:
            if sockets is None:
                host, port = parse_listen(config.listen)
                await web.TCPSite(runner, host, port).start()
            for sock in sockets or ():
                await web.SockSite(runner, sock).start()
        except OSError:
            await runner.cleanup()
            raise
        yield
        await runner.cleanup()

    return ctx


def create_app(
    config: Config,
    *,
    metrics_sockets: list[socket.socket] | None = None,
    fake_provider_webhooks: WebhookTargets | None = None,
) -> web.Application:
    """Build the application for `config`; resources open when it starts.

    `metrics_sockets` are bound sockets of `metrics.listen` (else it is bound at start);
    `fake_provider_webhooks` stands in for the providers' registered webhook targets (tests).
    """
    app = web.Application(
        # The audit middleware sits outside problem+json rendering to see the final status.
        middlewares=[
            # Without trusted proxies the peer is the client: no layer to pass through.
            *(
                [forwarded_middleware(config.server.trusted_proxies)]
                if config.server.trusted_proxies
                else []
            ),
            request_middleware,
            audit.audit_middleware,
            problem_middleware,
            body_timeout_middleware(config.server.request_body_timeout_s),
            auth_middleware,
        ],
        client_max_size=config.server.max_body_bytes,
        # aiohttp closes a connection still waiting for a complete request head this long
        # after connecting or after its previous response (slow-header clients).
        handler_args={"keepalive_timeout": config.server.request_head_timeout_s},
    )
    app[CONFIG] = config
    log_shutdown(app)
    # Event sockets are served apart from aiohttp's requests: they close at shutdown here.
    app.on_shutdown.append(event_socket.close_sockets)
    app.cleanup_ctx.append(storage_ctx)
    app.cleanup_ctx.append(secrets_ctx)
    app.cleanup_ctx.append(audit.audit_ctx)
    app.cleanup_ctx.append(transparency_ctx)
    app.cleanup_ctx.append(offer_ctx)
    app.cleanup_ctx.append(onboarding_ctx)
    app.cleanup_ctx.append(gauges_ctx)
    # In dependency order: each collaborator is built after, and given, what it needs.
    app.cleanup_ctx.append(events_ctx)
    app.cleanup_ctx.append(media_ctx)
    app.cleanup_ctx.append(platform_ctx)
    app.cleanup_ctx.append(keys_ctx)
    app.cleanup_ctx.append(relay_ctx(fake_provider_webhooks))
    app.cleanup_ctx.append(metrics_listener_ctx(metrics_sockets))
    app.add_routes(ops.routes)
    app.add_routes(onboarding.routes)
    app.add_routes(oauth.routes)
    app.add_routes(audit.routes)
    app.add_routes(key_routes.routes)
    app.add_routes(key_transparency.routes)
    app.add_routes(media.routes)
    app.add_routes(messages.routes)
    app.add_routes(groups.routes)
    app.add_routes(events.routes)
    app.add_routes(sandbox.routes)
    app.add_routes(platform_webhook.routes)
    app.add_routes(portal.routes)
    return app
