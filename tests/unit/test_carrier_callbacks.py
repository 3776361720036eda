"""The carrier's callback as a replica checks it (raymall.shipping.callbacks), with a fake
session and shard: only a signed, fresh event naming a known shipment with its own order
and tracking number reaches the order's shard; every refusal writes one audit row and
nothing else. Also: the simulated carrier's events verify with the shop's check, and the
notifications of shipping events (silent ones write none)."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from deployments.carrier import event_body
from models import Order, Shipment
from raymall.errors import (
    BadSignature,
    CarrierEventMismatch,
    ShipmentNotFound,
    ValidationFailed,
)
from raymall.orders.consumers import render
from raymall.orders.signing import signed_headers
from raymall.orders.stream import Event
from raymall.settings import Settings
from raymall.shipping.callbacks import CarrierCallbacks

SECRET = "c" * 40 + "-carrier-secret"
SHIPMENT = SimpleNamespace(id=77, order_id=500, tracking_number="RC123", carrier="raycarrier")
ORDER = SimpleNamespace(id=500, shard=1, user_id=9)


class FakeSession:
    def __init__(self, audits: list[Any]) -> None:
        self.audits = audits

    def get(self, model: Any, key: int, **_: Any) -> Any:
        if model is Shipment:
            return SHIPMENT if key == SHIPMENT.id else None
        if model is Order:
            return ORDER if key == ORDER.id else None
        raise AssertionError(model)

    def execute(self, stmt: Any, rows: list[dict[str, Any]]) -> None:
        self.audits.extend(rows)


class FakeShards:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def owner(self, stored_shard: int, user_id: int) -> int:
        return stored_shard

    async def call(self, shard: int, method: str, *args: Any, **kw: Any) -> Any:
        self.calls.append((shard, method, args, kw))
        return {"duplicate": False}


def make() -> tuple[CarrierCallbacks, FakeShards, list[Any]]:
    audits: list[Any] = []
    shards = FakeShards()

    async def run(fn: Any) -> Any:
        return fn(FakeSession(audits))

    settings = Settings(carrier_secret=SECRET, carrier_callback_window_s=300)
    return CarrierCallbacks(settings, shards, read=run, tx=run, limiter=None), shards, audits


def event(**over: Any) -> dict[str, Any]:
    body = {
        "event_id": "77:in_transit",
        "shipment_id": "77",
        "order_id": "500",
        "tracking_number": "RC123",
        "status": "in_transit",
        "location": "hub",
        "occurred_ms": 1_700_000_000_000,
    }
    return {**body, **over}


def signed(body: dict[str, Any], *, ts: int | None = None, secret: str = SECRET) -> tuple:
    raw = json.dumps(body).encode()
    headers = signed_headers(secret, int(time.time()) if ts is None else ts, raw)
    return raw, headers["X-Timestamp"], headers["X-Signature"]


async def test_a_signed_event_of_a_known_shipment_reaches_its_orders_shard() -> None:
    callbacks, shards, audits = make()
    raw, ts, sig = signed(event())
    assert await callbacks.handle(raw, ts, sig, "1.2.3.4") == {"duplicate": False}
    assert shards.calls == [
        (
            1,
            "track",
            (500, 77),
            {
                "event_id": "77:in_transit",
                "status": "in_transit",
                "location": "hub",
                "occurred_ms": 1_700_000_000_000,
                "carrier": "raycarrier",
            },
        )
    ]
    assert audits == []


@pytest.mark.parametrize(
    ("body", "ts_offset", "secret", "error", "reason"),
    [
        (event(), 0, "x" * 40 + "-another-secret", BadSignature, "bad_signature"),
        (event(), -3600, SECRET, BadSignature, "stale_timestamp"),
        (event(order_id="501"), 0, SECRET, CarrierEventMismatch, "carrier_event_mismatch"),
        (event(tracking_number="RC999"), 0, SECRET, CarrierEventMismatch, "carrier_event_mismatch"),
        (event(shipment_id="78"), 0, SECRET, ShipmentNotFound, "shipment_not_found"),
        (event(status="lost"), 0, SECRET, ValidationFailed, "malformed"),
        (event(occurred_ms="soon"), 0, SECRET, ValidationFailed, "malformed"),
    ],
)
async def test_each_refusal_is_audited_once_and_reaches_no_shard(
    body: dict[str, Any], ts_offset: int, secret: str, error: type[Exception], reason: str
) -> None:
    callbacks, shards, audits = make()
    raw, ts, sig = signed(body, ts=int(time.time()) + ts_offset, secret=secret)
    with pytest.raises(error):
        await callbacks.handle(raw, ts, sig, "1.2.3.4")
    assert shards.calls == []
    assert [(a["reason"], a["shipment_id"], a["remote_addr"]) for a in audits] == [
        (reason, str(body["shipment_id"]), "1.2.3.4")
    ]


async def test_a_body_changed_after_signing_is_refused() -> None:
    callbacks, shards, audits = make()
    raw, ts, sig = signed(event())
    with pytest.raises(BadSignature):
        await callbacks.handle(raw.replace(b"in_transit", b"delivered"), ts, sig, "unknown")
    assert shards.calls == [] and [a["reason"] for a in audits] == ["bad_signature"]


async def test_the_simulated_carriers_events_verify_and_have_stable_ids() -> None:
    callbacks, shards, _ = make()
    shipment = {"shipment_id": "77", "order_id": "500", "tracking_number": "RC123"}
    raw = event_body(shipment, "delivered", 1_700_000_000_000)
    assert json.loads(raw)["event_id"] == "77:delivered"
    headers = signed_headers(SECRET, int(time.time()), raw)
    await callbacks.handle(raw, headers["X-Timestamp"], headers["X-Signature"], "unknown")
    assert shards.calls[0][3]["status"] == "delivered"


def test_shipping_events_notify_the_customer_unless_silent() -> None:
    def ev(topic: str, **payload: Any) -> Event:
        return Event("1-0", "e1", topic, "500", {"order_id": "500", "user_id": 9, **payload}, 0)

    assert render(ev("order.delivered"))[1] == "order_delivered"  # type: ignore[index]
    assert render(ev("order.partially_shipped"))[1] == "order_partially_shipped"  # type: ignore[index]
    created = render(ev("shipment.created", carrier="ups", tracking_number="1Z9"))
    assert created is not None and "ups 1Z9" in created[3]
    assert render(ev("shipment.created", silent=True)) is None
    assert render(ev("shipment.tracking", status="in_transit", silent=True)) is None
