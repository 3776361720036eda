"""Flash purchase tokens: a sale with ``require_token`` sells only to a request that carries
one (header ``X-Flash-Token``), minted by ``GET /flash-sales/{id}/token`` once the sale has
started. This hides the purchase behind one more signed-in step, as the seckill designs
hide the purchase path behind a per-user path: a script cannot buy the moment a sale opens
with a request prepared before it.

A token is ``{sale}.{user}.{iat_ms}.{exp_ms}.{nonce}.{mac}``: plain fields and an
HMAC-SHA256 of them under ``RAYMALL_FLASH_TOKEN_SECRET``. Issuing one writes nothing
anywhere (no database, no Redis): any replica verifies it with the secret alone.

Guarantees (tests/unit/test_flash_tokens.py):

- a token verifies only with its own MAC: changing any field, or signing with another
  secret, makes it ``flash_token_invalid``;
- it is bound to one user and one sale: presented by another user, or for another sale, it
  is ``flash_token_invalid``;
- it is short-lived: from ``iat`` to ``exp`` (``RAYMALL_FLASH_TOKEN_TTL_S``), then
  ``flash_token_invalid`` (the buyer's orders stay readable at
  ``GET /flash-sales/{id}/purchases/me``);
- it is never valid before its sale: minting before the start is refused
  (``sale_not_started``), and a token whose ``iat`` precedes the sale's start is refused;
- **single use, decided by the shard's exactly-once**: the token's nonce is the purchase's
  idempotency key (``token_key``), so every attempt with one token is the same purchase to
  the shard, which keeps its keys in the database. A second purchase with a used token
  cannot happen, in any order or concurrency, across replicas and shard restarts, with no
  extra Redis or database work on the purchase path. The shard answers a reuse with the
  first purchase (a replay); ``FlashService`` turns that replay into a refusal,
  ``409 flash_token_used``, whose ``details.order_id`` names the order the token bought, so
  an honest retry after a lost answer still learns its order. An attempt that bought
  nothing (rate limited, sold out, limit reached, unavailable) leaves the token usable
  until it expires. On such a sale the client's ``Idempotency-Key`` is not used: the token
  is the key (a client key could otherwise turn one token into several purchases).

The other choice, consuming the nonce in Redis inside the batch's rate-limit script, was
not taken: it decides "used" before the shard has bought anything (an attempt refused for
stock, or lost to a shard restart, would burn the token), it is as durable as Redis, and it
would still need the shard's key to make a retry exactly-once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any, NamedTuple

from raymall.domain import outcomes
from raymall.domain.outcomes import BUY
from raymall.domain.sale import Sale
from raymall.errors import FlashTokenInvalid, FlashTokenRequired, FlashTokenUsed
from raymall.settings import Settings

HEADER = "X-Flash-Token"
MAX_LEN = 200  # longer header values are not tokens (the app and the shortcut alike)
_PREFIX = b"raymall.flash.v1."  # what the MAC covers besides the fields: purpose, version
_TOKEN = re.compile(
    r"([1-9][0-9]{0,18})\.([1-9][0-9]{0,18})\.([0-9]{1,16})\.([0-9]{1,16})"
    r"\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})"
)


class FlashToken(NamedTuple):
    sale_id: int
    user_id: int
    iat_ms: int
    exp_ms: int
    nonce: str


def token_key(token: FlashToken) -> str:
    """The purchase key of every purchase made with ``token`` (client-kind: ``k:``, so
    replays under a sold-out lease are answered from the replica's snapshot too)."""
    return f"k:~ft.{token.nonce}"


class FlashTokens:
    """Mints and verifies flash purchase tokens under one secret (see the module doc)."""

    def __init__(self, secret: str, ttl_ms: int) -> None:
        if not secret:
            raise ValueError("a flash token secret is required")
        self._key = hashlib.sha256(b"raymall flash tokens\x00" + secret.encode()).digest()
        self.ttl_ms = ttl_ms

    @classmethod
    def from_settings(cls, settings: Settings) -> FlashTokens:
        """Under ``RAYMALL_FLASH_TOKEN_SECRET`` (resolved: ``Settings.with_secrets``)."""
        return cls(settings.secret("flash_token_secret"), settings.flash_token_ttl_s * 1000)

    def _mac(self, fields: str) -> str:
        digest = hmac.new(self._key, _PREFIX + fields.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def mint(self, sale_id: int, user_id: int, now_ms: int) -> tuple[str, int]:
        """A new token for ``user_id`` in ``sale_id`` and when it expires (epoch ms). The
        caller checks that the sale has started."""
        nonce = secrets.token_urlsafe(16)  # 128 bits: 22 characters
        exp_ms = now_ms + self.ttl_ms
        fields = f"{sale_id}.{user_id}.{now_ms}.{exp_ms}.{nonce}"
        return f"{fields}.{self._mac(fields)}", exp_ms

    def verify(
        self, raw: str, *, sale_id: int, user_id: int, starts_ms: int, now_ms: int
    ) -> FlashToken:
        """The token ``raw`` if it is genuine, this user's, for this sale, minted at or
        after its start and not expired; else ``FlashTokenInvalid`` (why, in its details)."""
        found = _TOKEN.fullmatch(raw) if len(raw) <= MAX_LEN else None
        if found is None:
            raise _invalid("malformed")
        fields, mac = raw.rpartition(".")[0], found.group(6)
        if not hmac.compare_digest(mac, self._mac(fields)):
            raise _invalid("bad_signature")
        token = FlashToken(
            int(found.group(1)),
            int(found.group(2)),
            int(found.group(3)),
            int(found.group(4)),
            found.group(5),
        )
        if token.sale_id != sale_id:
            raise _invalid("other_sale")
        if token.user_id != user_id:
            raise _invalid("other_user")
        if token.iat_ms < starts_ms:
            raise _invalid("minted_before_start")
        if now_ms >= token.exp_ms:
            raise _invalid("expired")
        return token


def _invalid(reason: str) -> FlashTokenInvalid:
    return FlashTokenInvalid(
        f"the {HEADER} header is not a valid token for this sale and user ({reason}); "
        "get one from GET /flash-sales/{id}/token",
        details={"reason": reason},
    )


def issue(tokens: FlashTokens, sale: Sale, user_id: int, now_ms: int) -> dict[str, Any]:
    """What ``GET /flash-sales/{id}/token`` answers: a new token for a running sale;
    ``sale_not_started`` before its start, ``sale_ended`` after its end."""
    if now_ms < sale.starts_ms:
        raise outcomes.error_for("not_started", BUY, starts_at_ms=sale.starts_ms)
    if sale.ended or now_ms >= sale.ends_ms:
        raise outcomes.error_for("ended", BUY, ends_at_ms=sale.ends_ms)
    token, expires_ms = tokens.mint(sale.id, user_id, now_ms)
    return {
        "sale_id": sale.id,
        "token": token,
        "header": HEADER,
        "expires_at_ms": expires_ms,
        "require_token": sale.require_token,
    }


def token_required(sale_id: int) -> FlashTokenRequired:
    return FlashTokenRequired(
        f"this sale needs a purchase token in the {HEADER} header "
        f"(GET /flash-sales/{sale_id}/token)",
        details={"sale_id": sale_id},
    )


def token_used(order_id: Any) -> FlashTokenUsed:
    return FlashTokenUsed(
        "this flash token has already bought; details.order_id is its order",
        details={"order_id": str(order_id)},
    )
