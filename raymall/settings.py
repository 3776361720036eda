"""One settings object, read once from ``RAYMALL_*`` variables and an optional ``.env``.

The app builder (``raymall.launcher.app``) reads it, resolves the embedded defaults into concrete
URLs, and passes the resolved copy into every deployment and actor as a constructor
argument. Actors never read the environment themselves.

Guarantees:
- an invalid value fails at start-up with a message that names the variable;
- in ``RAYMALL_ENV=prod`` a missing or weak secret is a start-up error;
- in dev/test a generated secret is kept under ``var/`` so tokens survive restarts.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from raymall.passwords import PasswordHasher
from raymall.ports import MAX_HTTP_PORT

MIN_SECRET_BYTES = 32
SECRETS = ("jwt_secret", "payment_secret", "flash_token_secret", "carrier_secret")
_WEAK_SECRETS = {"changeme", "secret", "change-me", "password", "raymall", "dev"}


class ConfigError(RuntimeError):
    """Configuration is invalid; the message names the offending variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAYMALL_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["dev", "test", "prod"] = "dev"
    var_dir: Path = Path("var")
    namespace: str = "raymall"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    trace_otlp_endpoint: str | None = None
    trace_file: bool = False
    trace_sample_ratio: float = Field(0.1, ge=0, le=1)
    trace_sample_slice_ms: int = Field(100, ge=0, le=60_000)
    # keep what a process built at startup out of later garbage collections (raymall.gcwatch)
    gc_freeze: bool = True
    # allocations (net of frees) between young collections; CPython's own default is 700,
    # at which a replica under load spends about a tenth of its CPU collecting (raymall.gcwatch)
    gc_young_threshold: int = Field(20_000, ge=100, le=1_000_000)

    # stores: None means the embedded default under var_dir
    database_url: str | None = None
    redis_url: str | None = None
    milvus_uri: str | None = None
    db_pool_size: int = Field(10, ge=1, le=200)

    # secrets
    jwt_secret: SecretStr | None = None
    payment_secret: SecretStr | None = None
    flash_token_secret: SecretStr | None = None  # HMAC key of flash purchase tokens
    carrier_secret: SecretStr | None = None  # HMAC key of the carrier's tracking callbacks

    # auth
    access_token_ttl_s: int = Field(900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(14 * 86_400, ge=300, le=365 * 86_400)
    jwt_leeway_s: int = Field(30, ge=0, le=60)
    # while Redis is unreachable, replicas verify tokens against their revocation mirror
    # as of the disconnect; > 0: refuse (503) once it has been down this long
    revocation_max_stale_s: float = Field(0, ge=0)
    # a logout, refresh or block returns once every replica listening has applied it, or
    # after this long (0: without waiting)
    revocation_ack_timeout_s: float = Field(1.0, ge=0, le=30)
    login_max_failures_per_account: int = Field(5, ge=1)
    login_max_failures_per_ip: int = Field(20, ge=1)
    login_failure_window_s: int = Field(300, ge=1)
    # sign-in limits beyond one client (raymall/auth/guard.py)
    login_max_failures_per_account_total: int = Field(20, ge=1)
    login_max_unknown_names_per_client: int = Field(20, ge=1)
    login_device_ttl_s: int = Field(180 * 86_400, ge=3_600, le=730 * 86_400)
    register_max_per_client: int = Field(5, ge=1)
    register_max_unknown_clients: int = Field(600, ge=1)
    register_window_s: int = Field(3_600, ge=1)
    demo_admin_password: SecretStr | None = None
    demo_user_password: SecretStr | None = None
    password_hasher: Literal["argon2id", "bcrypt"] = "argon2id"  # noqa: S105 (a name)
    argon2_time_cost: int = Field(2, ge=1, le=10)
    argon2_memory_kib: int = Field(19_456, ge=8_192, le=1_048_576)
    argon2_parallelism: int = Field(1, ge=1, le=16)
    bcrypt_rounds: int = Field(12, ge=4, le=16)
    password_hash_threads: int = Field(2, ge=1, le=32)
    password_hash_queue: int = Field(64, ge=2, le=10_000)
    permission_cache_ttl_s: float = Field(30, ge=1, le=3600)
    # proxies in front of Serve that append X-Forwarded-For (0: use the socket peer)
    trusted_proxy_hops: int = Field(0, ge=0, le=5)

    # HTTP and Serve
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=1, le=MAX_HTTP_PORT)  # the block: raymall.ports
    ingress_replicas: int = Field(2, ge=1, le=64)
    # Serve's autoscaler sizes the ingress between min and max replicas, aiming at this many
    # requests in flight per replica; off: ingress_replicas, fixed
    ingress_autoscaling: bool = False
    ingress_min_replicas: int = Field(1, ge=1, le=256)
    ingress_max_replicas: int = Field(4, ge=1, le=256)
    ingress_target_ongoing_requests: float = Field(32.0, gt=0, le=10_000)
    ingress_upscale_delay_s: float = Field(10.0, ge=0, le=3_600)
    ingress_downscale_delay_s: float = Field(120.0, ge=0, le=86_400)
    # the window of request counts each decision averages (as Serve's default); replicas
    # report every 10 s (RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S), so keep it longer
    ingress_autoscaling_look_back_s: float = Field(30.0, gt=0, le=3_600)
    ingress_num_cpus: float = Field(0.25, gt=0, le=8)
    max_ongoing_requests: int = Field(256, ge=1, le=10_000)
    access_log: bool = False
    ha_proxy: bool = True
    # the local Ray instance's object store (shared memory), in MiB; unset: Ray's default,
    # 30% of the machine's memory (a local `raymall serve` only; `ray start` sets its own)
    ray_object_store_mb: int | None = Field(None, ge=75, le=1_048_576)
    # Serve watches every request for a client disconnect (two tasks per request) unless
    # told not to; raymall tells it not to (deployments/serve_http.py)
    serve_watch_disconnects: bool = False
    proxy_location: Literal["EveryNode", "HeadOnly"] = "EveryNode"
    # custom Ray resources each ingress replica needs, e.g. {"ingress": 0.01} to keep the
    # replicas on nodes that offer it (JSON in RAYMALL_INGRESS_RESOURCES)
    ingress_resources: dict[str, float] = Field(default_factory=dict)
    # browser origins allowed by CORS, e.g. ["https://shop.example"] (JSON); empty: no CORS
    cors_origins: list[str] = Field(default_factory=list)
    # clients reach the API over HTTPS only: responses carry Strict-Transport-Security
    behind_tls: bool = False
    # bearer token for /metrics, /docs, /redoc, /openapi.json and /readyz details in prod
    # (unset in prod: those stay closed); dev/test leave them open
    ops_token: SecretStr | None = None
    # how long each /readyz check (a database ping, every actor's answer...) may take
    # before it counts as failed
    readiness_timeout_s: float = Field(2.0, gt=0, le=60)
    media_dir: Path | None = None
    max_upload_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    # uploaded images in an S3-compatible bucket: s3://bucket[/prefix]; unset: media_dir
    media_url: str | None = None
    media_s3_endpoint_url: str | None = None  # MinIO, Ceph, moto...; unset: AWS
    media_s3_region: str = "us-east-1"
    # unset: boto3's own chain (AWS_* variables, instance or pod role)
    media_s3_access_key_id: SecretStr | None = None
    media_s3_secret_access_key: SecretStr | None = None
    media_s3_timeout_s: float = Field(5.0, gt=0, le=120)

    # actors
    inventory_shards: int = Field(4, ge=1, le=1024)
    order_shards: int = Field(2, ge=1, le=1024)
    actor_num_cpus: float = Field(0.05, ge=0, le=8)
    group_commit_window_ms: float = Field(2.0, ge=0, le=100)
    group_commit_max_ops: int = Field(500, ge=1, le=10_000)
    low_stock_units: int = Field(5, ge=0)
    reservation_ttl_s: int = Field(1800, ge=1)
    inventory_sweep_interval_s: float = Field(0.5, gt=0, le=60)
    inventory_key_cache: int = Field(200_000, ge=0)
    inventory_client_window_ms: float = Field(1.0, ge=0, le=50)
    inventory_client_max_batch: int = Field(512, ge=1, le=10_000)
    inventory_retry_s: float = Field(30.0, gt=0, le=600)

    # orders and payments
    order_timeout_s: float = Field(1800, gt=0)
    flash_order_timeout_s: float = Field(900, gt=0)
    payment_callback_window_s: int = Field(300, ge=1)
    payment_callback_delay_s: float = Field(0.05, ge=0)
    payment_callback_attempts: int = Field(5, ge=1, le=50)
    # refused payment callbacks (not signed and fresh) audited per minute, in all and per
    # client address; past these they answer 429 unaudited (a good signature is never limited)
    payment_callback_refusals_per_min: int = Field(600, ge=1)
    payment_callback_refusals_per_ip_per_min: int = Field(60, ge=1)
    payment_callback_url: str | None = None  # None: http://{http_host}:{http_port}
    order_sweep_interval_s: float = Field(1.0, gt=0, le=60)
    # reservations outlive their order's deadline by this much: a safety net, never the path
    order_reservation_grace_s: float = Field(600, ge=1)
    order_max_lines: int = Field(50, ge=1, le=500)
    # returns: asked within this many days of delivery (or completion, without a delivery)
    return_window_days: int = Field(14, ge=0, le=365)
    # the provider's refund callback (None: /payments/refund-callback beside the payment one)
    refund_callback_url: str | None = None

    # shipping: the simulated carrier (deployments/carrier.py) tracks shipments whose
    # carrier is carrier_name, one tracking event every carrier_step_ms
    carrier_name: str = Field("raycarrier", pattern=r"^[a-z0-9_-]{1,32}$")
    carrier_step_ms: int = Field(500, ge=0, le=86_400_000)
    carrier_callback_window_s: int = Field(300, ge=1)
    carrier_callback_attempts: int = Field(5, ge=1, le=50)
    carrier_callback_url: str | None = None  # None: http://{http_host}:{http_port}
    # a delivered order completes by itself this many days after delivery
    auto_complete_days: float = Field(7, gt=0, le=3_650)

    # flash sales
    flash_batch_window_ms: float = Field(2.0, ge=0, le=50)  # replica-side purchase batching
    flash_batch_max: int = Field(256, ge=1, le=10_000)
    flash_sold_out_ttl_s: float = Field(1.0, gt=0, le=60)  # local sold-out flag lifetime
    flash_sale_cache_ttl_s: float = Field(5.0, gt=0, le=3_600)  # replica copy of an event
    # live viewers of flash sales (GET /flash-sales/{id}/events) one replica serves at once;
    # each holds a request slot, so the ingress's max_ongoing_requests is raised by as many
    flash_stream_max_clients: int = Field(4096, ge=0, le=100_000)
    # rate limits of POST /flash-sales/{id}/purchase, per second (0 turns a rule off);
    # the burst is what a bucket admits at once
    flash_rate_user_per_s: int = Field(5, ge=0)
    flash_rate_user_burst: int = Field(10, ge=0)
    flash_rate_ip_per_s: int = Field(100, ge=0)
    flash_rate_event_per_s: int = Field(20_000, ge=0)
    # lifetime of a flash purchase token (GET /flash-sales/{id}/token)
    flash_token_ttl_s: int = Field(60, ge=5, le=3_600)

    # cart
    cart_max_qty_per_line: int = Field(99, ge=1, le=10_000)
    cart_max_lines: int = Field(100, ge=1, le=1_000)
    cart_guest_ttl_s: int = Field(7 * 86_400, ge=60)

    # outbox relay and event stream consumers
    events_stream: str = "raymall:events"
    events_stream_maxlen: int = Field(1_000_000, ge=1_000)
    outbox_poll_interval_s: float = Field(0.1, gt=0, le=10)
    outbox_idle_poll_interval_s: float = Field(1.0, gt=0, le=60)
    outbox_batch: int = Field(500, ge=1, le=10_000)
    # nice value of the relay's process: publishing and the consumers yield the CPU to
    # request serving during a burst and catch up after it (0: as every other actor)
    outbox_relay_niceness: int = Field(10, ge=0, le=19)
    consumer_max_deliveries: int = Field(5, ge=1, le=100)
    consumer_retry_idle_ms: int = Field(1_000, ge=10)

    # catalog cache
    cache_ttl_s: int = Field(300, ge=1)
    cache_null_ttl_s: int = Field(30, ge=1)
    cache_enabled: bool = True  # off: every detail read goes to the database (benchmarks)
    cache_ttl_jitter: float = Field(0.1, ge=0, le=0.5)  # +/- fraction of the TTL
    # listing pages (GET /products) kept this long; catalog writes invalidate them at once
    listing_cache_ttl_s: float = Field(30.0, ge=0, le=3600)
    bloom_capacity: int = Field(1_000_000, ge=1_000, le=500_000_000)
    bloom_error_rate: float = Field(0.01, gt=0, lt=0.5)
    bloom_refresh_s: int = Field(300, ge=10)  # re-add every product id (heals lost bits)

    # availability read model (raymall.catalog.availability): shards publish committed
    # availability; replicas read their mirror of it instead of calling the shards
    availability_read_model: bool = True
    availability_heartbeat_ms: int = Field(250, ge=10, le=10_000)
    # a replica trusts a shard's values while it heard from it this recently
    availability_trust_ms: int = Field(1_000, ge=50, le=60_000)

    # recommender
    recommender: bool = True
    recommender_collection: str = Field(
        "raymall_products", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200
    )
    milvus_token: SecretStr | None = None
    recommender_poll_interval_s: float = Field(0.5, gt=0, le=60)
    recommender_outbox_grace_s: float = Field(30.0, ge=0, le=3_600)
    recommender_torch_threads: int = Field(1, ge=1, le=64)
    recommender_half_life_days: float = Field(14.0, gt=0, le=3_650)
    recommender_views_kept: int = Field(50, ge=1, le=1_000)
    recommender_similar_cache: int = Field(50_000, ge=0, le=10_000_000)
    recommender_embed_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    # products held in memory (actor and replicas) for exact reads; 0: reads go to Milvus
    recommender_table_max_rows: int = Field(200_000, ge=0, le=5_000_000)
    recommender_replica_refresh_s: float = Field(0.5, gt=0, le=60)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("sqlite") or v.startswith("mysql")):
            raise ValueError("must be a sqlite:// or mysql+pymysql:// URL")
        return v

    @field_validator("media_url")
    @classmethod
    def _check_media_url(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?", v):
            raise ValueError("must be an s3://bucket[/prefix] URL")
        return v

    @model_validator(mode="after")
    def _check_ingress_autoscaling(self) -> Settings:
        if self.ingress_autoscaling and self.ingress_max_replicas < self.ingress_min_replicas:
            raise ValueError(
                "RAYMALL_INGRESS_MAX_REPLICAS must be at least RAYMALL_INGRESS_MIN_REPLICAS"
            )
        return self

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return v

    @model_validator(mode="after")
    def _check_ops_token(self) -> Settings:
        if self.env == "prod" and self.ops_token is not None:
            if _is_weak(self.ops_token.get_secret_value()):
                raise ValueError(
                    f"RAYMALL_OPS_TOKEN is too weak: use at least {MIN_SECRET_BYTES} random "
                    "characters"
                )
        return self

    @model_validator(mode="after")
    def _check_secrets(self) -> Settings:
        if self.env == "prod":
            for name in SECRETS:
                value: SecretStr | None = getattr(self, name)
                if value is None:
                    raise ValueError(f"RAYMALL_{name.upper()} is required when RAYMALL_ENV=prod")
                if _is_weak(value.get_secret_value()):
                    raise ValueError(
                        f"RAYMALL_{name.upper()} is too weak: use at least "
                        f"{MIN_SECRET_BYTES} random characters"
                    )
        return self

    # ---- derived values -------------------------------------------------------------
    @property
    def sqlite_path(self) -> Path:
        return self.var_dir / "raymall.db"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path.resolve()}"

    @property
    def resolved_milvus_uri(self) -> str:
        return self.milvus_uri or str((self.var_dir / "milvus.db").resolve())

    @property
    def resolved_media_dir(self) -> Path:
        return (self.media_dir or self.var_dir / "media").resolve()

    def password_hasher_config(self) -> PasswordHasher:
        return PasswordHasher(
            algorithm=self.password_hasher,
            bcrypt_rounds=self.bcrypt_rounds,
            argon2_time_cost=self.argon2_time_cost,
            argon2_memory_kib=self.argon2_memory_kib,
            argon2_parallelism=self.argon2_parallelism,
        )

    def secret(
        self,
        name: Literal["jwt_secret", "payment_secret", "flash_token_secret", "carrier_secret"],
    ) -> str:
        value: SecretStr | None = getattr(self, name)
        if value is None:
            raise ConfigError(f"RAYMALL_{name.upper()} is not resolved; call with_secrets()")
        return value.get_secret_value()

    def with_secrets(self) -> Settings:
        """Fill missing dev/test secrets from files under var/ (generated once, mode 0600)."""
        update: dict[str, SecretStr] = {}
        for name in SECRETS:
            if getattr(self, name) is None:
                update[name] = SecretStr(_dev_secret(self.var_dir / f"{name}.key"))
        return self.model_copy(update=update) if update else self


def _is_weak(value: str) -> bool:
    return len(value) < MIN_SECRET_BYTES or value.lower() in _WEAK_SECRETS or len(set(value)) < 8


def _dev_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(value)
    return value


def load_settings(**overrides: object) -> Settings:
    """Read the settings once; raise ConfigError naming the variable on bad input."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
            var = f"RAYMALL_{loc[0].upper()}" if loc else "configuration"
            msg = err.get("msg", "invalid")
            problems.append(msg if var in msg else f"{var}: {msg}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc
