"""Flash purchase tokens: the rules of ``raymall.flash.tokens`` (sign and verify, expiry,
binding to a user and a sale, tampering, minting only after the start) and how
``FlashService`` applies them (a sale with ``require_token`` refuses before any rate limit
or shard call; the token's nonce is the purchase's key; a token that bought is refused)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from raymall.domain.sale import Sale
from raymall.domain.shard_ops import BuyResult, FlashBuy, Op, Result
from raymall.errors import (
    FlashTokenInvalid,
    FlashTokenRequired,
    FlashTokenUsed,
    SaleEnded,
    SaleNotStarted,
)
from raymall.flash.service import FlashService
from raymall.flash.tokens import FlashTokens, issue, token_key
from raymall.ids import now_ms
from raymall.settings import Settings

SECRET = "s" * 16 + "ecret-of-the-flash-tokens-0123456789"
START = 1_000_000
TTL = 60_000


@pytest.fixture()
def tokens() -> FlashTokens:
    return FlashTokens(SECRET, TTL)


def _reason(exc: pytest.ExceptionInfo[FlashTokenInvalid]) -> str:
    return str(exc.value.details["reason"])


def test_a_minted_token_verifies_for_its_user_and_sale(tokens: FlashTokens) -> None:
    raw, exp = tokens.mint(7, 42, START + 5)
    assert exp == START + 5 + TTL
    got = tokens.verify(raw, sale_id=7, user_id=42, starts_ms=START, now_ms=START + 6)
    assert (got.sale_id, got.user_id, got.iat_ms, got.exp_ms) == (7, 42, START + 5, exp)
    other, _ = tokens.mint(7, 42, START + 5)
    assert other != raw  # every token has its own nonce, hence its own purchase key
    assert token_key(got) != token_key(
        tokens.verify(other, sale_id=7, user_id=42, starts_ms=START, now_ms=START + 6)
    )


def test_a_token_is_bound_to_its_user_and_its_sale(tokens: FlashTokens) -> None:
    raw, _ = tokens.mint(7, 42, START)
    with pytest.raises(FlashTokenInvalid) as other_user:
        tokens.verify(raw, sale_id=7, user_id=43, starts_ms=START, now_ms=START + 1)
    assert _reason(other_user) == "other_user"
    with pytest.raises(FlashTokenInvalid) as other_sale:
        tokens.verify(raw, sale_id=8, user_id=42, starts_ms=START, now_ms=START + 1)
    assert _reason(other_sale) == "other_sale"


def test_a_token_expires_after_its_ttl(tokens: FlashTokens) -> None:
    raw, exp = tokens.mint(7, 42, START)
    tokens.verify(raw, sale_id=7, user_id=42, starts_ms=START, now_ms=exp - 1)
    with pytest.raises(FlashTokenInvalid) as expired:
        tokens.verify(raw, sale_id=7, user_id=42, starts_ms=START, now_ms=exp)
    assert _reason(expired) == "expired"


def test_a_token_issued_before_the_start_is_refused(tokens: FlashTokens) -> None:
    raw, _ = tokens.mint(7, 42, START - 1)  # e.g. a clock ahead, or a forged mint
    with pytest.raises(FlashTokenInvalid) as early:
        tokens.verify(raw, sale_id=7, user_id=42, starts_ms=START, now_ms=START + 1)
    assert _reason(early) == "minted_before_start"


def test_a_tampered_or_foreign_token_is_refused(tokens: FlashTokens) -> None:
    raw, _ = tokens.mint(7, 42, START)
    sale, user, iat, exp, nonce, mac = raw.split(".")
    forged = [
        ".".join([sale, "43", iat, exp, nonce, mac]),  # another user
        ".".join([sale, user, str(START - 10**6), exp, nonce, mac]),  # an earlier iat
        ".".join([sale, user, iat, str(int(exp) + 10**9), nonce, mac]),  # a longer life
        ".".join([sale, user, iat, exp, nonce[:-1] + ("A" if nonce[-1] != "A" else "B"), mac]),
        ".".join([sale, user, iat, exp, nonce, mac[:-1] + ("A" if mac[-1] != "A" else "B")]),
        FlashTokens("another-secret-" + "x" * 32, TTL).mint(7, 42, START)[0],
    ]
    for token in forged:
        with pytest.raises(FlashTokenInvalid) as bad:
            tokens.verify(
                token, sale_id=7, user_id=int(token.split(".")[1]), starts_ms=0, now_ms=START + 1
            )
        assert _reason(bad) == "bad_signature", token
    for junk in ["", "x", raw + ".", raw[:-1], " " + raw, raw + "A" * 300, "7.42.1.2.a.b"]:
        with pytest.raises(FlashTokenInvalid) as malformed:
            tokens.verify(junk, sale_id=7, user_id=42, starts_ms=0, now_ms=START + 1)
        assert _reason(malformed) == "malformed"


def _sale(starts_ms: int, ends_ms: int, *, ended: bool = False) -> Sale:
    return Sale(7, 10, 250, 100, 2, starts_ms, ends_ms, ended, 0, require_token=True)


def test_tokens_are_minted_only_while_the_sale_runs(tokens: FlashTokens) -> None:
    with pytest.raises(SaleNotStarted):
        issue(tokens, _sale(START, START + 10_000), 42, START - 1)
    with pytest.raises(SaleEnded):
        issue(tokens, _sale(START, START + 10_000), 42, START + 10_000)
    with pytest.raises(SaleEnded):
        issue(tokens, _sale(START, START + 10_000, ended=True), 42, START + 1)
    got = issue(tokens, _sale(START, START + 10_000), 42, START)
    assert got["sale_id"] == 7 and got["header"] == "X-Flash-Token"
    assert got["expires_at_ms"] == START + TTL and got["require_token"] is True
    tokens.verify(got["token"], sale_id=7, user_id=42, starts_ms=START, now_ms=START + 1)


def test_the_secret_comes_from_the_settings_and_is_required(tmp_path: Any) -> None:
    resolved = Settings(var_dir=tmp_path).with_secrets()
    assert (tmp_path / "flash_token_secret.key").exists()  # generated in dev, kept
    minted, _ = FlashTokens.from_settings(resolved).mint(1, 2, START)
    again = Settings(var_dir=tmp_path).with_secrets()
    FlashTokens.from_settings(again).verify(minted, sale_id=1, user_id=2, starts_ms=0, now_ms=START)
    with pytest.raises(Exception, match="FLASH_TOKEN_SECRET"):
        Settings(env="prod", jwt_secret="j" * 40 + "abcdefgh", payment_secret="p" * 40 + "abcdefgh")
    with pytest.raises(Exception, match="FLASH_TOKEN_SECRET"):
        Settings(
            env="prod",
            jwt_secret="j" * 40 + "abcdefgh",
            payment_secret="p" * 40 + "abcdefgh",
            flash_token_secret="changeme",
        )


# ---- FlashService: the purchase path ------------------------------------------------------
class Shards:
    """One shard that remembers keys as the desk does: a key that bought replays."""

    def __init__(self) -> None:
        self.calls = 0
        self.bought: dict[tuple[int, str], tuple[int, int]] = {}  # (user, key) -> order, qty
        self.code = "ok"

    def shard_of(self, sku_id: int) -> int:
        return 0

    async def send_batch(self, shard: int, ops: list[Op]) -> Sequence[Result]:
        self.calls += 1
        await asyncio.sleep(0)
        out: list[Result] = []
        for op in ops:
            assert type(op) is FlashBuy
            first = self.bought.get((op.user_id, op.key))
            if first is not None:
                code = "ok" if first[1] == op.qty else "key_reused"
                out.append(BuyResult(code, first[0], 77, True, 5, 0, 0))
            elif self.code != "ok":
                out.append(BuyResult(self.code, None, None, False, 5, 0, 0))
            else:
                order = 1000 + len(self.bought)
                self.bought[(op.user_id, op.key)] = (order, op.qty)
                out.append(BuyResult("ok", order, 77, False, 4, 0, 0))
        return out


class Limiter:
    def __init__(self) -> None:
        self.calls = 0

    async def check(self, requests: Sequence[Any]) -> list[Any]:
        from raymall.ratelimit import Decision

        self.calls += 1
        return [Decision(True, 0, 1) for _ in requests]


@pytest.fixture()
def flash() -> FlashService:
    settings = Settings(
        database_url="sqlite://",
        redis_url="redis://unused",
        flash_token_secret=SECRET,
        flash_batch_window_ms=1,
        flash_sale_cache_ttl_s=3600,
    )
    redis: Any = type("Redis", (), {"register_script": lambda self, source: None})()
    service = FlashService(settings, None, redis, Shards())  # type: ignore[arg-type]
    service.limiter = Limiter()  # type: ignore[assignment]
    now = now_ms()
    service.remember(Sale(1, 10, 250, 100, 2, now - 1000, now + 600_000, False, 0))  # open
    service.remember(_sale(now - 1000, now + 600_000))  # sale 7 requires a token
    return service


async def _buy(flash: FlashService, user: int, sale: int, **kw: Any) -> Any:
    try:
        return await flash.purchase(user, sale, kw.pop("key", None), None, **kw)
    except Exception as exc:
        return exc


async def test_a_token_sale_refuses_before_any_rate_limit_or_shard_call(
    flash: FlashService,
) -> None:
    shards: Any = flash.inventory
    limiter: Any = flash.limiter
    theirs = (await flash.mint_token(7, 43))["token"]
    early = flash.tokens.mint(7, 42, flash.cache._sales[7][0].starts_ms - 1)[0]
    assert isinstance(await _buy(flash, 42, 7), FlashTokenRequired)
    assert isinstance(await _buy(flash, 42, 7, token=theirs), FlashTokenInvalid)
    assert isinstance(await _buy(flash, 42, 7, token=early), FlashTokenInvalid)
    assert isinstance(await _buy(flash, 42, 7, token="garbage"), FlashTokenInvalid)
    assert (shards.calls, limiter.calls) == (0, 0)


async def test_a_token_buys_once_and_a_reuse_names_its_order(flash: FlashService) -> None:
    shards: Any = flash.inventory
    token = (await flash.mint_token(7, 42))["token"]
    first = await _buy(flash, 42, 7, token=token)
    assert first["order_id"] == "1000" and first["replayed"] is False
    for kw in ({}, {"key": "another-key"}, {"qty": 2}):  # no client key turns it into two
        again = await _buy(flash, 42, 7, token=token, **kw)
        assert isinstance(again, FlashTokenUsed), kw
        assert again.details == {"order_id": "1000"}
    assert len(shards.bought) == 1
    second = await _buy(flash, 42, 7, token=(await flash.mint_token(7, 42))["token"])
    assert second["order_id"] == "1001"  # a new token is a new purchase


async def test_concurrent_uses_of_one_token_buy_once(flash: FlashService) -> None:
    shards: Any = flash.inventory
    token = (await flash.mint_token(7, 42))["token"]
    got = await asyncio.gather(*(_buy(flash, 42, 7, token=token) for _ in range(8)))
    bought = [g for g in got if isinstance(g, dict)]
    assert len(bought) == 1 and len(shards.bought) == 1
    assert all(isinstance(g, FlashTokenUsed) for g in got if not isinstance(g, dict))


async def test_a_token_whose_attempt_bought_nothing_can_try_again(flash: FlashService) -> None:
    shards: Any = flash.inventory
    token = (await flash.mint_token(7, 42))["token"]
    shards.code = "sold_out"
    assert not isinstance(await _buy(flash, 42, 7, token=token), dict)
    shards.code = "ok"
    assert (await _buy(flash, 42, 7, token=token))["replayed"] is False


async def test_a_sale_without_require_token_ignores_tokens(flash: FlashService) -> None:
    assert (await _buy(flash, 42, 1))["order_id"] == "1000"
    assert (await _buy(flash, 42, 1, token="garbage"))["order_id"] == "1001"
    assert (await _buy(flash, 42, 1, key="k"))["order_id"] == "1002"
    assert (await _buy(flash, 42, 1, key="k"))["replayed"] is True  # Idempotency-Key as before


async def test_minting_before_the_start_is_refused(flash: FlashService) -> None:
    now = now_ms()
    flash.remember(Sale(9, 10, 250, 100, 2, now + 60_000, now + 600_000, False, 0))
    with pytest.raises(SaleNotStarted):
        await flash.mint_token(9, 42)
