"""The cart routes while Redis is unreachable: 503 ``unavailable`` in the one error shape
with ``Retry-After``, at once when the replica knows Redis is down and when a command
fails on a connection fault; guest tokens are still issued (they need no Redis)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError

from deployments import cart_routes, errors
from deployments.headers import HttpPolicy
from raymall.cart import issue_guest_token
from raymall.feed import STORE_RETRY_AFTER_S, RedisHealth
from tests.unit.test_edge_hardening import client_for, error_of

SECRET = "cart-secret-for-tests"


class BrokenStore:
    async def clear(self, owner: Any) -> None:
        raise RedisConnectionError("Connection refused")


@pytest.fixture()
def setup() -> tuple[Any, RedisHealth]:
    health = RedisHealth(None, cool_down_s=60)
    app = FastAPI()
    errors.install(app)
    app.include_router(cart_routes.router)
    cart = SimpleNamespace(secret=SECRET, guest_ttl_s=60, store=BrokenStore())
    app.state.services = SimpleNamespace(cart=cart, redis_health=health)
    return client_for(HttpPolicy(), app), health


def test_cart_routes_answer_503_with_retry_after_while_redis_is_down(
    setup: tuple[Any, RedisHealth],
) -> None:
    client, health = setup
    token = {cart_routes.CART_TOKEN_HEADER: issue_guest_token(SECRET)}
    health.failed()  # as after a command failed on a connection fault
    for method, path in (("GET", "/cart"), ("DELETE", "/cart"), ("DELETE", "/cart/items/1")):
        answer = client.request(method, path, headers=token)
        error_of(answer, 503, "unavailable")
        assert answer.headers["retry-after"] == str(STORE_RETRY_AFTER_S)
    answer = client.post("/cart/items", json={"sku_id": 1, "quantity": 1}, headers=token)
    error_of(answer, 503, "unavailable")
    assert client.post("/cart/guest").status_code == 201  # a token needs no Redis


def test_a_connection_fault_during_a_cart_route_is_a_503_with_retry_after(
    setup: tuple[Any, RedisHealth],
) -> None:
    client, health = setup
    token = {cart_routes.CART_TOKEN_HEADER: issue_guest_token(SECRET)}
    answer = client.delete("/cart", headers=token)
    assert error_of(answer, 503, "unavailable")["message"].startswith("the cart is unavailable")
    assert answer.headers["retry-after"] == str(STORE_RETRY_AFTER_S)
    assert not health.usable()  # the next cart request is refused without trying Redis
