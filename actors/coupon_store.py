"""SQL of the coupon desk: load a campaign into its shard, and the rows one batch writes.

``statements`` returns statements that ``InventoryStore.write`` runs in the SAME
transaction as the rest of the shard's batch (ledger and flash rows), so a claim's
``user_coupons`` row, its ``coupon.claimed`` outbox event and the campaign's ``claimed``
count commit together or not at all (durable before ack). Driver-level SQL with the
driver's placeholders, like ``actors.inventory_store``.
"""

from __future__ import annotations

from sqlalchemy import Engine

from actors.inventory_store import Statement
from raymall.coupons.rows import CAMPAIGN_COLUMNS, campaign_of
from raymall.domain.coupon_desk import Claim, CouponChanges
from raymall.domain.coupons import AVAILABLE, CLAIMED_TOPIC, Campaign
from raymall.orders import rows

COUPON_COLUMNS = (
    "id",
    "campaign_id",
    "user_id",
    "claim_key",
    "state",
    "valid_from_ms",
    "valid_until_ms",
    "created_ms",
    "updated_ms",
)


def load_campaign(engine: Engine, ph: str, campaign_id: int) -> tuple[Campaign, list[Claim]] | None:
    """A campaign with every claim so far (None if unknown)."""
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            f"SELECT {CAMPAIGN_COLUMNS} FROM coupon_campaigns WHERE id = {ph}", (campaign_id,)
        ).first()
        if row is None:
            return None
        found = conn.exec_driver_sql(
            "SELECT id, user_id, claim_key, valid_from_ms, valid_until_ms, created_ms "
            f"FROM user_coupons WHERE campaign_id = {ph}",
            (campaign_id,),
        ).all()
    claims = [
        Claim(int(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in found
    ]
    return campaign_of(row), claims


def statements(changes: CouponChanges, ph: str, now_ms: int) -> list[Statement]:
    """Rows for one batch (see the module docstring), parents before children."""
    out: list[Statement] = []
    if changes.campaigns:
        out.append(
            (
                f"UPDATE coupon_campaigns SET claimed = {ph}, total = {ph}, "
                f"per_user_limit = {ph}, claim_starts_ms = {ph}, claim_ends_ms = {ph}, "
                f"active = {ph}, updated_ms = {ph} WHERE id = {ph}",
                [
                    (
                        c.claimed,
                        c.total,
                        c.per_user_limit,
                        c.claim_starts_ms,
                        c.claim_ends_ms,
                        c.active,
                        now_ms,
                        cid,
                    )
                    for cid, c in sorted(changes.campaigns.items())
                ],
                True,
                None,
            )
        )
    if changes.claims:
        coupons, events = [], []
        for info, c in changes.claims:
            coupons.append(
                (
                    c.coupon_id,
                    info.id,
                    c.user_id,
                    c.key,
                    AVAILABLE,
                    c.valid_from_ms,
                    c.valid_until_ms,
                    c.created_ms,
                    c.created_ms,
                )
            )
            payload = {
                "coupon_id": str(c.coupon_id),
                "campaign_id": info.id,
                "user_id": c.user_id,
                "valid_until_ms": c.valid_until_ms,
            }
            events.append(rows.outbox_row(CLAIMED_TOPIC, c.coupon_id, payload, c.created_ms))
        out.append((rows.insert_sql("user_coupons", COUPON_COLUMNS, ph), coupons, True, None))
        out.append((rows.insert_sql(rows.OUTBOX, rows.OUTBOX_COLUMNS, ph), events, True, None))
    return out
