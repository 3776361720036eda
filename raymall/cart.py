"""The cart: one Redis hash per owner, SKU id -> quantity.

A signed-in user's cart is ``cart:{user_id}`` (the recommender reads it there); a guest's
is ``cart:guest:{token}``, where the token is issued by the API and carries an HMAC tag,
so only issued tokens open a cart. Guarantees:

- every change is one Lua script, so concurrent requests on one cart never lose an
  update, and no line ever exceeds ``cart_max_qty_per_line`` (an add or set that would
  is refused with ``cart_limit_exceeded``, naming the maximum), nor the cart
  ``cart_max_lines`` lines;
- only SKUs that exist and are on sale (product published) get in: ``unknown_sku`` (404)
  or ``sku_not_for_sale`` (409) otherwise;
- merging a guest cart into a user's cart at sign-in adds quantities, caps each line at
  the maximum, and deletes the guest cart, atomically (a repeated merge adds nothing);
- removing ordered lines subtracts the ordered quantities, so units added to the cart
  while the order was being placed stay in it;
- a listing carries the catalog's prices, as fresh as product detail (the products'
  documents, ``raymall.catalog.skus``, which every catalog write invalidates; the
  catalog rows when no such source is wired) and availability from the inventory's read
  model; lines that can no longer be bought are kept and flagged. An order prices its
  lines from the catalog rows again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from raymall.catalog.skus import CatalogSku
from raymall.coupons.pricing import Pricer
from raymall.db import read_sessions
from raymall.domain.pricing import SkuInfo, check_sku, price
from raymall.errors import CartLimitExceeded, NotFound
from raymall.logs import get_logger
from raymall.orders.repository import load_skus
from raymall.settings import Settings

log = get_logger("cart")

GUEST_TOKEN_RE = re.compile(r"^g\.[A-Za-z0-9_-]{24}\.[0-9a-f]{16}$")

_ADD = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cur == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return {-2, cur} end
local new = tonumber(ARGV[2])
if ARGV[6] == 'add' then new = cur + new end
if new > tonumber(ARGV[3]) then return {-1, cur} end
redis.call('HSET', KEYS[1], ARGV[1], new)
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
if ARGV[7] ~= '1' then return {new, cur} end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, cur)
table.insert(out, 1, new)
return out
"""

_MERGE = """
local guest = redis.call('HGETALL', KEYS[1])
local max_qty = tonumber(ARGV[1])
local max_lines = tonumber(ARGV[2])
local merged = 0
for i = 1, #guest, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[2], guest[i]) or '0')
  if cur > 0 or redis.call('HLEN', KEYS[2]) < max_lines then
    local new = math.min(cur + tonumber(guest[i + 1]), max_qty)
    redis.call('HSET', KEYS[2], guest[i], new)
    merged = merged + 1
  end
end
redis.call('DEL', KEYS[1])
return merged
"""

_SUBTRACT = """
for i = 1, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  local left = cur - tonumber(ARGV[i + 1])
  if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], left) end
end
return redis.call('HLEN', KEYS[1])
"""


def user_key(user_id: int) -> str:
    return f"cart:{user_id}"


def guest_key(token: str) -> str:
    return f"cart:guest:{token}"


def _tag(secret: str, body: str) -> str:
    return hmac.new(secret.encode(), b"cart-guest:" + body.encode(), hashlib.sha256).hexdigest()


def issue_guest_token(secret: str) -> str:
    body = secrets.token_urlsafe(18)  # 24 characters
    return f"g.{body}.{_tag(secret, body)[:16]}"


def guest_token_ok(secret: str, token: str | None) -> bool:
    if not token or not GUEST_TOKEN_RE.match(token):
        return False
    _, body, tag = token.split(".")
    return hmac.compare_digest(_tag(secret, body)[:16], tag)


@dataclass(frozen=True)
class CartOwner:
    """Whose cart: the Redis key and its idle expiry (0: none, for user carts)."""

    key: str
    ttl_s: int = 0
    user_id: int | None = None


@dataclass(frozen=True)
class CartLimits:
    max_qty: int
    max_lines: int


