"""Signed payment callbacks: HMAC-SHA256 over ``timestamp + "." + body``.

The provider sends ``X-Timestamp`` (unix seconds) and ``X-Signature`` (lowercase hex).
``verify`` answers ``None`` for a good callback or the reason it is refused; it compares
signatures in constant time and refuses a timestamp outside the window on either side
(a replay of an old callback, or a clock far ahead). Plain functions, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"
MAX_TIMESTAMP_DIGITS = 12


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        "Content-Type": "application/json",
    }


def verify(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now_s: float,
    window_s: float,
) -> str | None:
    """``None`` if the callback is authentic and fresh, else the refusal reason."""
    if not timestamp or not signature:
        return "missing_signature"
    ts = timestamp.strip()
    if not ts.isascii() or not ts.isdigit() or len(ts) > MAX_TIMESTAMP_DIGITS:
        return "bad_timestamp"
    expected = sign(secret, ts, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8")):
        return "bad_signature"
    if abs(now_s - int(ts)) > window_s:
        return "stale_timestamp"
    return None
