"""Configuration: frozen msgspec structs from a TOML file, overridden by GATEWAY_* variables."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

Port = Annotated[int, Meta(ge=0, le=65535)]
Positive = Annotated[int, Meta(gt=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[int, Meta(ge=0)]


class ConfigError(Exception):
    """A configuration value is missing or wrong; `key` names it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class _Section(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


ReplicaId = Annotated[str, Meta(pattern=r"^([A-Za-z0-9._-]{1,64})?\Z")]


class ServerConfig(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 8080
    # This process among the replicas sharing a PostgreSQL database (README "Scaling out"):
    # names its outbox leases and, by default there, its audit chain. Empty: the host name.
    replica_id: ReplicaId = ""
    # The URL third parties reach us at; the token endpoint's `aud` is derived from it.
    public_url: str = ""
    max_body_bytes: Positive = 1024 * 1024
    media_max_bytes: Positive = 100 * 1024 * 1024
    shutdown_timeout_s: PositiveFloat = 10.0
    # Slow clients: a complete request head within this, from connecting or from the previous
    # response (so it also bounds an idle keep-alive connection); then the whole body within
    # request_body_timeout_s, or 408 and the connection is closed.
    request_head_timeout_s: PositiveFloat = 15.0
    request_body_timeout_s: PositiveFloat = 60.0
    # Addresses or networks of reverse proxies whose X-Forwarded-For is believed (the client
    # address of per-IP limits); from anyone else the header is ignored. Environment: commas.
    trusted_proxies: list[str] = []


class StorageConfig(_Section, frozen=True):
    # Empty means `sqlite:///<data_dir>/gateway.db`.
    database_url: str = ""
    # Group commit: how many queued writes share one transaction at most.
    group_commit_max: Positive = 256
    pool_size: Positive = 10
    statement_timeout_s: PositiveFloat = 30.0


class LogConfig(_Section, frozen=True):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsConfig(_Section, frozen=True):
    # How often each replica re-reads the database-state gauges (deploy/METRICS.md).
    refresh_interval_s: PositiveFloat = 15.0
    # /metrics names every provider's client id: with a token, scrapers send
    # `Authorization: Bearer <token>`; with `listen` ("host:port"), /metrics is served there
    # only, on its own listener, and not on the public one. Both empty: open on the public one.
    token: str = ""
    listen: str = ""


class AuditConfig(_Section, frozen=True):
    # One hash chain per writer: replicas sharing a PostgreSQL database each need their own id.
    # Unset: `main` on SQLite, the replica id on PostgreSQL (see load_config).
    chain_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}\Z")] = "main"
    # A signed checkpoint after this many records or this many seconds, whichever comes first.
    checkpoint_every: Positive = 1000
    checkpoint_interval_s: PositiveFloat = 60.0


class KeysConfig(_Section, frozen=True):
    # A keys_low event goes to the owning provider when a user's stock falls below this.
    low_threshold: Positive = 10
    # One-time keys held per user at most (vodozemac publishes 50 at a time).
    max_one_time_keys: Positive = 200


class KtConfig(_Section, frozen=True):
    # Key transparency (DESIGN §4.12): a signed tree head at least this often.
    head_interval_s: PositiveFloat = 300.0


class MediaConfig(_Section, frozen=True):
    # Empty means `<data_dir>/media`.
    dir: str = ""
    expiry_days: Positive = 30
    cleanup_interval_s: PositiveFloat = 3600.0
    # Bytes of unexpired media one provider may hold at once (0: no quota); past it an upload
    # is refused with 413 /problems/media-quota-exceeded.
    quota_bytes_per_provider: NonNegative = 10 * 1024**3


class RelayConfig(_Section, frozen=True):
    # Delivery workers: conversations delivered at once (across the two rounds in flight, each
    # of up to claim_batch / claim_per_conversation conversations), rows claimed per round,
    # fallback poll.
    concurrency: Positive = 32
    claim_batch: Positive = 256
    # Consecutive rows of one conversation claimed per round, delivered in order.
    claim_per_conversation: Positive = 16
    poll_interval_s: PositiveFloat = 1.0
    # A claim not finished within the lease is taken over (a crashed replica's work).
    lease_s: PositiveFloat = 30.0
    # Retries: exponential backoff with full jitter, from retry_base_s up to retry_max_s.
    retry_base_s: PositiveFloat = 0.5
    retry_max_s: PositiveFloat = 300.0
    max_attempts: Positive = 10
    # Olm bodies are small (media travels separately); anything larger is refused.
    max_ciphertext_bytes: Positive = 64 * 1024
    # Backpressure: beyond these, new work gets 503 /problems/overloaded with Retry-After.
    max_outbox: Positive = 100_000
    max_provider_backlog: Positive = 100_000
    retry_after_s: Positive = 5
    # Webhook push to providers.
    push_timeout_s: PositiveFloat = 10.0
    push_batch: Positive = 100
    # Event WebSockets one provider may hold open on one replica; the next is a 409.
    max_sockets_per_provider: Positive = 8


class WebhooksConfig(_Section, frozen=True):
    # Let webhooks reach loopback addresses (and plain http to them): local development only.
    allow_loopback: bool = False


class PlatformEndpoint(_Section, frozen=True):
    # Where native send payloads for this service are POSTed.
    url: str = ""
    # Meta's app secret: X-Hub-Signature-256 of incoming webhooks is checked against it.
    app_secret: str = ""
    # The hub.verify_token of the GET verification handshake.
    verify_token: str = ""
    # Where platform users' key bundles are claimed: GET <keys_url>?user=<native id>.
    keys_url: str = ""


class HttpPlatformConfig(_Section, frozen=True):
    timeout_s: PositiveFloat = 10.0
    # A standalone sandbox (`dma-gateway sandbox serve`): one base URL for every service's send
    # URL (<sandbox_url>/<service>/messages) and keys URL (<sandbox_url>/<service>/keys), where
    # `services` does not name them (DESIGN §4.8).
    sandbox_url: str = ""
    # The webhook signing secret of every service whose own `app_secret` is empty.
    app_secret: str = ""
    services: dict[str, PlatformEndpoint] = {}

    def expanded(self) -> HttpPlatformConfig:
        """`services` with `sandbox_url` and `app_secret` applied to each service."""
        base = self.sandbox_url.rstrip("/")
        services = dict(self.services)
        names = ("whatsapp", "messenger", "instagram") if base else tuple(services)
        for name in names:
            endpoint = services.get(name, PlatformEndpoint())
            services[name] = msgspec.structs.replace(
                endpoint,
                url=endpoint.url or (f"{base}/{name}/messages" if base else ""),
                keys_url=endpoint.keys_url or (f"{base}/{name}/keys" if base else ""),
                app_secret=endpoint.app_secret or self.app_secret,
            )
        return msgspec.structs.replace(self, services=services)


class FunctionalityConfig(_Section, frozen=True):
    state: Literal["available", "planned"] = "available"
    planned_for: str | None = None


class ServiceConfig(_Section, frozen=True):
    enabled: bool = True
    e2ee: Literal["required", "optional"] = "required"
    functionalities: dict[str, FunctionalityConfig] = {}
    # The largest group hosted on this service (DESIGN §4.10), stated in the offer.
    group_max_members: Annotated[int, Meta(ge=2, le=4096)] = 250


class AuthConfig(_Section, frozen=True):
    # Access tokens (JWT, EdDSA) live this long; a rotated signing key stays published as long.
    access_token_ttl_s: Positive = 600
    # RFC 7523 client assertions may expire at most this far ahead.
    assertion_max_lifetime_s: Positive = 300
    # Tolerated clock skew for exp/iat/nbf of client assertions.
    clock_leeway_s: NonNegative = 60
    # How long a replica trusts its cached provider state (active/suspended); a suspension on
    # this replica takes effect at once, on another one within this bound.
    provider_state_ttl_s: PositiveFloat = 1.0
    # Verified access tokens kept in memory so the hot path skips the signature check.
    token_cache_max: Positive = 10000


class BucketConfig(_Section, frozen=True):
    """A token bucket: `burst` requests at once, refilled at `rate_per_s`."""

    rate_per_s: PositiveFloat
    burst: Positive


class LimitsConfig(_Section, frozen=True):
    enabled: bool = True
    # Per provider, by route class (the scope a route requires; `default` for the others).
    messages: BucketConfig = BucketConfig(rate_per_s=50.0, burst=200)
    events: BucketConfig = BucketConfig(rate_per_s=20.0, burst=60)
    keys: BucketConfig = BucketConfig(rate_per_s=20.0, burst=100)
    lookup: BucketConfig = BucketConfig(rate_per_s=5.0, burst=30)
    media: BucketConfig = BucketConfig(rate_per_s=5.0, burst=20)
    default: BucketConfig = BucketConfig(rate_per_s=10.0, burst=50)
    # Per client IP, on the anonymous endpoints.
    intake: BucketConfig = BucketConfig(rate_per_s=0.05, burst=5)
    token: BucketConfig = BucketConfig(rate_per_s=1.0, burst=20)


def _default_services() -> dict[str, ServiceConfig]:
    basic = {
        "text": FunctionalityConfig(),
        "images": FunctionalityConfig(),
        "voice_messages": FunctionalityConfig(),
        "video": FunctionalityConfig(),
        "files": FunctionalityConfig(),
        "reactions": FunctionalityConfig(),
        "replies": FunctionalityConfig(),
        "receipts": FunctionalityConfig(),
        "typing": FunctionalityConfig(),
        # Art. 7(2)(b) and (c) give 2 and 4 years from designation.
        "group_text": FunctionalityConfig(),
        "group_files": FunctionalityConfig(),
        "voice_calls": FunctionalityConfig(state="planned", planned_for="2028-03-01"),
        "video_calls": FunctionalityConfig(state="planned", planned_for="2028-03-01"),
    }
    return {
        "whatsapp": ServiceConfig(e2ee="required", functionalities=basic, group_max_members=1024),
        "messenger": ServiceConfig(e2ee="required", functionalities=basic),
        "instagram": ServiceConfig(e2ee="optional", functionalities=basic),
    }


class RequestsConfig(_Section, frozen=True):
    """Deadlines of the request process, in working days (Mon-Fri, less `holidays`)."""

    # Eligibility answered within 20 working days (Commission decision DMA.100204).
    eligibility_working_days: Positive = 20
    # The requester may comment on a plan (or dispute it, or a rejection) this long.
    comment_working_days: Positive = 10
    # A dispute is reviewed within this long.
    review_working_days: Positive = 20
    # Public holidays (YYYY-MM-DD) that are not working days.
    holidays: list[Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]] = []


