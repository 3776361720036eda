"""HTTP peers for the coupon-claim benchmark: the seeds' approaches behind FastAPI + uvicorn
(one worker), on the same MariaDB database and Redis server as raymall, built like the
flash-sale peers (``flash_http.py``: same token verification, no rate limits).

- ``mysql`` (a): one transaction per claim: INSERT the coupon row (a unique
  ``(campaign_id, user_id)`` holds the per-user limit of 1), then ``UPDATE peer_campaigns
  SET claimed = claimed + 1 WHERE id = ? AND claimed < total``, COMMIT, answer 201 (409
  ``coupon_limit_reached`` on the duplicate, ``coupons_sold_out`` when the UPDATE matched
  nothing). Durable before the answer. The ``Idempotency-Key`` is not kept: a repeat of a
  successful claim answers ``coupon_limit_reached``;
- ``redis`` (b): a Lua script checks the per-user set, decrements the remaining count,
  adds the user to the set, takes a coupon id and LPUSHes the coupon onto a queue, answer
  201. A consumer process (``python coupon_http.py consume``) moves queued coupons into
  MariaDB in batches: an acknowledged coupon is only in Redis until it has been written.

    PEER_MODE=mysql PEER_DB=... PEER_REDIS=... PEER_JWT_SECRET=... PEER_CAMPAIGN=1 \
        uvicorn coupon_http:app --app-dir bench/peers
    python bench/peers/coupon_http.py setup|consume|count   (used by bench/coupon_bench.py)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, Response


# the flash peers' helpers (flash_http.py), repeated: importing that module with PEER_MODE
# set would build its app
def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is required")
    return value


def _mysql_args(url: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return {
        "host": u.host or "127.0.0.1",
        "port": u.port or 3306,
        "user": u.username or "root",
        "password": u.password or "",
        "database": u.database,
        "autocommit": False,
        "charset": "utf8mb4",
    }


def _verifier() -> Any:
    from raymall.auth.tokens import TokenCodec, VerifiedAccessCache

    codec = TokenCodec(_env("PEER_JWT_SECRET"), access_ttl_s=86_400, refresh_ttl_s=86_400)
    return VerifiedAccessCache(codec)


def _user(verify: Any, authorization: str | None) -> int | None:
    if not authorization or not authorization.startswith("Bearer "):
        return None
    try:
        return int(verify.verify(authorization[7:]).user_id)
    except Exception:
        return None


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    import anyio.to_thread

    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = int(os.environ.get("PEER_THREADS", "32"))
    yield


COUPONS_DDL = (
    "CREATE TABLE IF NOT EXISTS peer_coupons (id BIGINT PRIMARY KEY, campaign_id BIGINT NOT "
    "NULL, user_id BIGINT NOT NULL, state VARCHAR(16) NOT NULL, created_ms BIGINT NOT NULL, "
    "UNIQUE KEY uq_peer_coupon (campaign_id, user_id)) ENGINE=InnoDB"
)
CAMPAIGNS_DDL = (
    "CREATE TABLE IF NOT EXISTS peer_campaigns (id BIGINT PRIMARY KEY, total BIGINT NOT NULL, "
    "claimed BIGINT NOT NULL) ENGINE=InnoDB"
)
INSERT = (
    "INSERT INTO peer_coupons (id, campaign_id, user_id, state, created_ms) "
    "VALUES (%s, %s, %s, 'available', %s)"
)
UPDATE = "UPDATE peer_campaigns SET claimed = claimed + 1 WHERE id = %s AND claimed < total"
LUA = """
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then return -1 end
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left <= 0 then return 0 end
redis.call('DECR', KEYS[1])
redis.call('SADD', KEYS[4], ARGV[1])
local id = redis.call('INCR', KEYS[3])
redis.call('LPUSH', KEYS[2], id .. ':' .. ARGV[1] .. ':' .. ARGV[2])
return id
"""


def _keys(campaign: int) -> list[str]:
    p = f"peer:coupon:{campaign}"
    return [f"{p}:left", f"{p}:queue", f"{p}:ids", f"{p}:users"]


def build_app() -> FastAPI:
    mode = _env("PEER_MODE")
    campaign = int(_env("PEER_CAMPAIGN"))
    verify = _verifier()
    app = FastAPI(lifespan=_lifespan)

    if mode == "mysql":
        import pymysql

        args = _mysql_args(_env("PEER_DB"))
        local = threading.local()
        ids = iter(range(int(time.time() * 1000) * 1000, 2**62))
        ids_lock = threading.Lock()

        @app.post("/coupon/claim", status_code=201)
        def claim_mysql(
            response: Response, authorization: str | None = Header(None)
        ) -> dict[str, Any]:
            user = _user(verify, authorization)
            if user is None:
                response.status_code = 401
                return {"error": "unauthorized"}
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = pymysql.connect(**args)
            with ids_lock:
                coupon_id = next(ids)
            cur = conn.cursor()
            try:
                try:
                    cur.execute(INSERT, (coupon_id, campaign, user, int(time.time() * 1000)))
                except pymysql.err.IntegrityError:
                    conn.rollback()
                    response.status_code = 409
                    return {"error": "coupon_limit_reached"}
                cur.execute(UPDATE, (campaign,))
                if cur.rowcount != 1:
                    conn.rollback()
                    response.status_code = 409
                    return {"error": "coupons_sold_out"}
                conn.commit()
            except Exception:
                conn.rollback()
                raise
            finally:
                cur.close()
            return {"coupon_id": str(coupon_id)}

    elif mode == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(_env("PEER_REDIS"), max_connections=128)
        script = client.register_script(LUA)
        keys = _keys(campaign)

        @app.post("/coupon/claim", status_code=201)
        async def claim_redis(
            response: Response, authorization: str | None = Header(None)
        ) -> dict[str, Any]:
            user = _user(verify, authorization)
            if user is None:
                response.status_code = 401
                return {"error": "unauthorized"}
            coupon_id = int(await script(keys=keys, args=[user, int(time.time() * 1000)]))
            if coupon_id <= 0:
                response.status_code = 409
                return {"error": "coupon_limit_reached" if coupon_id else "coupons_sold_out"}
            return {"coupon_id": str(coupon_id)}

    else:
        raise SystemExit(f"PEER_MODE must be mysql or redis, not {mode!r}")
    return app


def setup(db_url: str, redis_url: str, campaign: int, total: int) -> None:
    """A fresh campaign of ``total`` coupons, with no claims, in both stores."""
    import pymysql
    import redis

    conn = pymysql.connect(**{**_mysql_args(db_url), "autocommit": True})
    with conn.cursor() as cur:
        cur.execute(CAMPAIGNS_DDL)
        cur.execute(COUPONS_DDL)
        cur.execute("DELETE FROM peer_coupons WHERE campaign_id = %s", (campaign,))
        cur.execute("REPLACE INTO peer_campaigns (id, total, claimed) VALUES (%s, %s, 0)",
                    (campaign, total))  # fmt: skip
    conn.close()
    r = redis.Redis.from_url(redis_url)
    left, queue, ids, users = _keys(campaign)
    r.delete(queue, ids, users)
    r.set(left, total)
    r.close()


def consume(db_url: str, redis_url: str, campaign: int) -> None:
    """Move queued coupons into MariaDB, up to 500 per transaction, until SIGTERM."""
    import signal

    import pymysql
    import redis

    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    conn = pymysql.connect(**_mysql_args(db_url))
    r = redis.Redis.from_url(redis_url)
    _, queue, _, _ = _keys(campaign)
    while running[0]:
        items = r.rpop(queue, 500)
        if not items:
            time.sleep(0.005)
            continue
        rows = []
        for raw in items:
            coupon_id, user, ts = raw.decode().split(":")
            rows.append((int(coupon_id), campaign, int(user), int(ts)))
        with conn.cursor() as cur:
            cur.executemany(INSERT, rows)
        conn.commit()
    conn.close()


def count(db_url: str, redis_url: str, campaign: int) -> dict[str, int]:
    import pymysql
    import redis

    conn = pymysql.connect(**{**_mysql_args(db_url), "autocommit": True})
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT user_id) FROM peer_coupons "
                    "WHERE campaign_id = %s", (campaign,))  # fmt: skip
        coupons, users = (int(v) for v in cur.fetchone())
    conn.close()
    r = redis.Redis.from_url(redis_url)
    _, queue, _, _ = _keys(campaign)
    out = {"coupons": coupons, "users": users, "queued": int(r.llen(queue))}
    r.close()
    return out


if os.environ.get("PEER_MODE"):
    app = build_app()

if __name__ == "__main__":
    cmd, db, rds, campaign_arg = sys.argv[1:5]
    if cmd == "setup":
        setup(db, rds, int(campaign_arg), int(sys.argv[5]))
    elif cmd == "consume":
        consume(db, rds, int(campaign_arg))
    elif cmd == "count":
        import json

        print(json.dumps(count(db, rds, int(campaign_arg))))
