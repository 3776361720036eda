import pickle
import threading

import pytest

from raymall.errors import DomainError, OutOfStock, RateLimited, Unavailable
from raymall.hashing import shard_for, stable_hash
from raymall.ids import Snowflake, id_time_ms, now_ms


def test_stable_hash_is_fixed_across_processes() -> None:
    # Known values: a change here would re-route every SKU in a running cluster.
    assert stable_hash("sku-1") == stable_hash("sku-1")
    assert stable_hash(12345) == stable_hash("12345")
    assert stable_hash("sku-1") != stable_hash("sku-2")


def test_stable_hash_value_is_pinned() -> None:
    import hashlib

    expected = int.from_bytes(hashlib.blake2b(b"42", digest_size=8).digest(), "big")
    assert stable_hash(42) == expected


def test_shards_spread_keys_evenly() -> None:
    counts = [0] * 8
    for i in range(8000):
        counts[shard_for(i, 8)] += 1
    assert min(counts) > 800 and max(counts) < 1200


def test_shard_for_rejects_zero_shards() -> None:
    with pytest.raises(ValueError):
        shard_for("x", 0)


def test_snowflake_ids_are_unique_and_time_ordered_across_threads() -> None:
    gen = Snowflake(worker_id=7)
    out: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        local = [gen.next_id() for _ in range(5000)]
        with lock:
            out.extend(local)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 20_000
    assert all(0 < i < 2**63 for i in out)
    assert abs(id_time_ms(max(out)) - now_ms()) < 5_000


def test_snowflake_ids_from_two_workers_never_collide() -> None:
    a, b = Snowflake(worker_id=1), Snowflake(worker_id=2)
    ids = {a.next_id() for _ in range(3000)} | {b.next_id() for _ in range(3000)}
    assert len(ids) == 6000


def test_domain_errors_survive_pickling_with_their_fields() -> None:
    err = pickle.loads(pickle.dumps(OutOfStock("sku 5 has 0", details={"sku_id": 5})))
    assert isinstance(err, OutOfStock) and err.status == 409 and err.code == "out_of_stock"
    assert err.details == {"sku_id": 5}
    rl = pickle.loads(pickle.dumps(RateLimited(retry_after=7)))
    assert rl.retry_after == 7 and rl.status == 429


def test_error_body_has_the_one_shape() -> None:
    body = Unavailable("shard down").to_body("rid-1")
    assert body == {
        "error": {"code": "unavailable", "message": "shard down", "request_id": "rid-1"}
    }
    assert Unavailable.retriable and not DomainError.retriable


def test_serve_haproxy_request_metrics_are_off_unless_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pathlib import Path

    from raymall.launcher.app import ray_env
    from raymall.settings import Settings

    settings = Settings(var_dir=Path("/tmp/raymall-env-test"))
    monkeypatch.delenv("RAY_SERVE_HAPROXY_METRICS_ENABLED", raising=False)
    assert ray_env(settings)["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    monkeypatch.setenv("RAY_SERVE_HAPROXY_METRICS_ENABLED", "1")
    assert ray_env(settings)["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "1"
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    assert ray_env(settings)["RAY_worker_niceness"] == "0"
    monkeypatch.setenv("RAY_worker_niceness", "15")
    assert ray_env(settings)["RAY_worker_niceness"] == "15"
    monkeypatch.delenv("RAY_enable_metrics_collection", raising=False)
    assert ray_env(settings)["RAY_enable_metrics_collection"] == "0"
    monkeypatch.setenv("RAY_enable_metrics_collection", "1")
    assert ray_env(settings)["RAY_enable_metrics_collection"] == "1"


def test_serve_logs_at_warning_in_the_replicas_unless_the_access_log_is_on() -> None:
    from pathlib import Path

    from ray.serve.schema import LoggingConfig

    from raymall.launcher.app import app_logging
    from raymall.settings import Settings

    quiet = LoggingConfig(**app_logging(Settings(var_dir=Path("/tmp/raymall-env-test"))))
    assert (quiet.enable_access_log, quiet.log_level) == (False, "WARNING")
    on = Settings(var_dir=Path("/tmp/raymall-env-test"), access_log=True)
    loud = LoggingConfig(**app_logging(on))
    assert (loud.enable_access_log, loud.log_level) == (True, "INFO")