def cart_view(
    lines: Mapping[int, int],
    catalog: Mapping[int, SkuInfo],
    availability: Mapping[int, int],
) -> dict[str, Any]:
    """The listing: live price and availability per line, and the total of the lines
    that can be bought now (integer cents)."""
    items = []
    total = 0
    for sku_id, qty in sorted(lines.items()):
        info = catalog.get(sku_id)
        available = int(availability.get(sku_id, 0))
        on_sale = info is not None and info.published
        line: dict[str, Any] = {
            "sku_id": sku_id,
            "quantity": qty,
            "available": available,
            "in_stock": available >= qty,
            "purchasable": bool(on_sale and available >= qty),
        }
        if info is not None:
            line.update(
                product_id=info.product_id,
                title=info.title,
                specs=dict(info.specs),
                unit_price_cents=info.price_cents,
                line_total_cents=info.price_cents * qty,
            )
        if not on_sale:
            line["problem"] = "unknown_sku" if info is None else "sku_not_for_sale"
        elif available < qty:
            line["problem"] = "out_of_stock"
        if line["purchasable"]:
            total += info.price_cents * qty  # type: ignore[union-attr]
        items.append(line)
    return {
        "items": items,
        "lines": len(items),
        "units": sum(lines.values()),
        "total_cents": total,
    }


SkuLoader = Callable[[Sequence[int]], Awaitable[dict[int, SkuInfo]]]
Availability = Callable[[Sequence[int]], Awaitable[dict[int, int]]]
CatalogSkus = Callable[[Sequence[int]], Awaitable[dict[int, CatalogSku]]]
Products = dict[int, tuple[int, int | None]]  # product id -> (category id, brand id)


def _lines(flat: Sequence[Any]) -> dict[int, int]:
    """A cart hash as Redis answers it (HGETALL: a mapping, or field, value, ...)."""
    pairs = flat.items() if isinstance(flat, Mapping) else zip(flat[0::2], flat[1::2], strict=True)
    out = {}
    for sku, qty in pairs:
        if str(sku).isdigit() and str(qty).lstrip("-").isdigit() and int(qty) > 0:
            out[int(sku)] = int(qty)
    return out


class CartStore:
    """The Redis side of carts (see the module docstring)."""

    def __init__(self, redis: Any, limits: CartLimits) -> None:
        self.redis = redis
        self.limits = limits
        self._add = redis.register_script(_ADD)
        self._merge = redis.register_script(_MERGE)
        self._subtract = redis.register_script(_SUBTRACT)

    async def lines(self, owner: CartOwner) -> dict[int, int]:
        return _lines(await self.redis.hgetall(owner.key))

    async def put(self, owner: CartOwner, sku_id: int, qty: int, *, add: bool) -> int:
        """Add ``qty`` to the line (``add``) or set it; answer the new quantity."""
        return (await self._put(owner, sku_id, qty, add=add, listing=False))[0]

    async def put_and_list(
        self, owner: CartOwner, sku_id: int, qty: int, *, add: bool
    ) -> dict[int, int]:
        """``put``, answering the cart's lines after it (read in the same script)."""
        return (await self._put(owner, sku_id, qty, add=add, listing=True))[1]

    async def _put(
        self, owner: CartOwner, sku_id: int, qty: int, *, add: bool, listing: bool
    ) -> tuple[int, dict[int, int]]:
        lim = self.limits
        args = [sku_id, qty, lim.max_qty, lim.max_lines, owner.ttl_s, "add" if add else "set"]
        new, cur, *rest = await self._add(keys=[owner.key], args=[*args, int(listing)])
        if int(new) == -1:
            raise CartLimitExceeded(
                f"at most {lim.max_qty} units of one SKU in the cart",
                details={"sku_id": sku_id, "max_quantity": lim.max_qty, "in_cart": int(cur)},
            )
        if int(new) == -2:
            raise CartLimitExceeded(
                f"at most {lim.max_lines} lines in the cart", details={"max_lines": lim.max_lines}
            )
        return int(new), _lines(rest)

    async def remove(self, owner: CartOwner, sku_id: int) -> None:
        if not await self.redis.hdel(owner.key, str(sku_id)):
            raise NotFound(f"SKU {sku_id} is not in the cart", details={"sku_id": sku_id})

    async def clear(self, owner: CartOwner) -> None:
        await self.redis.delete(owner.key)

    async def subtract(self, owner: CartOwner, items: Mapping[int, int]) -> None:
        """Take ordered quantities out of the cart (lines at zero disappear)."""
        if items:
            args: list[int] = []
            for sku_id, qty in items.items():
                args += [sku_id, qty]
            await self._subtract(keys=[owner.key], args=args)

    async def merge_guest(self, token: str, user_id: int) -> int:
        """Move a guest cart into the user's cart; answer the number of merged lines."""
        return int(
            await self._merge(
                keys=[guest_key(token), user_key(user_id)],
                args=[self.limits.max_qty, self.limits.max_lines],
            )
        )


