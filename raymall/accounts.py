"""Account rules shared by registration, password change and the admin bootstrap."""

from __future__ import annotations

import re

from raymall.errors import ValidationFailed

MIN_PASSWORD = 10
MAX_PASSWORD = 128
USERNAME_PATTERN = re.compile(r"^[a-z0-9_.\-]{3,32}$")


def validate_username(username: str) -> None:
    """3-32 characters of a-z, 0-9, '_', '.', '-' (usernames are stored lower-case)."""
    if not USERNAME_PATTERN.fullmatch(username.lower()):
        raise ValidationFailed(
            "username must be 3-32 characters of letters, digits, '_', '.' or '-'",
            details={"field": "username"},
        )


def validate_password(
    password: str, *, email: str | None = None, username: str | None = None
) -> None:
    """Policy: 10-128 characters, with at least three of lower, upper, digit, symbol, and
    not containing the account's username or the local part of its e-mail address."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationFailed(
            f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters",
            details={"field": "password"},
        )
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if classes < 3:
        raise ValidationFailed(
            "password needs at least three of: lower case, upper case, digit, symbol",
            details={"field": "password"},
        )
    lowered = password.lower()
    names = [username or "", (email or "").partition("@")[0]]
    if any(len(name) >= 3 and name.lower() in lowered for name in names):
        raise ValidationFailed(
            "password must not contain your username or e-mail address",
            details={"field": "password"},
        )
