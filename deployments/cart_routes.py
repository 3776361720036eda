"""HTTP routes: the cart, for signed-in users and for guests.

A signed-in caller (bearer token, ``cart:use``) works on ``cart:{user_id}``. A guest first
asks ``POST /cart/guest`` for a cart token and sends it as ``X-Cart-Token``; signing in
with that header merges the guest cart into the user's (``merge_at_login``, called by the
login route), as does ``POST /cart/merge``.

- ``GET /cart``: lines with live prices and availability, and the total in cents;
- ``POST /cart/items`` ``{"sku_id", "quantity"}``: add (quantities add up);
- ``PUT /cart/items/{sku_id}`` ``{"quantity"}``: set; ``DELETE /cart/items/{sku_id}``;
- ``DELETE /cart``: empty the cart.

The cart lives in Redis: while Redis is unreachable (``raymall.feed.RedisHealth``, or a
command that fails on a connection fault) every cart route but ``POST /cart/guest``
answers 503 ``unavailable`` in the one error shape with ``Retry-After``, at once rather
than after a connect timeout.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from deployments.security import Principal, public
from deployments.services import services
from raymall.cart import (
    CartOwner,
    CartService,
    check_on_sale,
    guest_key,
    guest_token_ok,
    issue_guest_token,
    user_key,
)
from raymall.errors import Forbidden, Unauthorized, ValidationFailed
from raymall.logs import get_logger

router = APIRouter(tags=["cart"])
log = get_logger("cart")
CART_TOKEN_HEADER = "X-Cart-Token"  # noqa: S105 - a header name
T = TypeVar("T")

for _method, _path in (
    ("POST", "/cart/guest"),
    ("GET", "/cart"),
    ("DELETE", "/cart"),
    ("POST", "/cart/items"),
    ("PUT", "/cart/items/{sku_id}"),
    ("DELETE", "/cart/items/{sku_id}"),
):
    public(_method, _path)  # guests too; the handler resolves whose cart it is

SkuId = Annotated[int, Path(ge=1, le=2**63 - 1)]
CartToken = Annotated[str | None, Header(alias=CART_TOKEN_HEADER, max_length=128)]


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    sku_id: int = Field(ge=1, le=2**63 - 1)
    quantity: int = Field(1, ge=1, le=1_000_000)


class QuantityIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    quantity: int = Field(ge=1, le=1_000_000)


def _svc(request: Request) -> CartService:
    return services(request).cart


def cart_store(route: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A cart route that needs Redis: refused at once while Redis is unusable, and a
    connection fault during it answered the same way (503 with ``Retry-After``)."""

    @functools.wraps(route)
    async def run(*args: Any, **kwargs: Any) -> T:
        health = services(kwargs["request"]).redis_health
        if health is None:
            return await route(*args, **kwargs)
        health.require("the cart")
        with health.faults("the cart"):
            return await route(*args, **kwargs)

    return run


async def _owner(request: Request, token: str | None) -> CartOwner:
    """The signed-in user's cart, else the guest cart named by a valid token."""
    principal: Principal | None = getattr(request.state, "principal", None)
    svc = _svc(request)
    if principal is not None:
        check = getattr(request.app.state, "check_permission", None)
        if check is None or not await check(request, principal.role, "cart", "use"):
            raise Forbidden(f"role '{principal.role}' may not use cart")
        return CartOwner(user_key(principal.user_id), user_id=principal.user_id)
    if token is None:
        raise Unauthorized(f"sign in, or send a guest cart token in {CART_TOKEN_HEADER}")
    if not guest_token_ok(svc.secret, token):
        raise Unauthorized("invalid guest cart token; ask POST /cart/guest for one")
    return CartOwner(guest_key(token), ttl_s=svc.guest_ttl_s)


@router.post("/cart/guest", status_code=201)
async def new_guest_cart(request: Request) -> dict[str, Any]:
    svc = _svc(request)
    return {"cart_token": issue_guest_token(svc.secret), "expires_in": svc.guest_ttl_s}


@router.get("/cart")
@cart_store
async def get_cart(request: Request, token: CartToken = None) -> dict[str, Any]:
    svc = _svc(request)
    return await svc.view(await _owner(request, token))


@router.post("/cart/items")
@cart_store
async def add_line(request: Request, body: LineIn, token: CartToken = None) -> dict[str, Any]:
    svc = _svc(request)
    owner = await _owner(request, token)
    await check_on_sale(svc.skus, body.sku_id)
    lines = await svc.store.put_and_list(owner, body.sku_id, body.quantity, add=True)
    return await svc.view(owner, lines)


@router.put("/cart/items/{sku_id}")
@cart_store
async def set_line(
    request: Request, sku_id: SkuId, body: QuantityIn, token: CartToken = None
) -> dict[str, Any]:
    svc = _svc(request)
    owner = await _owner(request, token)
    await check_on_sale(svc.skus, sku_id)
    lines = await svc.store.put_and_list(owner, sku_id, body.quantity, add=False)
    return await svc.view(owner, lines)


@router.delete("/cart/items/{sku_id}", status_code=204)
@cart_store
async def remove_line(request: Request, sku_id: SkuId, token: CartToken = None) -> Response:
    await _svc(request).store.remove(await _owner(request, token), sku_id)
    return Response(status_code=204)


@router.delete("/cart", status_code=204)
@cart_store
async def clear_cart(request: Request, token: CartToken = None) -> Response:
    await _svc(request).store.clear(await _owner(request, token))
    return Response(status_code=204)


@router.post("/cart/merge")
@cart_store
async def merge_cart(request: Request, token: CartToken = None) -> dict[str, Any]:
    """Merge the guest cart named by ``X-Cart-Token`` into the signed-in user's cart."""
    svc = _svc(request)
    owner = await _owner(request, None)
    if not guest_token_ok(svc.secret, token):
        raise ValidationFailed(f"send a valid guest cart token in {CART_TOKEN_HEADER}")
    assert owner.user_id is not None and token is not None
    merged = await svc.store.merge_guest(token, owner.user_id)
    return {"merged_lines": merged, **(await svc.view(owner))}


async def merge_at_login(request: Request, user_id: int) -> None:
    """Called by the login route: merge the caller's guest cart, if it sent one. Never
    fails the login (a failed merge leaves the guest cart for ``POST /cart/merge``)."""
    token = request.headers.get(CART_TOKEN_HEADER)
    if not token:
        return
    try:
        svc = _svc(request)
        if guest_token_ok(svc.secret, token):
            await svc.store.merge_guest(token, user_id)
    except Exception:
        log.warning("guest cart merge at login failed", exc_info=True)
