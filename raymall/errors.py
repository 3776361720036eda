"""The one error tree. Domain code raises these; the HTTP edge maps them once.

    DomainError (code, status)
    ├── BadRequest            400  bad_request
    │   ├── ValidationFailed  422  validation_error
    │   └── AmountMismatch    400  amount_mismatch
    ├── Unauthorized          401  unauthorized
    │   ├── InvalidCredentials 401 invalid_credentials
    │   ├── InvalidToken      401  invalid_token
    │   ├── TokenExpired      401  token_expired
    │   ├── TokenRevoked      401  token_revoked
    │   └── BadSignature      401  bad_signature
    ├── Forbidden             403  forbidden
    │   ├── AccountBlocked    403  account_blocked
    │   ├── FlashTokenRequired 403 flash_token_required
    │   ├── FlashTokenInvalid 403  flash_token_invalid
    │   └── CouponNotOwned    403  coupon_not_owned
    ├── NotFound              404  not_found
    │   ├── UnknownSku        404  unknown_sku
    │   ├── CampaignNotFound  404  campaign_not_found
    │   ├── CouponNotFound    404  coupon_not_found
    │   └── CouponCodeInvalid 404  coupon_code_invalid
    ├── Conflict              409  conflict
    │   ├── EmailTaken        409  email_taken
    │   ├── UsernameTaken     409  username_taken
    │   ├── InvalidTransition 409  invalid_transition
    │   ├── IdempotencyMismatch 409 idempotency_key_reused
    │   ├── CategoryCycle     409  category_cycle
    │   ├── CategoryNotEmpty  409  category_not_empty
    │   ├── AlreadyExists     409  already_exists
    │   ├── BrandInUse        409  brand_in_use
    │   ├── ProductInUse      409  product_in_use
    │   ├── NotPublishable    409  product_not_publishable
    │   ├── OutOfStock        409  out_of_stock
    │   ├── SoldOut           409  sold_out
    │   ├── LimitExceeded     409  purchase_limit_exceeded
    │   ├── SaleNotStarted    409  sale_not_started
    │   ├── SaleEnded         409  sale_ended
    │   ├── FlashTokenUsed    409  flash_token_used
    │   ├── NotForSale        409  sku_not_for_sale
    │   ├── CartLimitExceeded 409  cart_limit_exceeded
    │   └── CouponRefused     409  coupon_refused (subclasses, each its own code:
    │       coupon_expired, coupon_not_yet_valid, coupon_out_of_scope,
    │       coupon_below_threshold, coupon_unavailable, coupon_not_combinable,
    │       claim_not_started, claim_ended, campaign_inactive, coupons_sold_out,
    │       coupon_limit_reached)
    ├── PayloadTooLarge       413  payload_too_large
    ├── UnsupportedMedia      415  unsupported_media_type
    ├── RateLimited           429  rate_limited (carries retry_after)
    └── Unavailable           503  unavailable  (retriable: the caller may retry with the same key)

Every error body is ``{"error": {"code", "message", "request_id"}}`` plus optional
``details``. Errors cross Ray process boundaries pickled, so they keep only plain fields.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"
    status = 500
    retriable = False

    def __init__(self, message: str = "", *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.code.replace("_", " "))
        self.message = message or self.code.replace("_", " ")
        self.details = details or {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def to_body(self, request_id: str) -> dict[str, Any]:
        return error_body(request_id, self.code, self.message, self.details or None)


def error_body(
    request_id: str, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The one error body: ``{"error": {"code", "message", "request_id"}}``, plus
    ``details`` when there are any. Every error answer of the HTTP API is rendered here."""
    body: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if details:
        body["details"] = details
    return {"error": body}


def _rebuild(cls: type[DomainError], message: str, details: dict[str, Any]) -> DomainError:
    return cls(message, details=details)


class BadRequest(DomainError):
    code, status = "bad_request", 400


class ValidationFailed(BadRequest):
    code, status = "validation_error", 422


class AmountMismatch(BadRequest):
    code = "amount_mismatch"


class Unauthorized(DomainError):
    code, status = "unauthorized", 401


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class InvalidToken(Unauthorized):
    code = "invalid_token"


class TokenExpired(Unauthorized):
    code = "token_expired"


class TokenRevoked(Unauthorized):
    code = "token_revoked"


class BadSignature(Unauthorized):
    code = "bad_signature"


class Forbidden(DomainError):
    code, status = "forbidden", 403


