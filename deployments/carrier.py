"""The simulated carrier: its own Serve deployment in the app, like the payment provider.

The shop hands it a new shipment (``track``) and gets an answer at once; the carrier then
posts the shipment's tracking events, one every ``carrier_step_ms`` (``picked_up``,
``in_transit``, ``out_for_delivery``, ``delivered``), to ``POST /carrier/callback``, each
signed by HMAC-SHA256 over ``timestamp + "." + body`` with ``RAYMALL_CARRIER_SECRET``
(``raymall.orders.signing``). Guarantees:

- each event has a stable id (``<shipment>:<status>``), so a repeated event (a retry, a
  shipment handed over twice) is a duplicate the shop ignores;
- delivery of an event is retried with backoff (``carrier_callback_attempts``) until the
  shop answers 2xx or 4xx (4xx is final);
- the carrier keeps no state the shop depends on: if it dies, the shipment stays where its
  last event put it and the customer can still confirm receipt.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from ray import serve

from raymall import logs
from raymall.logs import get_logger
from raymall.orders.signing import signed_headers
from raymall.retry import Backoff
from raymall.settings import Settings
from raymall.shipping.tracking import CARRIER_STEPS

log = get_logger("carrier")
LOCATIONS = {
    "picked_up": "origin depot",
    "in_transit": "sorting hub",
    "out_for_delivery": "local depot",
    "delivered": "front door",
}


def callback_url(settings: Settings) -> str:
    if settings.carrier_callback_url:
        return settings.carrier_callback_url
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - the address Serve listens on
        host = "127.0.0.1"
    return f"http://{host}:{settings.http_port}/carrier/callback"


def event_body(shipment: dict[str, Any], status: str, occurred_ms: int) -> bytes:
    body = {
        "event_id": f"{shipment['shipment_id']}:{status}",
        "shipment_id": str(shipment["shipment_id"]),
        "order_id": str(shipment["order_id"]),
        "tracking_number": str(shipment["tracking_number"]),
        "status": status,
        "location": LOCATIONS[status],
        "occurred_ms": occurred_ms,
    }
    return json.dumps(body, separators=(",", ":")).encode()


@serve.deployment(name="Carrier")
class Carrier:
    def __init__(self, settings: Settings) -> None:
        logs.configure(settings.log_level)
        self.settings = settings
        self.secret = settings.secret("carrier_secret")
        self.url = callback_url(settings)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.delivered = 0
        self.failed = 0

    async def track(self, shipment: dict[str, Any]) -> dict[str, Any]:
        """Accept a shipment; its events follow, ``carrier_step_ms`` apart."""
        shipment_id = str(shipment["shipment_id"])
        running = self._tasks.get(shipment_id)
        if running is None or running.done():
            task = asyncio.get_running_loop().create_task(self._run(shipment))
            self._tasks[shipment_id] = task
            task.add_done_callback(self._forget(shipment_id))
        return {"shipment_id": shipment_id, "accepted": True}

    def _forget(self, shipment_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if self._tasks.get(shipment_id) is task:
                del self._tasks[shipment_id]

        return done

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def _run(self, shipment: dict[str, Any]) -> None:
        for status in CARRIER_STEPS:
            await asyncio.sleep(self.settings.carrier_step_ms / 1000)
            if not await self._send(shipment, status, int(time.time() * 1000)):
                return  # refused or undeliverable: the later events would be too

    async def _send(self, shipment: dict[str, Any], status: str, occurred_ms: int) -> bool:
        backoff = Backoff(first_s=0.2, max_s=5.0)
        body = event_body(shipment, status, occurred_ms)
        attempts = self.settings.carrier_callback_attempts
        for attempt in range(1, attempts + 1):
            headers = signed_headers(self.secret, int(time.time()), body)
            try:
                client = await self._client()
                async with client.post(self.url, data=body, headers=headers) as resp:
                    if resp.status < 500:
                        if resp.status >= 400:
                            log.warning(
                                "tracking event %s/%s refused: %s %s",
                                shipment["shipment_id"],
                                status,
                                resp.status,
                                (await resp.text())[:200],
                            )
                            return False
                        self.delivered += 1
                        return True
                    log.warning(
                        "tracking event for %s got %s", shipment["shipment_id"], resp.status
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("tracking event for %s failed: %r", shipment["shipment_id"], exc)
            if attempt < attempts:
                await backoff.wait()
        self.failed += 1
        log.error("gave up on tracking event %s/%s", shipment["shipment_id"], status)
        return False

    async def stats(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed, "tracking": len(self._tasks)}

    async def check_health(self) -> None:
        """Serve's health check: alive while the event loop runs."""
