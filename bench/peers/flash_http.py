"""HTTP peers for the flash-sale benchmark: the seeds' approaches behind FastAPI + uvicorn
(one worker), on the same MariaDB database and Redis server as raymall.

Both verify the caller's access token exactly as raymall's replicas do (HS256 JWT through
``raymall.auth.tokens.TokenCodec`` with the same ``VerifiedAccessCache``), but skip
raymall's per-request Redis revocation check and rate limits (they have none).

- ``mysql`` (a): one transaction per request, ``UPDATE peer_stock SET stock = stock - 1
  WHERE sku_id = ? AND stock > 0`` then an order row, COMMIT, answer 201 (409 when the
  UPDATE matched nothing). Durable before the answer. Sync handler in uvicorn's thread
  pool, one MariaDB connection per thread;
- ``redis`` (b): a Lua script pre-decrements the stock counter, takes an order id and
  LPUSHes the order onto a queue, answer 201. A separate consumer process
  (``python flash_http.py consume``) moves queued orders into MariaDB in batches: an
  acknowledged order is only in Redis until the consumer has written it.

    PEER_MODE=mysql PEER_DB=... PEER_REDIS=... PEER_JWT_SECRET=... PEER_SKU=1 \
        uvicorn flash_http:app --app-dir bench/peers
    python bench/peers/flash_http.py setup|consume|count   (used by bench/flash_sale.py)
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

PRICE_CENTS = 990
ORDERS_DDL = (
    "CREATE TABLE IF NOT EXISTS peer_orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, "
    "sku_id BIGINT NOT NULL, price_cents BIGINT NOT NULL, status VARCHAR(20) NOT NULL, "
    "created_ms BIGINT NOT NULL) ENGINE=InnoDB"
)
STOCK_DDL = (
    "CREATE TABLE IF NOT EXISTS peer_stock (sku_id BIGINT PRIMARY KEY, stock BIGINT NOT NULL) "
    "ENGINE=InnoDB"
)
UPDATE = "UPDATE peer_stock SET stock = stock - 1 WHERE sku_id = %s AND stock > 0"
INSERT = (
    "INSERT INTO peer_orders (id, user_id, sku_id, price_cents, status, created_ms) "
    "VALUES (%s, %s, %s, %s, 'pending_payment', %s)"
)
LUA = """
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
if stock <= 0 then return 0 end
redis.call('DECR', KEYS[1])
local id = redis.call('INCR', KEYS[3])
redis.call('LPUSH', KEYS[2], id .. ':' .. ARGV[1] .. ':' .. ARGV[2] .. ':' .. ARGV[3])
return id
"""


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


def _keys(sku: int) -> list[str]:
    return [f"peer:{sku}:stock", f"peer:{sku}:queue", f"peer:{sku}:ids"]


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

    # threads for the sync (MariaDB) handler: one connection each
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = int(os.environ.get("PEER_THREADS", "32"))
    yield


def build_app() -> FastAPI:
    mode = _env("PEER_MODE")
    sku = int(_env("PEER_SKU"))
    verify = _verifier()
    app = FastAPI(lifespan=_lifespan)

    if mode == "mysql":
        import pymysql

        args = _mysql_args(_env("PEER_DB"))
        local = threading.local()
        ids = iter(range(int(time.time() * 1000) * 1000, 2**62))
        ids_lock = threading.Lock()

        @app.post("/flash/purchase", status_code=201)
        def purchase_mysql(
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
                order_id = next(ids)
            cur = conn.cursor()
            try:
                cur.execute(UPDATE, (sku,))
                if cur.rowcount != 1:
                    conn.rollback()
                    response.status_code = 409
                    return {"error": "sold_out"}
                cur.execute(INSERT, (order_id, user, sku, PRICE_CENTS, int(time.time() * 1000)))
                conn.commit()
            except Exception:
                conn.rollback()
                raise
            finally:
                cur.close()
            return {"order_id": str(order_id)}

    elif mode == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(_env("PEER_REDIS"), max_connections=128)
        script = client.register_script(LUA)
        keys = _keys(sku)

        @app.post("/flash/purchase", status_code=201)
        async def purchase_redis(
            response: Response, authorization: str | None = Header(None)
        ) -> dict[str, Any]:
            user = _user(verify, authorization)
            if user is None:
                response.status_code = 401
                return {"error": "unauthorized"}
            now = int(time.time() * 1000)
            order_id = int(await script(keys=keys, args=[user, PRICE_CENTS, now]))
            if order_id == 0:
                response.status_code = 409
                return {"error": "sold_out"}
            return {"order_id": str(order_id)}

    else:
        raise SystemExit(f"PEER_MODE must be mysql or redis, not {mode!r}")
    return app


def setup(db_url: str, redis_url: str, sku: int, stock: int) -> None:
    """Fresh peer tables and counters holding ``stock`` units."""
    import pymysql
    import redis

    conn = pymysql.connect(**{**_mysql_args(db_url), "autocommit": True})
    with conn.cursor() as cur:
        cur.execute(STOCK_DDL)
        cur.execute(ORDERS_DDL)
        cur.execute("DELETE FROM peer_orders")
        cur.execute("REPLACE INTO peer_stock (sku_id, stock) VALUES (%s, %s)", (sku, stock))
    conn.close()
    r = redis.Redis.from_url(redis_url)
    stock_key, queue_key, ids_key = _keys(sku)
    r.delete(queue_key, ids_key)
    r.set(stock_key, stock)
    r.close()


def consume(db_url: str, redis_url: str, sku: int) -> None:
    """Move queued orders into MariaDB, up to 500 per transaction, until SIGTERM."""
    import signal

    import pymysql
    import redis

    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    conn = pymysql.connect(**_mysql_args(db_url))
    r = redis.Redis.from_url(redis_url)
    _, queue_key, _ = _keys(sku)
    while running[0]:
        items = r.rpop(queue_key, 500)
        if not items:
            time.sleep(0.005)
            continue
        rows = []
        for raw in items:
            order_id, user, price, ts = raw.decode().split(":")
            rows.append((int(order_id), int(user), sku, int(price), int(ts)))
        with conn.cursor() as cur:
            cur.executemany(INSERT, rows)
        conn.commit()
    conn.close()


def count(db_url: str, redis_url: str, sku: int) -> dict[str, int]:
    import pymysql
    import redis

    conn = pymysql.connect(**{**_mysql_args(db_url), "autocommit": True})
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM peer_orders WHERE sku_id = %s", (sku,))
        orders = int(cur.fetchone()[0])
        cur.execute("SELECT stock FROM peer_stock WHERE sku_id = %s", (sku,))
        row = cur.fetchone()
    conn.close()
    r = redis.Redis.from_url(redis_url)
    stock_key, queue_key, _ = _keys(sku)
    out = {
        "orders": orders,
        "mysql_stock": int(row[0]) if row else -1,
        "redis_stock": int(r.get(stock_key) or 0),
        "queued": int(r.llen(queue_key)),
    }
    r.close()
    return out


if os.environ.get("PEER_MODE"):
    app = build_app()

if __name__ == "__main__":
    cmd, db, rds, sku_arg = sys.argv[1:5]
    if cmd == "setup":
        setup(db, rds, int(sku_arg), int(sys.argv[5]))
    elif cmd == "consume":
        consume(db, rds, int(sku_arg))
    elif cmd == "count":
        import json

        print(json.dumps(count(db, rds, int(sku_arg))))
