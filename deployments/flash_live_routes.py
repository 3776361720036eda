"""HTTP routes: flash sales for the public, live.

- ``GET /flash-sales``: the upcoming and running sales (with the product each sells) and
  ``server_time_ms``, the replica's clock, by which a client counts down to a start;
- ``GET /flash-sales/{id}/events``: a server-sent event stream of the sale
  (``text/event-stream``; 404 in the one error shape for an unknown sale). Every event's
  data is the sale's state as JSON (``sale_id``, ``remaining``, ``quantity``, ``status``,
  ``starts_at_ms``, ``ends_at_ms``, ``server_time_ms``); the events are ``sale`` (first,
  on connecting), ``remaining`` (units sold, or the sale started), ``sold_out``,
  ``returned`` (units came back, ``units`` says how many) and ``ended`` (the last: the
  stream closes). A comment line every ``KEEPALIVE_S`` keeps idle connections open.

The stream is served from the replica's ``raymall.flash.live.SaleHub``: no client's
connection reaches the sale's shard. It is left out of the OpenAPI document (a schema
fuzzer would hold it open), and each stream holds one of the replica's request slots
(``RAYMALL_FLASH_STREAM_MAX_CLIENTS`` are added to ``max_ongoing_requests`` for them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from deployments.security import public
from deployments.services import services
from raymall.errors import Unavailable
from raymall.flash.live import SaleHub
from raymall.ids import now_ms

router = APIRouter(tags=["flash-sales"])
public("GET", "/flash-sales")
public("GET", "/flash-sales/{sale_id}/events")
SaleId = Annotated[int, Path(ge=1, le=2**63 - 1)]
KEEPALIVE_S = 15.0
RETRY_MS = 2000  # how soon a browser reconnects a dropped stream


@router.get("/flash-sales")
async def list_public_sales(request: Request) -> dict[str, Any]:
    """Upcoming and running flash sales, soonest first, with the server's clock."""
    return await services(request).flash_public.listing()


@router.get("/flash-sales/{sale_id}/events", include_in_schema=False)
async def sale_events(request: Request, sale_id: SaleId) -> StreamingResponse:
    svc = services(request)
    hub = svc.flash_live
    if hub.watchers >= svc.settings.flash_stream_max_clients:
        raise Unavailable("too many live viewers on this server; retry", details={"retry_after": 5})
    await svc.flash.sale(sale_id)  # 404 for an unknown sale, before the stream starts
    return StreamingResponse(
        sale_stream(hub, sale_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def sale_stream(hub: SaleHub, sale_id: int) -> AsyncIterator[bytes]:
    """The events of one client (see the module docstring)."""
    watch = await hub.watch(sale_id)
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        last: dict[str, Any] | None = None
        while True:
            changed = watch.changed  # taken before reading: a change after it wakes us
            state = watch.state(now_ms())
            if last is None:
                yield frame("sale", state)
            elif state["status"] == "ended":
                yield frame("ended", state)
                return
            elif state["remaining"] > last["remaining"]:
                yield frame("returned", {**state, "units": state["remaining"] - last["remaining"]})
            elif state["status"] == "sold_out" and last["status"] != "sold_out":
                yield frame("sold_out", state)
            elif state["remaining"] != last["remaining"] or state["status"] != last["status"]:
                yield frame("remaining", state)
            if state["status"] == "ended":
                return
            last = state
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    await changed.wait()
            except TimeoutError:
                yield b": keepalive\n\n"
    finally:
        hub.unwatch(watch)