class Config(_Section, frozen=True):
    data_dir: str = "var"
    admin_token: str = ""
    platforms: Literal["sandbox", "http"] = "sandbox"
    request_deadline_days: Positive = 90
    requests: RequestsConfig = RequestsConfig()
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    audit: AuditConfig = AuditConfig()
    keys: KeysConfig = KeysConfig()
    kt: KtConfig = KtConfig()
    media: MediaConfig = MediaConfig()
    relay: RelayConfig = RelayConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    http_platform: HttpPlatformConfig = HttpPlatformConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    services: dict[str, ServiceConfig] = msgspec.field(default_factory=_default_services)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def media_path(self) -> Path:
        return Path(self.media.dir) if self.media.dir else self.data_path / "media"

    @property
    def database_url(self) -> str:
        return self.storage.database_url or f"sqlite:///{self.data_path / 'gateway.db'}"

    @property
    def replica_id(self) -> str:
        return self.server.replica_id or default_replica_id()

    @property
    def base_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        return f"http://{self.server.host}:{self.server.port}"


# Documented short names (DESIGN §4.1); any other key is GATEWAY_<SECTION>__<KEY>.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "GATEWAY_DATABASE_URL": ("storage", "database_url"),
    "GATEWAY_HOST": ("server", "host"),
    "GATEWAY_PORT": ("server", "port"),
    "GATEWAY_PUBLIC_URL": ("server", "public_url"),
    "GATEWAY_ADMIN_TOKEN": ("admin_token",),
    "GATEWAY_DATA_DIR": ("data_dir",),
    "GATEWAY_PLATFORMS": ("platforms",),
    "GATEWAY_LOG_FORMAT": ("log", "format"),
    "GATEWAY_LOG_LEVEL": ("log", "level"),
    "GATEWAY_REPLICA_ID": ("server", "replica_id"),
}


