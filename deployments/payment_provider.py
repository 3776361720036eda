"""The simulated payment provider: its own Serve deployment in the app.

The ingress hands it a charge (``charge``) and gets an answer at once; the provider then
calls the shop back asynchronously over HTTP, ``POST /payments/callback``, with a body
signed by HMAC-SHA256 over ``timestamp + "." + body`` (``raymall.orders.signing``), like a
real provider's webhook. Guarantees:

- the callback says ``succeeded`` unless the charge asked for ``fail``;
- delivery is retried with backoff (``payment_callback_attempts``) until the shop answers
  2xx or 4xx (4xx is final: a refusal is not retried); a repeated ``charge`` of the same
  payment sends the callback again, which the shop treats as a duplicate;
- the provider keeps no state the shop depends on: if it dies, an unpaid order simply
  times out;
- refunds (``refund``) go the same way: the provider answers at once and posts a signed
  ``POST /payments/refund-callback`` (``succeeded`` unless the refund asked for ``fail``),
  retried likewise; a refund handed over again while its callback is under way is not
  sent twice, and one handed over later is answered again (the shop's compare-and-set
  makes the second a duplicate).
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

log = get_logger("payment.provider")


def callback_url(settings: Settings) -> str:
    if settings.payment_callback_url:
        return settings.payment_callback_url
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - the address Serve listens on
        host = "127.0.0.1"
    return f"http://{host}:{settings.http_port}/payments/callback"


def refund_callback_url(settings: Settings) -> str:
    if settings.refund_callback_url:
        return settings.refund_callback_url
    base = callback_url(settings)
    return base.rsplit("/", 1)[0] + "/refund-callback"


def refund_body(refund: dict[str, Any]) -> bytes:
    body = {
        "refund_id": refund["refund_id"],
        "payment_id": refund["payment_id"],
        "order_id": str(refund["order_id"]),
        "amount_cents": int(refund["amount_cents"]),
        "status": "failed" if refund.get("outcome") == "fail" else "succeeded",
        "sent_ms": int(time.time() * 1000),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def callback_body(charge: dict[str, Any]) -> bytes:
    body = {
        "payment_id": charge["payment_id"],
        "order_id": str(charge["order_id"]),
        "amount_cents": int(charge["amount_cents"]),
        "currency": charge.get("currency", "USD"),
        "status": "failed" if charge.get("outcome") == "fail" else "succeeded",
        "sent_ms": int(time.time() * 1000),
    }
    return json.dumps(body, separators=(",", ":")).encode()


@serve.deployment(name="PaymentProvider")
class PaymentProvider:
    def __init__(self, settings: Settings) -> None:
        logs.configure(settings.log_level)
        self.settings = settings
        self.secret = settings.secret("payment_secret")
        self.url = callback_url(settings)
        self.refund_url = refund_callback_url(settings)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.delivered = 0
        self.failed = 0

    async def charge(self, charge: dict[str, Any]) -> dict[str, Any]:
        """Accept a charge; the callback follows after ``payment_callback_delay_s``."""
        payment_id = str(charge["payment_id"])
        self._start(payment_id, charge, self.url, callback_body)
        return {"payment_id": payment_id, "accepted": True}

    async def refund(self, refund: dict[str, Any]) -> dict[str, Any]:
        """Accept a refund; its callback follows after ``payment_callback_delay_s``."""
        refund_id = str(refund["refund_id"])
        self._start(refund_id, refund, self.refund_url, refund_body)
        return {"refund_id": refund_id, "accepted": True}

    def _start(
        self, key: str, what: dict[str, Any], url: str, body: Callable[[dict[str, Any]], bytes]
    ) -> None:
        running = self._tasks.get(key)
        if running is None or running.done():
            task = asyncio.get_running_loop().create_task(self._deliver(what, url, body, key))
            self._tasks[key] = task
            task.add_done_callback(self._forget(key))

    def _forget(self, key: str) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is task:
                del self._tasks[key]

        return done

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def _deliver(
        self,
        charge: dict[str, Any],
        url: str,
        make_body: Callable[[dict[str, Any]], bytes],
        key: str,
    ) -> None:
        await asyncio.sleep(self.settings.payment_callback_delay_s)
        backoff = Backoff(first_s=0.2, max_s=5.0)
        for attempt in range(1, self.settings.payment_callback_attempts + 1):
            body = make_body(charge)
            headers = signed_headers(self.secret, int(time.time()), body)
            if charge.get("traceparent"):  # the paying request's trace (raymall.tracing)
                headers["traceparent"] = str(charge["traceparent"])
            try:
                client = await self._client()
                async with client.post(url, data=body, headers=headers) as resp:
                    if resp.status < 500:
                        if resp.status >= 400:
                            log.warning(
                                "callback for %s refused: %s %s",
                                key,
                                resp.status,
                                (await resp.text())[:200],
                            )
                        self.delivered += 1
                        return
                    log.warning("callback for %s got %s", key, resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("callback for %s failed: %r", key, exc)
            if attempt < self.settings.payment_callback_attempts:
                await backoff.wait()
        self.failed += 1
        log.error("gave up delivering the callback for %s", key)

    async def stats(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed, "pending": len(self._tasks)}

    async def check_health(self) -> None:
        """Serve's health check: alive while the event loop runs."""
