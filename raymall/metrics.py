"""Prometheus metrics, aggregated across every process on a node.

Replicas and actors are separate processes, so raymall uses prometheus-client's
multiprocess mode: each process writes its samples to files under
``PROMETHEUS_MULTIPROC_DIR`` (``var/metrics/`` by default, set by ``raymall serve`` for
every Ray worker through the job's runtime_env), and ``/metrics`` on any replica merges
them. The directory is wiped when ``raymall serve`` starts. In a cluster, Prometheus
scrapes ``/metrics`` on every node (see deploy/prometheus.yml).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "raymall_http_requests_total",
    "HTTP requests by route, method and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "raymall_http_request_duration_seconds",
    "HTTP request latency by route and method",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_ERRORS = Counter(
    "raymall_http_errors_total",
    "HTTP 4xx/5xx answers by route and error code",
    ["route", "code"],
)
AVAILABILITY_READS = Counter(
    "raymall_availability_reads_total",
    "SKU availabilities read by replicas, by source (mirror: the read model; owner: a shard call)",
    ["source"],
)
AVAILABILITY_LAG = Histogram(
    "raymall_availability_lag_seconds",
    "Time from a shard publishing committed availability to a replica applying it",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
AVAILABILITY_PUBLISH_ERRORS = Counter(
    "raymall_availability_publish_errors_total",
    "Availability read-model writes that failed (retried), by shard",
    ["shard"],
)
CACHE_EVENTS = Counter(
    "raymall_cache_events_total",
    "Detail cache hits, misses and bloom-filter rejects",
    ["cache", "event"],
)
RATE_LIMIT_DECISIONS = Counter(
    "raymall_rate_limit_decisions_total",
    "Rate limiter decisions by rule",
    ["rule", "decision"],
)
PASSWORD_HASHES = Counter(
    "raymall_password_hashes_total",
    "Password hashes computed, by operation (hash, verify, dummy: an unknown name's verify)",
    ["op"],
)
INVENTORY_BATCH_SIZE = Histogram(
    "raymall_inventory_batch_ops",
    "Operations per inventory group commit",
    ["shard"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
INVENTORY_COMMIT_LATENCY = Histogram(
    "raymall_inventory_commit_seconds",
    "Inventory group-commit transaction latency",
    ["shard"],
    buckets=LATENCY_BUCKETS,
)
INVENTORY_OPS = Counter(
    "raymall_inventory_ops_total",
    "Inventory operations by kind and result",
    ["kind", "result"],
)
ORDER_TRANSITIONS = Counter(
    "raymall_order_transitions_total",
    "Order state transitions",
    ["from_status", "to_status", "reason"],
)
FLASH_OUTCOMES = Counter(
    "raymall_flash_sale_outcomes_total",
    "Flash-sale purchase outcomes",
    ["outcome"],
)
COUPON_CLAIMS = Counter(
    "raymall_coupon_claims_total",
    "Coupon claim outcomes (ok, replayed, or the refusal's code; local: decided by the "
    "replica without a shard call)",
    ["outcome", "local"],
)
OUTBOX_LAG = Gauge(
    "raymall_outbox_lag_seconds",
    "Age of the oldest unpublished outbox event",
    multiprocess_mode="max",
)
OUTBOX_PUBLISHED = Counter("raymall_outbox_published_total", "Outbox events published", ["topic"])
RECOMMENDER_LATENCY = Histogram(
    "raymall_recommender_seconds",
    "Recommender query latency",
    ["op"],
    buckets=LATENCY_BUCKETS,
)
RECOMMENDER_INDEX_SIZE = Gauge(
    "raymall_recommender_index_size",
    "Vectors in the product index",
    multiprocess_mode="max",
)
RECOMMENDER_SIMILAR_CACHE = Counter(
    "raymall_recommender_similar_cache_total",
    "Similar-product lookups answered from the cache (hit) or the index (miss)",
    ["result"],
)
FEED_CONNECTED = Gauge(
    "raymall_feed_connected",
    "1 while a replica's Redis pub/sub feed is subscribed and resynced (min over processes)",
    ["feed"],
    multiprocess_mode="livemin",
)
FEED_RESYNCS = Counter(
    "raymall_feed_resyncs_total",
    "Feed (re)subscriptions completed, each followed by its consumers' snapshot reloads",
    ["feed"],
)
FEED_HANDLER_ERRORS = Counter(
    "raymall_feed_handler_errors_total",
    "Feed messages whose handler raised (logged; the feed goes on)",
    ["feed", "channel"],
)
REVOCATION_ACK_TIMEOUTS = Counter(
    "raymall_revocation_ack_timeouts_total",
    "Revocation writes that returned before every replica acknowledged their message",
)
RATE_LIMIT_MODE = Gauge(
    "raymall_ratelimit_mode",
    "1 for the rate-limit mode in force: shared (Redis) or local (per-replica buckets)",
    ["mode"],
    multiprocess_mode="livemax",
)

CONSUMER_RETRIES = Counter(
    "raymall_consumer_retries_total",
    "Event deliveries retried after their handler failed, by consumer group",
    ["group"],
)
CONSUMER_DEAD_LETTERS = Counter(
    "raymall_consumer_dead_letters_total",
    "Events moved to the dead-letter stream (handler kept failing, or malformed), by group",
    ["group"],
)
ACTOR_RESTARTS = Counter(
    "raymall_actor_restarts_total",
    "Actors restarted by Ray after a crash (the constructor ran again), by actor name",
    ["actor"],
)
GROUP_COMMIT_QUEUE = Gauge(
    "raymall_group_commit_queue_ops",
    "Operations queued for a shard's group commit when its last batch was taken",
    ["shard"],
    multiprocess_mode="livemax",
)
LOW_STOCK_SKUS = Gauge(
    "raymall_inventory_low_stock_skus",
    "SKUs of a shard with committed availability at or below low_stock_units (sold out included)",
    ["shard"],
    multiprocess_mode="livemax",
)
LOGIN_FAILURES = Counter(
    "raymall_login_failures_total",
    "Refused sign-ins by error code (invalid_credentials, account_blocked, rate_limited, ...)",
    ["reason"],
)

GC_PAUSE = Histogram(
    "raymall_gc_pause_seconds",
    "Full (generation 2) garbage collections, each a pause of its process, by process",
    ["process"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
GC_SECONDS = Counter(
    "raymall_gc_seconds",
    "Time spent in garbage collections, by process and generation",
    ["process", "generation"],
)


def render() -> tuple[bytes, str]:
    """The node's merged exposition (multiprocess) or this process's (single process)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