async def check_on_sale(load: SkuLoader, sku_id: int) -> SkuInfo:
    """The SKU, if it exists and is on sale; UnknownSku / NotForSale otherwise."""
    return check_sku(sku_id, (await load([sku_id])).get(sku_id))


class CartService:
    """A replica's carts: the Redis store, guest tokens, and what a listing shows next to
    the lines (prices from ``catalog_skus``, the catalog's SKUs from their products'
    documents, or from the catalog rows without it; ``availability`` is the catalog's,
    from the inventory's read model with the owner and then the last committed value as
    its fallbacks)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis: Any,
        availability: Availability,
        catalog_skus: CatalogSkus | None = None,
    ) -> None:
        self.store = CartStore(
            redis, CartLimits(settings.cart_max_qty_per_line, settings.cart_max_lines)
        )
        self.secret = settings.secret("jwt_secret")
        self.guest_ttl_s = settings.cart_guest_ttl_s
        self.sessions = read_sessions(sessions)
        self.availability = availability
        self.catalog_skus = catalog_skus
        # promotions and coupons on the listing (raymall.coupons.pricing; None: none shown)
        self.pricer: Pricer | None = None

    async def skus(self, sku_ids: Sequence[int]) -> dict[int, SkuInfo]:
        """The SKUs among ``sku_ids`` that exist (on sale or not)."""
        return (await self._catalog(sku_ids))[0]

    async def _catalog(self, sku_ids: Sequence[int]) -> tuple[dict[int, SkuInfo], Products | None]:
        """The SKUs that exist, and their products' (category, brand) when known."""
        if self.catalog_skus is not None:
            found = await self.catalog_skus(sku_ids)
            infos = {s: c.info for s, c in found.items()}
            return infos, {c.info.product_id: (c.category_id, c.brand_id) for c in found.values()}

        def read() -> dict[int, SkuInfo]:
            with self.sessions() as session:
                return load_skus(session, list(sku_ids))

        return await asyncio.to_thread(read), None

    async def view(
        self, owner: CartOwner, lines: Mapping[int, int] | None = None
    ) -> dict[str, Any]:
        """The cart's lines (``lines``: as just read from the cart) with prices and
        availability, and its total."""
        if lines is None:
            lines = await self.store.lines(owner)
        if not lines:
            return cart_view({}, {}, {})
        ids = list(lines)
        catalog, products = await self._catalog(ids)  # both answer from memory in steady
        stock = await self.availability(ids)  # operation, so one after the other
        view = cart_view(lines, catalog, stock)
        if self.pricer is not None:
            view["pricing"] = await self._pricing(owner, view, catalog, products)
        return view

    async def _pricing(
        self,
        owner: CartOwner,
        view: dict[str, Any],
        catalog: Mapping[int, SkuInfo],
        products: Products | None,
    ) -> dict[str, Any] | None:
        """The purchasable lines priced with the running promotions and, for a signed-in
        customer, the best combination of their coupons (each line's discount, the saving,
        and why any other offer is not used). None when nothing is purchasable; a pricing
        fault is logged and shown as ``{"unavailable": true}``, the listing still answers."""
        buyable = {i["sku_id"]: i["quantity"] for i in view["items"] if i["purchasable"]}
        if not buyable or self.pricer is None:
            return None
        try:
            quote = price(buyable, catalog)
            priced = await self.pricer.quote(owner.user_id, quote.lines, products=products)
        except Exception:
            log.warning("could not price cart %s", owner.key, exc_info=True)
            return {"unavailable": True}
        out = priced.view()
        out["coupon_ids"] = [str(c.ref) for c in priced.coupons]
        return out
