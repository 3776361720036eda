"""Device tokens: proof that a client once signed in to an account (OWASP's "device cookies").

A successful sign-in returns a device token bound to the user; the client sends it back
with later sign-ins (``device_token`` in the body). A sign-in that presents a valid token of
the account it names is charged to that device's own failed-login bucket instead of the
buckets every other client shares (``raymall.auth.guard``), so a stranger's burst of wrong
passwords cannot lock the owner out of a device they have used before, and a stolen token
guesses no more than any client.

The token is ``d1.<user id>.<device id>.<expiry>.<HMAC-SHA256>`` under a key derived from
the JWT secret for this purpose alone. No I/O: nothing is stored per device. A token of
another user, a forged, malformed or expired token is simply not a device (``None``), never
an error: the sign-in goes on as from an unknown client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from raymall.auth.tokens import new_id

VERSION = "d1"
MAX_CHARS = 200


class DeviceTokens:
    def __init__(self, secret: str, *, ttl_s: int) -> None:
        self._key = hmac.new(
            secret.encode("utf-8"), b"raymall device-token key v1", hashlib.sha256
        ).digest()
        self.ttl_s = ttl_s

    def issue(self, user_id: int, device_id: str | None = None, *, now: int | None = None) -> str:
        """A token for ``user_id``; ``device_id`` keeps a known device's identity."""
        expires = (int(time.time()) if now is None else now) + self.ttl_s
        body = f"{VERSION}.{user_id}.{device_id or new_id(12)}.{expires}"
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str | None, user_id: int, *, now: int | None = None) -> str | None:
        """The device id if ``token`` is a live device token of ``user_id``, else None."""
        if not token or len(token) > MAX_CHARS or not token.isascii():
            return None  # a client's string: not ASCII is not a token (nor a 500)
        body, _, signature = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 4 or parts[0] != VERSION or not parts[3].isdigit():
            return None
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        if parts[1] != str(user_id):
            return None
        if int(parts[3]) < (int(time.time()) if now is None else now):
            return None
        return parts[2]

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, body.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