def default_replica_id() -> str:
    """The host name, in the replica id alphabet (a container's or pod's name)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64]
    return name or "gateway"


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(path), "is nested under a value that is not a table")
        node = child
    node[path[-1]] = value


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("GATEWAY_") or name.startswith("GATEWAY_TEST_"):
            continue
        path = ENV_ALIASES.get(name)
        if path is None:
            path = tuple(p.lower() for p in name[len("GATEWAY_") :].split("__"))
        _set_path(tree, path, value)
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _lists_from_env(over: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A variable for a list key holds comma-separated items."""
    out = dict(over)
    for key, value in over.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            out[key] = _lists_from_env(value, default)
        elif isinstance(value, str) and isinstance(default, list):
            out[key] = [item.strip() for item in value.split(",") if item.strip()]
    return out


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` for IPv6) as a (host, port) pair; ValueError if not one."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(value)
    return host, int(port)


def _key_of(error: msgspec.ValidationError) -> tuple[str, str]:
    message = str(error)
    problem, _, where = message.partition(" - at `$")
    where = where.rstrip("`").lstrip(".")
    if problem.startswith("Object contains unknown field `"):
        field = problem.split("`")[1]
        return (f"{where}.{field}" if where else field), "unknown key"
    return (where or "config"), problem


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file (if any), apply environment overrides, merge both onto the defaults
    (tables key by key, at every depth), validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("--config", f"file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"invalid TOML: {exc}") from None
    defaults = msgspec.to_builtins(Config())
    overrides = _lists_from_env(_env_overrides(os.environ if env is None else env), defaults)
    given = _merge(raw, overrides)
    # Onto the defaults at every depth: `[services.instagram] e2ee = ...` keeps the other
    # services and Instagram's functionalities; `limits.messages.burst` keeps `rate_per_s`.
    tree = _merge(defaults, given)
    try:
        config = msgspec.convert(tree, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(*_key_of(exc)) from None
    audit = given.get("audit")
    chain_set = isinstance(audit, dict) and "chain_id" in audit
    return _replica_defaults(_check(config), chain_set=chain_set)


def _replica_defaults(config: Config, *, chain_set: bool) -> Config:
    # Each replica on a shared PostgreSQL database writes its own audit chain, so unless one
    # is configured the chain is named after the replica; SQLite has one writer: `main`.
    server = msgspec.structs.replace(config.server, replica_id=config.replica_id)
    config = msgspec.structs.replace(config, server=server)
    if chain_set or config.database_url.startswith("sqlite:"):
        return config
    audit = msgspec.structs.replace(config.audit, chain_id=config.replica_id)
    return msgspec.structs.replace(config, audit=audit)


def _check(config: Config) -> Config:
    sandbox_url = config.http_platform.sandbox_url
    if sandbox_url and not sandbox_url.startswith(("http://", "https://")):
        raise ConfigError("http_platform.sandbox_url", "must be an http:// or https:// URL")
    config = msgspec.structs.replace(config, http_platform=config.http_platform.expanded())
    url = config.database_url
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError("storage.database_url", "must start with sqlite:/// or postgresql://")
    unknown = set(config.services) - {"whatsapp", "messenger", "instagram"}
    if unknown:
        raise ConfigError(f"services.{sorted(unknown)[0]}", "unknown service")
    if config.server.public_url and not config.server.public_url.startswith(
        ("http://", "https://")
    ):
        raise ConfigError("server.public_url", "must be an http:// or https:// URL")
    for proxy in config.server.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                "server.trusted_proxies", f"not an IP address or network: {proxy!r}"
            ) from None
    if config.metrics.listen:
        try:
            parse_listen(config.metrics.listen)
        except ValueError:
            raise ConfigError("metrics.listen", "must be host:port") from None
    return config