class AccountBlocked(Forbidden):
    code = "account_blocked"


class FlashTokenRequired(Forbidden):
    code = "flash_token_required"


class FlashTokenInvalid(Forbidden):
    code = "flash_token_invalid"


class NotFound(DomainError):
    code, status = "not_found", 404


class UnknownSku(NotFound):
    code = "unknown_sku"


class Conflict(DomainError):
    code, status = "conflict", 409


class EmailTaken(Conflict):
    code = "email_taken"


class UsernameTaken(Conflict):
    code = "username_taken"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class IdempotencyMismatch(Conflict):
    code = "idempotency_key_reused"


class CategoryCycle(Conflict):
    code = "category_cycle"


class CategoryNotEmpty(Conflict):
    code = "category_not_empty"


class AlreadyExists(Conflict):
    code = "already_exists"


class BrandInUse(Conflict):
    code = "brand_in_use"


class ProductInUse(Conflict):
    code = "product_in_use"


class NotPublishable(Conflict):
    code = "product_not_publishable"


class OutOfStock(Conflict):
    code = "out_of_stock"


class SoldOut(Conflict):
    code = "sold_out"


class LimitExceeded(Conflict):
    code = "purchase_limit_exceeded"


class SaleNotStarted(Conflict):
    code = "sale_not_started"


class SaleEnded(Conflict):
    code = "sale_ended"


class FlashTokenUsed(Conflict):
    code = "flash_token_used"


class NotForSale(Conflict):
    code = "sku_not_for_sale"


class CartLimitExceeded(Conflict):
    code = "cart_limit_exceeded"


class CouponNotOwned(Forbidden):
    """The coupon belongs to another customer."""

    code = "coupon_not_owned"


class CampaignNotFound(NotFound):
    """No coupon campaign has this id."""

    code = "campaign_not_found"


class CouponNotFound(NotFound):
    """No coupon has this id."""

    code = "coupon_not_found"


class CouponCodeInvalid(NotFound):
    """No claimable campaign has this code."""

    code = "coupon_code_invalid"


class CouponRefused(Conflict):
    """A coupon cannot be claimed or used as asked."""

    code = "coupon_refused"


class CouponExpired(CouponRefused):
    """The coupon's validity has ended."""

    code = "coupon_expired"


class CouponNotYetValid(CouponRefused):
    """The coupon is not valid yet."""

    code = "coupon_not_yet_valid"


class CouponOutOfScope(CouponRefused):
    """No line of the order is covered by the coupon."""

    code = "coupon_out_of_scope"


class CouponBelowThreshold(CouponRefused):
    """The order does not reach the coupon's minimum spend."""

    code = "coupon_below_threshold"


class CouponUnavailable(CouponRefused):
    """The coupon is locked by another unpaid order, used or expired."""

    code = "coupon_unavailable"


class CouponNotCombinable(CouponRefused):
    """These coupons cannot be used together."""

    code = "coupon_not_combinable"


class ClaimNotStarted(CouponRefused):
    """The campaign's claim window has not opened."""

    code = "claim_not_started"


class ClaimEnded(CouponRefused):
    """The campaign's claim window has closed."""

    code = "claim_ended"


class CampaignInactive(CouponRefused):
    """The campaign is not active."""

    code = "campaign_inactive"


class CouponsSoldOut(CouponRefused):
    """Every coupon of the campaign has been claimed."""

    code = "coupons_sold_out"


class CouponLimitReached(CouponRefused):
    """The customer holds the campaign's per-user limit of coupons."""

    code = "coupon_limit_reached"


class PayloadTooLarge(DomainError):
    code, status = "payload_too_large", 413


class UnsupportedMedia(DomainError):
    code, status = "unsupported_media_type", 415


class RateLimited(DomainError):
    code, status = "rate_limited", 429

    def __init__(self, message: str = "", *, retry_after: int = 1, **kw: Any) -> None:
        details = dict(kw.pop("details", None) or {})
        details.setdefault("retry_after", retry_after)
        super().__init__(message or "too many requests", details=details)
        self.retry_after = int(details["retry_after"])


class Unavailable(DomainError):
    code, status, retriable = "unavailable", 503, True

    @property
    def retry_after(self) -> int | None:
        """Seconds for a ``Retry-After`` header, when ``details["retry_after"]`` names them."""
        value = self.details.get("retry_after")
        return value if isinstance(value, int) and value > 0 else None
