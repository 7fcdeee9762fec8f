"""Module-level Prometheus metrics, named gateway_<subsystem>_<name>_<unit>, labels bounded."""

from __future__ import annotations

import platform
import time

from prometheus_client import Counter, Gauge, Histogram, Info, disable_created_metrics

from gateway import __version__

# The *_created series double the exposition and no dashboard or alert reads them.
disable_created_metrics()

BUILD_INFO = Info("gateway_build", "Build information of the running gateway")
BUILD_INFO.info({"version": __version__, "python": platform.python_version()})

HTTP_REQUESTS = Counter(
    "gateway_http_requests_total",
    "HTTP requests by route template, method and status",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "gateway_http_request_duration_seconds",
    "HTTP request duration by route template",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_FLIGHT = Gauge("gateway_http_requests_in_flight", "HTTP requests being handled")

STORE_COMMITS = Counter(
    "gateway_store_commits_total", "Write transactions committed (one per group commit)"
)
STORE_BATCH_SIZE = Histogram(
    "gateway_store_group_commit_size",
    "Write units sharing one commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
STORE_COMMIT_DURATION = Histogram(
    "gateway_store_commit_duration_seconds",
    "Time to run and commit one group of writes",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)

# -- Messages and delivery (relay). `type`: encrypted | plaintext; `direction`: to_platform
# (a provider's user to a platform user) | to_provider (a platform user to a provider's user).
MESSAGES_ACCEPTED = Counter(
    "gateway_messages_accepted_total",
    "Messages accepted (durable, 2xx answered) by service, type and direction",
    ["service", "type", "direction"],
)
MESSAGES_DELIVERED = Counter(
    "gateway_messages_delivered_total",
    "Messages handed to their recipient's side by service, type and direction",
    ["service", "type", "direction"],
)
MESSAGES_FAILED = Counter(
    "gateway_messages_failed_total",
    "Messages given up on (delivery_failed sent) by service, type and direction",
    ["service", "type", "direction"],
)
DELIVERY_LATENCY = Histogram(
    "gateway_delivery_latency_seconds",
    "Time from acceptance to delivery by service and direction",
    ["service", "direction"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)


# -- Groups (DESIGN §4.10). `kind`: group_message | room_key | group_membership; `target`:
# platform (outbox rows, one per platform member) | provider (events, per provider or member).
GROUP_CHANGES = Counter(
    "gateway_group_changes_total",
    "Groups created and membership changes by hub service and change (create | members)",
    ["service", "change"],
)
GROUP_ITEMS = Counter(
    "gateway_group_items_accepted_total",
    "Group messages and room key shares accepted by hub service and kind",
    ["service", "kind"],
)
GROUPS = Gauge("gateway_groups", "Groups with at least one member (database state)")
GROUP_MEMBERS = Gauge(
    "gateway_group_members", "Current memberships over every group (database state)"
)
GROUP_FANOUT = Counter(
    "gateway_group_fanout_total",
    "Delivery jobs created by group fan-out by hub service, kind and target",
    ["service", "kind", "target"],
)


def message_delivered(service: str, type_: str, direction: str, accepted_at_ms: int) -> None:
    """Count one delivered message and observe its accepted-to-delivered latency."""
    MESSAGES_DELIVERED.labels(service, type_, direction).inc()
    latency_s = max(0.0, time.time() - accepted_at_ms / 1000)
    DELIVERY_LATENCY.labels(service, direction).observe(latency_s)


# -- Gauges of database state, set by gateway.service.gauges (same value on every replica:
# aggregate them with max(), not sum()).
OUTBOX_DEPTH = Gauge("gateway_outbox_depth", "Messages accepted and not yet delivered")
OUTBOX_OLDEST_AGE = Gauge(
    "gateway_outbox_oldest_age_seconds", "Age of the oldest undelivered message (0 when none)"
)
EVENTS_BACKLOG = Gauge(
    "gateway_events_backlog",
    "Events queued for a provider and not yet acknowledged",
    # Bounded by the number of approved providers.
    ["client_id"],
)
ONE_TIME_KEYS_LOW_WATER = Gauge(
    "gateway_keys_one_time_keys_low_water",
    "Fewest unclaimed one-time keys any user of the provider has left",
    ["client_id"],
)
AUDIT_CHECKPOINT_AGE = Gauge(
    "gateway_audit_last_checkpoint_age_seconds",
    "Age of the newest signed checkpoint of this replica's audit chain (0 before the first)",
)
INTEROP_REQUESTS_OPEN = Gauge(
    "gateway_interop_requests_open", "Interop requests received and not yet decided"
)
INTEROP_REQUESTS_OVERDUE = Gauge(
    "gateway_interop_requests_overdue",
    "Open interop requests past their Art. 7(5) deadline",
)
KT_TREE_SIZE = Gauge("gateway_kt_tree_size", "Leaves (key changes) in the key transparency log")
KT_HEAD_AGE = Gauge(
    "gateway_kt_head_age_seconds",
    "Age of the newest signed key transparency tree head (0 before the first)",
)
GAUGES_REFRESHED = Gauge(
    "gateway_gauges_last_refresh_timestamp_seconds",
    "When the database-state gauges were last refreshed (Unix time)",
)

# -- Tokens, limits, audit.
TOKENS_ISSUED = Counter("gateway_tokens_issued_total", "Access tokens issued")
TOKENS_REFUSED = Counter(
    "gateway_tokens_refused_total",
    "Token requests refused by reason (the RFC 6749 §5.2 error code)",
    ["reason"],
)
RATE_LIMITED = Counter(
    "gateway_rate_limited_requests_total",
    "Requests answered 429 by route template",
    ["route"],
)
AUDIT_RECORDS = Counter("gateway_audit_records_written_total", "Audit records committed")
AUDIT_WRITE_FAILURES = Counter(
    "gateway_audit_write_failures_total", "Audit records of requests that could not be written"
)

# -- Delivery attempts to the platforms and webhook pushes to providers (relay).
DELIVERY_ATTEMPTS = Counter(
    "gateway_delivery_attempts_total",
    "Delivery attempts to the platforms by service and outcome (ok, retry, permanent, error)",
    ["service", "outcome"],
)
WEBHOOK_PUSHES = Counter(
    "gateway_events_webhook_pushes_total",
    "Event pushes to providers' webhooks by outcome (ok, retry)",
    ["outcome"],
)
