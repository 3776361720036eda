"""Database fixtures for order, cart and payment tests (integration and end to end).

from tests.order_helpers import Shop
shop = Shop(app.settings)                       # direct database access for setup/checks
uid = shop.user(); shop.address(uid)            # users without password hashing (fast, many)
token = shop.token(uid)                         # a valid access token for that user
sku = shop.sku(price_cents=1999, stock=0)      # a published product with one SKU
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, insert, select, text

from models import Address, Sku, User
from raymall.auth.tokens import TokenCodec
from raymall.ids import now_ms
from raymall.launcher.shop import SkuSpec, add_category, add_product, user_values
from raymall.orders.signing import signed_headers
from raymall.settings import Settings


class Shop:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or create_engine(
            settings.resolved_database_url, isolation_level="READ COMMITTED", pool_size=5
        )

    # ---- setup --------------------------------------------------------------------------
    def user(self, role: str = "user") -> int:
        name = f"o{secrets.token_hex(6)}"
        with self.engine.begin() as conn:
            values = user_values(name, role=role, display_name=name, now=now_ms())
            res = conn.execute(insert(User).values(**values))
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def address(self, user_id: int, *, default: bool = True) -> int:
        now = now_ms()
        with self.engine.begin() as conn:
            res = conn.execute(
                insert(Address).values(
                    user_id=user_id,
                    recipient="Ada Lovelace",
                    phone="+44 20 0000 0000",
                    line1="12 St James's Square",
                    line2="",
                    city="London",
                    region="",
                    postal_code="SW1Y 4JH",
                    country="GB",
                    is_default=default,
                    created_ms=now,
                    updated_ms=now,
                )
            )
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def codec(self) -> TokenCodec:
        """The auth code's own token codec, with the app's secret and lifetimes."""
        s = self.settings
        return TokenCodec(
            s.secret("jwt_secret"),
            access_ttl_s=s.access_token_ttl_s,
            refresh_ttl_s=s.refresh_token_ttl_s,
            leeway_s=s.jwt_leeway_s,
        )

    def token(self, user_id: int, role: str = "user") -> str:
        token, _ = self.codec().issue_access(user_id, role, f"fam-{secrets.token_hex(8)}")
        return token

    def customer(self) -> tuple[int, dict[str, str]]:
        """A user with a default address and bearer headers."""
        uid = self.user()
        self.address(uid)
        return uid, {"Authorization": f"Bearer {self.token(uid)}"}

    def sku(self, *, price_cents: int = 1999, stock: int = 0, published: bool = True) -> int:
        """A product with one SKU and its (empty) inventory row; ``stock`` is only for
        tests without inventory shards (otherwise restock through the shard)."""
        tag = secrets.token_hex(5)
        with self.engine.begin() as conn:
            category = add_category(conn, f"Cat {tag}", f"cat-{tag}")
            _, (sku,) = add_product(
                conn,
                category,
                f"Test kettle {tag}",
                [SkuSpec(f"T-{tag}", price_cents, stock, {"size": "1l"})],
                shards=self.settings.inventory_shards,
                status="published" if published else "draft",
            )
        return sku

    def set_published(self, sku_id: int, published: bool) -> None:
        with self.engine.begin() as conn:
            product = conn.scalar(select(Sku.product_id).where(Sku.id == sku_id))
            conn.execute(
                text("UPDATE products SET status = :s WHERE id = :p"),
                {"s": "published" if published else "unpublished", "p": product},
            )

    # ---- checks -------------------------------------------------------------------------
    def stock(self, sku_id: int) -> dict[str, int]:
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT total, available, reserved, sold FROM inventory WHERE sku_id = :s"),
                {"s": sku_id},
            ).one()
        return {"total": row[0], "available": row[1], "reserved": row[2], "sold": row[3]}

    def ledger_sums(self, sku_id: int) -> dict[str, int]:
        """Open and confirmed reservation units of a SKU, from ``inventory_ops``."""
        out = {"reserved": 0, "confirmed": 0}
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT state, items FROM inventory_ops "
                    "WHERE kind = 'reserve' AND state IN ('reserved', 'confirmed')"
                )
            ).all()
        for state, items in rows:
            qty = json.loads(items).get(str(sku_id), 0)
            out[state] += int(qty)
        return out

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def dispose(self) -> None:
        self.engine.dispose()


def signed_callback(
    settings: Settings, body: dict[str, Any], *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body, separators=(",", ":")).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    return raw, signed_headers(settings.secret("payment_secret"), ts, raw)


def wait_for(check: Callable[[], Any], timeout_s: float = 30.0, every_s: float = 0.1) -> Any:
    """Poll until ``check()`` is truthy; answer its value (fail with the last one)."""
    deadline = time.monotonic() + timeout_s
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(every_s)
        value = check()
    assert value, f"condition not met within {timeout_s}s (last: {value!r})"
    return value


def restock(client: httpx.Client, admin_headers: dict[str, str], sku_id: int, delta: int) -> None:
    resp = client.post(
        f"/admin/inventory/{sku_id}/adjust",
        json={"delta": delta, "reason": "test restock"},
        headers=admin_headers,
    )
    assert resp.status_code == 200, resp.text
