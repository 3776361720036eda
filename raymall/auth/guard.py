"""Limits on everything that costs a password hash: sign-ins, password changes, registrations.

**Charged before the hash.** An attempt is charged to every bucket it belongs to in one
atomic step (``RateLimiter.check``: all or none) *before* its password is checked, and a
success gives the charge back (``succeeded``), as does a check the replica's hash pool
refused (503, ``not_checked``). So of any number of concurrent guesses at
most ``login_max_failures_per_account`` are ever checked: the rest are refused with 429 and
``Retry-After`` without a hash. (Peeking first and charging after a failure let every
concurrent guess through.) Each bucket admits its limit at once and then one more per
``window / limit`` (GCRA, ``raymall.ratelimit``).

**Buckets of a sign-in**, for the account (its user id when it exists, so switching
between e-mail and username buys nothing, else the normalized name: unknown names are
limited exactly like real ones, so answers do not reveal which accounts exist):

- per account *and client* (``login_max_failures_per_account``). The client is the device,
  when the attempt presents a valid device token of this account (``raymall.auth.devices``);
  else its address, when known (``deployments.security.client_ip``); else "unknown", one
  client for every caller whose address is unknown;
- per account, for every client without a device token together
  (``login_max_failures_per_account_total``, looser): caps a guesser with many addresses;
- per address, over every account (``login_max_failures_per_ip``), when it is known.

An address here is an IPv4 address, or an IPv6 address's /64 (``address_bucket``): one
customer holds a whole /64, and could take a fresh address from it for every attempt.

A device has only its own bucket. A burst of wrong passwords from one client therefore
locks out that client, not the owner on a device that signed in before, nor (when
addresses are known) the owner from another address. A success clears its own bucket
and refunds the shared ones (one right password must not buy an address more guesses).

**Unknown names** cost a dummy hash, so that timing does not tell them apart; past
``login_max_unknown_names_per_client`` per window a client's further unknown names are
answered the same way without one (``unknown_name_hashed`` is False).

**Password changes** (``POST /me/password``) have their own bucket per user, so a stolen
session guessing the current password locks only password changes, never sign-in.

**Registrations** are limited per client address (``register_max_per_client``), and those
from clients whose address is unknown together (``register_max_unknown_clients``).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from raymall.errors import RateLimited
from raymall.ratelimit import Check, Decision, Limit, RateLimiter
from raymall.settings import Settings

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Client:
    """Who is signing in: a verified device of the account, an address, or neither."""

    ip: str | None = None
    device: str | None = None

    @property
    def key(self) -> str:
        if self.device is not None:
            return "d:" + self.device
        return "a:" + address_bucket(self.ip) if self.ip is not None else UNKNOWN


@dataclass(frozen=True)
class Attempt:
    """The buckets one sign-in was charged to."""

    own: Check  # the account from this client: cleared by a success
    shared: tuple[Check, ...]  # the account's total and the address: refunded by a success


class AuthGuard:
    def __init__(self, limiter: RateLimiter, settings: Settings) -> None:
        self.limiter = limiter
        window = float(settings.login_failure_window_s)
        per_account = settings.login_max_failures_per_account
        self.per_client = Limit("login_account_client", per_account, window)
        self.per_account = Limit(
            "login_account", settings.login_max_failures_per_account_total, window
        )
        self.per_ip = Limit("login_ip", settings.login_max_failures_per_ip, window)
        self.unknown_names = Limit(
            "login_unknown_name", settings.login_max_unknown_names_per_client, window
        )
        self.password_change = Limit("password_change", per_account, window)
        reg_window = float(settings.register_window_s)
        self.register_client = Limit(
            "register_client", settings.register_max_per_client, reg_window
        )
        self.register_unknown = Limit(
            "register_unknown", settings.register_max_unknown_clients, reg_window
        )

    # ---- sign-in --------------------------------------------------------------------
    async def admit(self, account: str, client: Client) -> Attempt:
        """Charge one failed sign-in to each of the attempt's buckets, or raise
        RateLimited (429) having charged none."""
        subject = _digest(account)
        own = (self.per_client, f"{subject}:{client.key}")
        shared: list[Check] = []
        if client.device is None:
            shared.append((self.per_account, subject))
            if client.ip is not None:
                shared.append((self.per_ip, address_bucket(client.ip)))
        decision = await self.limiter.check(own, *shared)
        if not decision.allowed:
            scope = "address" if decision.refused_by == self.per_ip.name else "account"
            raise _refused(
                f"too many failed sign-ins for this {scope}; retry later", decision, scope
            )
        return Attempt(own, tuple(shared))

    async def succeeded(self, attempt: Attempt) -> None:
        await self.limiter.reset(attempt.own)
        if attempt.shared:
            await self.limiter.refund(*attempt.shared)

    async def not_checked(self, *charged: Check) -> None:
        """Give back the charges of an attempt whose password was never checked (the hash
        pool refused it, 503): a refusal to check is no guess, and must not count toward
        locking out a client that retries through an overload someone else made."""
        if charged:
            await self.limiter.refund(*charged)

    async def unknown_name_hashed(self, client: Client) -> bool:
        """May this client's sign-in for a name with no account spend a dummy hash?"""
        subject = address_bucket(client.ip) if client.ip is not None else UNKNOWN
        decision = await self.limiter.check((self.unknown_names, subject))
        return decision.allowed

    # ---- password change ------------------------------------------------------------
    async def admit_password_change(self, user_id: int) -> Check:
        check = (self.password_change, str(user_id))
        decision = await self.limiter.check(check)
        if not decision.allowed:
            raise _refused("too many wrong current passwords; retry later", decision, "account")
        return check

    async def password_changed(self, check: Check) -> None:
        await self.limiter.reset(check)

    # ---- registration ---------------------------------------------------------------
    async def admit_registration(self, ip: str | None) -> Check:
        check = (
            (self.register_client, address_bucket(ip))
            if ip is not None
            else (self.register_unknown, UNKNOWN)
        )
        decision = await self.limiter.check(check)
        if not decision.allowed:
            scope = "address" if ip is not None else "unknown_addresses"
            raise _refused("too many registrations; retry later", decision, scope)
        return check


def address_bucket(ip: str) -> str:
    """What a client address is limited as: an IPv4 address itself (an IPv4-mapped IPv6
    one too), an IPv6 address by its /64. One customer is given a whole /64 and may use
    any of its 2**64 addresses, so a limit per IPv6 address would limit nothing."""
    try:
        found = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(found, ipaddress.IPv6Address):
        if found.ipv4_mapped is not None:
            return str(found.ipv4_mapped)
        return str(ipaddress.IPv6Network((found, 64), strict=False))
    return str(found)


def _digest(account: str) -> str:
    return hashlib.sha256(account.strip().lower().encode("utf-8")).hexdigest()[:32]


def _refused(message: str, decision: Decision, scope: str) -> RateLimited:
    return RateLimited(message, retry_after=decision.retry_after_header, details={"scope": scope})
