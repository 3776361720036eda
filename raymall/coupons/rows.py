"""A ``coupon_campaigns`` row as the domain's ``Campaign``: read the same way by the owning
shard (``actors.coupon_store``) and by the replicas (``raymall.coupons.repo``)."""

from __future__ import annotations

import json
from typing import Any

from raymall.domain.coupons import Campaign
from raymall.domain.promotions import Rule, Scope

CAMPAIGN_COLUMNS = (
    "id, title, rule, scope, total, claimed, per_user_limit, claim_starts_ms, claim_ends_ms, "
    "active, valid_from_ms, valid_until_ms, valid_days, code, stacks, with_promotions, flash_ok"
)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _opt(value: Any) -> int | None:
    return None if value is None else int(value)


def campaign_of(row: Any) -> Campaign:
    """A row of ``SELECT {CAMPAIGN_COLUMNS}`` (in that order)."""
    return Campaign(
        id=int(row[0]),
        title=str(row[1]),
        rule=Rule.from_dict(_json(row[2])),
        scope=Scope.from_dict(_json(row[3])),
        total=int(row[4]),
        claimed=int(row[5]),
        per_user_limit=int(row[6]),
        claim_starts_ms=int(row[7]),
        claim_ends_ms=int(row[8]),
        active=bool(row[9]),
        valid_from_ms=_opt(row[10]),
        valid_until_ms=_opt(row[11]),
        valid_days=_opt(row[12]),
        code=row[13],
        stacks=bool(row[14]),
        with_promotions=bool(row[15]),
        flash_ok=bool(row[16]),
    )
