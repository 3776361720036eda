"""The flash sales' read model: what a sale's owning inventory shard publishes about it.

After each group commit that sold units of a sale, gave units back to it or ended it, the
shard publishes the sale's *live value* (``live_value``): the units left to buy while the
sale runs, ``ENDED`` once it was ended early. It goes out through an
``actors.availability_publisher.AvailabilityPublisher`` of its own (same guarantees: only
committed values, in commit order, nothing dropped): the field ``<sale id>`` of the
shard's hash ``flash:live:<shard>`` and a change message on the channel ``flash:live``.

Readers (``raymall.flash.live.SaleHub``, one per replica) take values from the channel
through the replica's one pub/sub connection and fan them out to every client watching
the sale; nothing a reader does reaches the shard. A sale the shard has not published
since it was created has no field yet: its row (``sold``, committed by the shard) says
the same.
"""

from __future__ import annotations

from raymall.domain.sale import Sale

CHANNEL = "flash:live"
ENDED = -1  # the live value of a sale ended before its end time


def hash_key(shard: int) -> str:
    return f"flash:live:{shard}"


def live_value(sale: Sale, now_ms: int) -> int:
    """What the owner publishes: the units left, or ``ENDED`` for a sale ended early (a
    sale past its end time is ended by the clock, which every reader has)."""
    if sale.ended:
        return ENDED
    return max(0, sale.quantity - sale.sold)
