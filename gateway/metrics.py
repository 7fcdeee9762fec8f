"""Module-level Prometheus metrics, named gateway_<subsystem>_<name>_<unit>, labels bounded."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from gateway import __version__

BUILD_INFO = Info("gateway_build", "Build information of the running gateway")
BUILD_INFO.info({"version": __version__})

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
