"""Request bodies of the accounts API. Strict: unknown fields, wrong JSON types and
out-of-range lengths are refused with 422 in the one error shape before any handler runs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, StringConstraints, model_validator

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

Username = Annotated[
    str, StringConstraints(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$")
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=128)]
DisplayName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=_PRINTABLE)
]
Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=32, pattern=r"^\+?[0-9][0-9 ()\-]{4,30}$"),
]


Recipient = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=_PRINTABLE)
]
Line = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_PRINTABLE)
]
OptionalLine = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200, pattern=_PRINTABLE)
]
City = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=_PRINTABLE)
]
Region = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=100, pattern=_PRINTABLE)
]
PostalCode = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 \-]{0,19}$")
]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]  # ISO 3166-1 alpha-2


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterIn(Strict):
    email: EmailStr
    username: Username
    password: Password
    display_name: DisplayName | None = None


class LoginIn(Strict):
    """Sign in with exactly one of ``email`` or ``username``; ``device_token``: the one a
    previous sign-in from this client returned (``raymall.auth.devices``), if any."""

    email: EmailStr | None = None
    username: Username | None = None
    password: Password
    device_token: Annotated[str, StringConstraints(max_length=200)] | None = None

    @model_validator(mode="after")
    def _one_login_name(self) -> LoginIn:
        if (self.email is None) == (self.username is None):
            raise ValueError("give exactly one of email or username")
        return self


class RefreshIn(Strict):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class PasswordChangeIn(Strict):
    current_password: Password
    new_password: Password


class ProfilePatch(Strict):
    display_name: DisplayName | None = None
    phone: Phone | None = None


class AddressIn(Strict):
    recipient: Recipient
    phone: Phone
    line1: Line
    line2: OptionalLine = ""
    city: City
    region: Region = ""
    postal_code: PostalCode
    country: Country
    is_default: bool = False


class AddressPatch(Strict):
    recipient: Recipient | None = None
    phone: Phone | None = None
    line1: Line | None = None
    line2: OptionalLine | None = None
    city: City | None = None
    region: Region | None = None
    postal_code: PostalCode | None = None
    country: Country | None = None
    is_default: bool | None = None
