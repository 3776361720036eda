"""Account rules shared by registration, password change and the admin bootstrap."""

from __future__ import annotations

from raymall.errors import ValidationFailed

MIN_PASSWORD = 10
MAX_PASSWORD = 128


def validate_password(password: str) -> None:
    """Policy: 10-128 characters, with at least three of lower, upper, digit, symbol."""
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
