"""Brute-force protection for password checks, per account and per client IP.

Only failures are charged. Before a password is checked, both limits are peeked: if
either is exhausted the attempt is refused with 429 and ``Retry-After`` without spending
a bcrypt hash on it. Each limit admits ``max_failures`` failures at once and then one
more per ``window / max_failures`` (GCRA, see ``raymall.ratelimit``), so a guesser gets
at most ``max_failures`` guesses per window in the long run. A success clears the
account's failures, never the IP's (one good password must not buy an IP more guesses).

The caller names the account: its user id when it exists (so switching between e-mail and
username buys no extra guesses) and the normalized login name otherwise. Unknown names are
limited exactly like real ones, so the answers do not reveal which accounts exist.
"""

from __future__ import annotations

import hashlib

from raymall.errors import RateLimited
from raymall.ratelimit import Limit, RateLimiter
from raymall.settings import Settings


class LoginGuard:
    def __init__(self, limiter: RateLimiter, settings: Settings) -> None:
        self.limiter = limiter
        window = float(settings.login_failure_window_s)
        self.per_account = Limit("login_account", settings.login_max_failures_per_account, window)
        self.per_ip = Limit("login_ip", settings.login_max_failures_per_ip, window)

    def _account(self, account: str) -> tuple[Limit, str]:
        digest = hashlib.sha256(account.strip().lower().encode("utf-8")).hexdigest()[:32]
        return self.per_account, digest

    def _checks(self, account: str, ip: str | None) -> list[tuple[Limit, str]]:
        checks = [self._account(account)]
        if ip is not None:
            checks.append((self.per_ip, ip))
        return checks

    async def before_attempt(self, account: str, ip: str | None) -> None:
        """Raise RateLimited if this account or IP has used up its failures."""
        decision = await self.limiter.peek(*self._checks(account, ip))
        if not decision.allowed:
            scope = "account" if decision.refused_by == self.per_account.name else "address"
            raise RateLimited(
                f"too many failed sign-ins for this {scope}; retry later",
                retry_after=decision.retry_after_header,
                details={"scope": scope},
            )

    async def failed(self, account: str, ip: str | None) -> None:
        # Charged one by one: an exhausted IP must still count against the account.
        for check in self._checks(account, ip):
            await self.limiter.check(check, observe=False)

    async def succeeded(self, account: str) -> None:
        await self.limiter.reset(self._account(account))
